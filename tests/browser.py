"""Headless Chromium for the tests that open what the project renders (report.html, the book's pages).

Every request but a file's own goes to a closed local port, so a page that needs the network shows it.
A test calls :func:`rendered_dom` (the DOM after the page's scripts ran) or :func:`clicked_download`
(real clicks, then the file they download), which skip, saying why, where no Chromium is installed."""
import pathlib
import shutil
import subprocess

import pytest

OFFLINE = ["--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--disable-quic"]


def rendered_dom(page: pathlib.Path, what: str, wait_ms: int = 5000, fragment: str = "") -> str:
    """The DOM of ``page`` (at ``#fragment``, if given) after its scripts ran for ``wait_ms`` of virtual
    time, with the network off."""
    browser = _browser(what)
    r = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", *OFFLINE,
                        f"--virtual-time-budget={wait_ms}", "--dump-dom", page.as_uri() + (f"#{fragment}" if fragment else "")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "</html>" in r.stdout, r.stderr[-2000:]
    return r.stdout


def _browser(what: str) -> str:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip(f"no Chromium here (Debian: apt-get install chromium; make does it where it can): {what} was "
                    "not opened in a browser")
    return browser


class DevTools:
    """Headless Chromium driven over the DevTools protocol through a pipe (``--remote-debugging-pipe``:
    JSON messages ending in a NUL byte on file descriptors 3 and 4), with Python's standard library
    only; the network is off as for :func:`rendered_dom`."""

    def __init__(self, what: str, profile: pathlib.Path, timeout: float = 60):
        import os

        browser = _browser(what)
        self.timeout, self.next_id, self.buf, self.events = timeout, 0, b"", []
        to_chrome, self.write_fd = os.pipe()
        self.read_fd, from_chrome = os.pipe()
        self.proc = subprocess.Popen(  # the shell puts the pipe's ends on fds 3 and 4, where Chromium expects them
            ["bash", "-c", f'exec "$0" "$@" 3<&{to_chrome} 4>&{from_chrome}', browser, "--headless", "--no-sandbox",
             "--disable-gpu", "--no-first-run", *OFFLINE, "--remote-debugging-pipe", f"--user-data-dir={profile}",
             "about:blank"], pass_fds=(to_chrome, from_chrome), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chrome)
        os.close(from_chrome)

    def _read(self) -> dict:
        import json
        import os
        import select
        import time

        deadline = time.monotonic() + self.timeout
        while b"\0" not in self.buf:
            ready, _, _ = select.select([self.read_fd], [], [], max(0.0, deadline - time.monotonic()))
            chunk = os.read(self.read_fd, 1 << 20) if ready else b""
            if not chunk:
                raise TimeoutError("Chromium's DevTools pipe closed or went quiet")
            self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def send(self, method: str, session: str | None = None, **params) -> dict:
        """Send one command and return its result (events that arrive meanwhile are kept)."""
        import json
        import os

        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params, **({"sessionId": session} if session else {})}
        os.write(self.write_fd, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, test=lambda params: True) -> dict:
        """The first event ``method`` whose params pass ``test`` (kept or still to come)."""
        while True:
            for i, e in enumerate(self.events):
                if e.get("method") == method and test(e.get("params", {})):
                    return self.events.pop(i)["params"]
            self.events.append(self._read())

    def close(self):
        import os

        try:
            self.send("Browser.close")
        except (TimeoutError, RuntimeError, OSError):
            pass
        self.proc.wait(timeout=30)
        os.close(self.write_fd)
        os.close(self.read_fd)


def clicked_download(page: pathlib.Path, clicks: list[str], what: str, tmp: pathlib.Path) -> str:
    """Open ``page`` in headless Chromium, click (real mouse presses at each element's centre, over the
    DevTools protocol) each CSS selector of ``clicks`` in turn, the last one starting a download, and
    return the downloaded file's text."""
    import json

    tmp.mkdir(parents=True, exist_ok=True)
    dt = DevTools(what, tmp / "profile")
    try:
        dt.send("Browser.setDownloadBehavior", behavior="allowAndName", downloadPath=str(tmp), eventsEnabled=True)
        target = dt.send("Target.createTarget", url="about:blank")["targetId"]
        session = dt.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        dt.send("Page.enable", session)
        dt.send("Page.navigate", session, url=page.as_uri())
        dt.wait_for("Page.loadEventFired")
        for sel in clicks:
            js = (f"(() => {{ const e = document.querySelector({json.dumps(sel)}); if (!e) return null; e.scrollIntoView("
                  "{block: 'center'}); const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()")
            xy = dt.send("Runtime.evaluate", session, expression=js, returnByValue=True)["result"].get("value")
            assert xy is not None, f"{what}: nothing matches {sel!r}"
            for kind in ("mousePressed", "mouseReleased"):
                dt.send("Input.dispatchMouseEvent", session, type=kind, x=xy[0], y=xy[1], button="left", clickCount=1)
        guid = dt.wait_for("Browser.downloadWillBegin")["guid"]
        done = dt.wait_for("Browser.downloadProgress", lambda p: p.get("guid") == guid and p.get("state") != "inProgress")
        assert done["state"] == "completed", done
        return (tmp / guid).read_text(encoding="utf-8")
    finally:
        dt.close()
