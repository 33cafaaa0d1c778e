"""Headless Chromium for the tests that open what the project renders (report.html, the book's pages).

Every request but a file's own goes to a closed local port, so a page that needs the network shows it.
A test calls :func:`rendered_dom`, which skips, saying why, where no Chromium is installed."""
import pathlib
import shutil
import subprocess

import pytest

OFFLINE = ["--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--disable-quic"]


def rendered_dom(page: pathlib.Path, what: str, wait_ms: int = 5000, fragment: str = "") -> str:
    """The DOM of ``page`` (at ``#fragment``, if given) after its scripts ran for ``wait_ms`` of virtual
    time, with the network off."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip(f"no Chromium here (Debian: apt-get install chromium; make does it where it can): {what} was "
                    "not opened in a browser")
    r = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", *OFFLINE,
                        f"--virtual-time-budget={wait_ms}", "--dump-dom", page.as_uri() + (f"#{fragment}" if fragment else "")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "</html>" in r.stdout, r.stderr[-2000:]
    return r.stdout
