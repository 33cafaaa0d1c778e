"""The run store: every trained model, embedding and score table, cached under a hash of its config.

An entry is a folder ``<root>/<kind>/<key>/`` holding ``config.json`` plus the files its builder
wrote.  It is built in a temporary folder and renamed into place (atomic on POSIX), so a crash
never leaves a half-written entry that a later call reads as complete.  A builder may also keep
resumable state (checkpoints) in ``scratch``, which survives interruptions and is removed on
success.  The same config returns the stored entry; ``force=True`` rebuilds it.

Every key also holds the code version of its kind (:data:`VERSIONS`): a change to training or to a
metric that alters results bumps that number, so entries computed by the old code are not reused.
Score tables are stored as parquet and come back with their dtypes (a bool column stays bool).

An entry heals itself: its ``manifest.json`` records the size and SHA-256 of every file when it is
written, and an entry that fails that check, or fails to load, is named in one line, moved aside to
``<root>/.corrupt/`` and recomputed.  A lock per key (``<root>/.locks/``) makes a second process that
asks for a key being built wait, then load it, instead of training it twice.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import shutil
import sys
import tempfile
import uuid
from typing import Callable

import filelock
import numpy as np
import pandas as pd

__all__ = ["RunStore", "config_key", "project_path", "output_path", "file_manifest", "VERSIONS", "OUTPUT_ENV"]

# Code version of each kind of entry, part of its key. Bump one whenever a change alters what that kind
# computes (tests/test_store.py checks that a bump hides the old entries).
VERSIONS = {
    "clip": 3,              # 2: one epoch engine; 3: text context sized for the data (tokenizer_for)
    "dino": 3,              # 2: one epoch engine (no weight decay on biases and norms, checkpoints); 3: views batched
    "supervised": 2,        # 2: as dino
    "embeddings": 1,        # embed.embed_images / embed_texts (Eq. 3's crops)
    "clipmem": 3,           # 2: typed parquet table; 3: an S_E pair is not its own test pair
    "unitmem": 3,           # 2: typed parquet table; 3: numpy's median for mu_-max (mean of the middle two)
    "unitmem_tracking": 4,  # as unitmem; 4: read from the snapshots of the one training
    "crossfit": 3,          # audit.score_crossfit: cross-fitted CLIPMem of every pair; 2: ranks, mis-caption score; 3: neighbour consistency
    "classifier": 1,        # vision.train_classifier: single-label classifier on the image tower (Fig. 8)
    "utility": 1,           # measure.utility: probe accuracy and held-out retrieval of one model
}
OUTPUT_ENV = "CLIPMEM_OUTPUT_DIR"  # tests set it, so relative run and result folders go to a temporary place
CONFIG, MANIFEST = "config.json", "manifest.json"  # config.json is written last: it marks a complete entry


def _canon(obj):
    if dataclasses.is_dataclass(obj):
        return _canon(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {str(k): _canon(v) for k, v in sorted(obj.items())}
    if isinstance(obj, (list, tuple)):
        return [_canon(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return hashlib.sha256(np.ascontiguousarray(obj).tobytes()).hexdigest()[:16]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def project_path(path: str | os.PathLike) -> pathlib.Path:
    """``path`` itself if absolute, else relative to the project root (the nearest folder above the
    working directory holding ``_config.yml``), so notebooks run from ``notebooks/`` by nbval and from
    the root by papermill share one runs folder."""
    p = pathlib.Path(path)
    if p.is_absolute():
        return p
    for d in (pathlib.Path.cwd(), *pathlib.Path.cwd().parents):
        if (d / "_config.yml").exists():
            return d / p
    return p.resolve()


def output_path(path: str | os.PathLike) -> pathlib.Path:
    """Where a generated folder (run store, result tables) lives: ``path`` itself if absolute, else under
    ``$CLIPMEM_OUTPUT_DIR`` when that is set (the test suite sets it), else under the project root."""
    p = pathlib.Path(path)
    if p.is_absolute():
        return p
    root = os.environ.get(OUTPUT_ENV)
    return pathlib.Path(root) / p if root else project_path(p)


def file_manifest(folder: pathlib.Path) -> dict[str, list]:
    """``{relative path: [size in bytes, SHA-256]}`` of every file under ``folder`` but its config and manifest."""
    out = {}
    for f in sorted(folder.rglob("*")):
        rel = f.relative_to(folder).as_posix()
        if f.is_file() and rel not in (CONFIG, MANIFEST):
            h = hashlib.sha256()
            with open(f, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
            out[rel] = [f.stat().st_size, h.hexdigest()]
    return out


def config_key(config) -> str:
    """A 16-hex-digit hash of a JSON-able config (dataclasses and arrays allowed)."""
    return hashlib.sha256(json.dumps(_canon(config), sort_keys=True).encode()).hexdigest()[:16]


HEALED_LOG = ".healed.log"  # under the store's root: every entry set aside, one line each


class RunStore:
    """Cache of results keyed by ``(kind, config)``; ``root=None`` keeps nothing (always rebuilds)."""

    def __init__(self, root: str | os.PathLike | None = "runs"):
        self.root = pathlib.Path(root) if root is not None else None
        self._verified: dict[pathlib.Path, int] = {}  # entries whose files matched their manifest (by its mtime)

    @staticmethod
    def key_of(kind: str, config) -> str:
        """The entry key: a hash of ``kind``, its code version and ``config`` (unique across kinds)."""
        if kind not in VERSIONS:
            raise KeyError(f"unknown run-store kind {kind!r}: give it a code version in store.VERSIONS")
        return config_key(dict(kind=kind, config=config, version=VERSIONS[kind]))

    def throughput(self) -> dict[tuple[str, str], float]:
        """Median samples/s per (kind, model) over the stored trainings (each entry's ``history.csv``)."""
        rates: dict[tuple[str, str], list[float]] = {}
        kinds = [d for d in self.root.iterdir() if d.is_dir() and not d.name.startswith(".")] \
            if self.root is not None and self.root.is_dir() else []
        for csv in (c for d in kinds for c in d.glob("*/history.csv")):  # trainings only; not what was set aside
            try:
                model = json.loads((csv.parent / CONFIG).read_text())["config"].get("model_name")
                hist = pd.read_csv(csv)
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                continue  # incomplete or unreadable: no rate
            if model and "samples_per_s" in hist and len(hist):
                rates.setdefault((csv.parent.parent.name, model), []).append(float(hist["samples_per_s"].median()))
        return {km: float(np.median(r)) for km, r in rates.items()}

    def entry(self, kind: str, config) -> pathlib.Path | None:
        """The folder of a complete, intact entry, or None (a damaged one is set aside first)."""
        if self.root is None:
            return None
        key = self.key_of(kind, config)
        return self._intact(kind, key, self.root / kind / key)

    def _intact(self, kind: str, key: str, path: pathlib.Path) -> pathlib.Path | None:
        if not (path / CONFIG).exists():
            return None
        manifest = path / MANIFEST
        if not manifest.exists():  # written before entries had manifests: only a failed load can tell
            return path
        stamp = manifest.stat().st_mtime_ns
        if self._verified.get(path) == stamp:
            return path
        try:
            want = json.loads(manifest.read_text())
        except ValueError:
            want = None
        have = file_manifest(path)
        if want != have:
            bad = "unreadable manifest" if want is None else ", ".join(
                f"{name}: {'missing' if name not in have else 'size or checksum differs'}"
                for name in sorted(set(want) | set(have)) if want.get(name) != have.get(name))
            self.set_aside(kind, key, bad)
            return None
        self._verified[path] = stamp
        return path

    def set_aside(self, kind: str, key: str, reason: str) -> pathlib.Path | None:
        """Move a damaged entry to ``<root>/.corrupt/`` (so it is recomputed) and say so in one line."""
        path = self.root / kind / key
        if not path.exists():
            return None
        dest = self.root / ".corrupt" / f"{kind}-{key}-{uuid.uuid4().hex[:8]}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, dest)
        self._verified.pop(path, None)
        line = f"run store: {kind} entry {key} at {path} is damaged ({reason}); moved to {dest}, recomputing it"
        print(line, file=sys.stderr)
        with open(self.root / HEALED_LOG, "a") as log:  # one line per entry: what the book runner prints
            log.write(line + "\n")
        return dest

    def build(self, kind: str, config, builder: Callable[[pathlib.Path, pathlib.Path], None],
              force: bool = False) -> pathlib.Path:
        """Return the entry for ``config``, calling ``builder(out_dir, scratch_dir)`` if it is missing."""
        root = self.root if self.root is not None else pathlib.Path(tempfile.mkdtemp(prefix="clipmem-nostore-"))
        key = self.key_of(kind, config)
        final, scratch = root / kind / key, root / ".scratch" / f"{kind}-{key}"
        if not force and self.root is not None and self._intact(kind, key, final):
            return final
        (root / ".locks").mkdir(parents=True, exist_ok=True)
        with filelock.FileLock(root / ".locks" / f"{kind}-{key}.lock"):
            if not force and self.root is not None and self._intact(kind, key, final):
                return final  # another process built it while this one waited
            tmp = root / ".tmp" / f"{kind}-{key}-{uuid.uuid4().hex[:8]}"
            tmp.mkdir(parents=True)
            scratch.mkdir(parents=True, exist_ok=True)
            try:
                builder(tmp, scratch)
                (tmp / MANIFEST).write_text(json.dumps(file_manifest(tmp), indent=1))
                (tmp / CONFIG).write_text(json.dumps(dict(config=_canon(config), version=VERSIONS[kind]),
                                                     indent=1, sort_keys=True))
                final.parent.mkdir(parents=True, exist_ok=True)
                if final.exists():  # force: move the old entry aside, then swap in the new one
                    old = root / ".tmp" / f"old-{key}-{uuid.uuid4().hex[:8]}"
                    os.replace(final, old)
                    shutil.rmtree(old, ignore_errors=True)
                os.replace(tmp, final)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(scratch, ignore_errors=True)
        return final

    def load(self, kind: str, config, builder: Callable[[pathlib.Path, pathlib.Path], None],
             read: Callable[[pathlib.Path], object], force: bool = False):
        """``read(entry)`` of the entry for ``config`` (built if missing); an entry that fails to load is
        set aside and built once more."""
        path = self.build(kind, config, builder, force)
        try:
            return read(path)
        except Exception as err:  # noqa: BLE001 - any failure to read a stored file means a damaged entry
            if self.root is None:
                raise
            self.set_aside(kind, path.name, f"failed to load: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
        return read(self.build(kind, config, builder))

    def frame(self, kind: str, config, compute: Callable[[], pd.DataFrame], force: bool = False) -> pd.DataFrame:
        """A cached DataFrame (parquet, so dtypes survive): ``compute()`` runs only when the entry is missing."""
        def builder(out, _):
            compute().to_parquet(out / "table.parquet", index=False)
        return self.load(kind, config, builder, lambda p: pd.read_parquet(p / "table.parquet"), force)
