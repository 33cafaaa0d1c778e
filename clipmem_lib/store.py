"""The run store: every trained model, embedding and score table, cached under a hash of its config.

An entry is a folder ``<root>/<kind>/<key>/`` holding ``config.json`` plus the files its builder
wrote.  It is built in a temporary folder and renamed into place (atomic on POSIX), so a crash
never leaves a half-written entry that a later call reads as complete.  A builder may also keep
resumable state (checkpoints) in ``scratch``, which survives interruptions and is removed on
success.  The same config returns the stored entry; ``force=True`` rebuilds it.

Every key also holds the code version of its kind (:data:`VERSIONS`): a change to training or to a
metric that alters results bumps that number, so entries computed by the old code are not reused.
Score tables are stored as parquet and come back with their dtypes (a bool column stays bool).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import shutil
import tempfile
import uuid
from typing import Callable

import numpy as np
import pandas as pd

__all__ = ["RunStore", "config_key", "project_path", "output_path", "VERSIONS", "OUTPUT_ENV"]

# Code version of each kind of entry, part of its key. Bump one whenever a change alters what that kind
# computes (tests/test_store.py checks that a bump hides the old entries).
VERSIONS = {
    "clip": 3,              # 2: one epoch engine; 3: text context sized for the data (tokenizer_for)
    "dino": 2,              # 2: one epoch engine (no weight decay on biases and norms, checkpoints)
    "supervised": 2,        # 2: as dino
    "embeddings": 1,        # embed.embed_images / embed_texts (Eq. 3's crops)
    "clipmem": 3,           # 2: typed parquet table; 3: an S_E pair is not its own test pair
    "unitmem": 3,           # 2: typed parquet table; 3: numpy's median for mu_-max (mean of the middle two)
    "unitmem_tracking": 4,  # as unitmem; 4: read from the snapshots of the one training
    "crossfit": 1,          # audit.score_crossfit: cross-fitted CLIPMem of every pair
    "classifier": 1,        # vision.train_classifier: single-label classifier on the image tower (Fig. 8)
}
OUTPUT_ENV = "CLIPMEM_OUTPUT_DIR"  # tests set it, so relative run and result folders go to a temporary place


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


def config_key(config) -> str:
    """A 16-hex-digit hash of a JSON-able config (dataclasses and arrays allowed)."""
    return hashlib.sha256(json.dumps(_canon(config), sort_keys=True).encode()).hexdigest()[:16]


class RunStore:
    """Cache of results keyed by ``(kind, config)``; ``root=None`` keeps nothing (always rebuilds)."""

    def __init__(self, root: str | os.PathLike | None = "runs"):
        self.root = pathlib.Path(root) if root is not None else None

    @staticmethod
    def key_of(kind: str, config) -> str:
        """The entry key: a hash of ``kind``, its code version and ``config`` (unique across kinds)."""
        if kind not in VERSIONS:
            raise KeyError(f"unknown run-store kind {kind!r}: give it a code version in store.VERSIONS")
        return config_key(dict(kind=kind, config=config, version=VERSIONS[kind]))

    def entry(self, kind: str, config) -> pathlib.Path | None:
        """The folder of a complete entry, or None."""
        if self.root is None:
            return None
        p = self.root / kind / self.key_of(kind, config)
        return p if (p / "config.json").exists() else None

    def build(self, kind: str, config, builder: Callable[[pathlib.Path, pathlib.Path], None],
              force: bool = False) -> pathlib.Path:
        """Return the entry for ``config``, calling ``builder(out_dir, scratch_dir)`` if it is missing."""
        root = self.root if self.root is not None else pathlib.Path(tempfile.mkdtemp(prefix="clipmem-nostore-"))
        key = self.key_of(kind, config)
        final, scratch = root / kind / key, root / ".scratch" / f"{kind}-{key}"
        if not force and (final / "config.json").exists():
            return final
        tmp = root / ".tmp" / f"{kind}-{key}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir(parents=True)
        scratch.mkdir(parents=True, exist_ok=True)
        try:
            builder(tmp, scratch)
            (tmp / "config.json").write_text(json.dumps(dict(config=_canon(config), version=VERSIONS[kind]),
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

    def frame(self, kind: str, config, compute: Callable[[], pd.DataFrame], force: bool = False) -> pd.DataFrame:
        """A cached DataFrame (parquet, so dtypes survive): ``compute()`` runs only when the entry is missing."""
        def builder(out, _):
            compute().to_parquet(out / "table.parquet", index=False)
        return pd.read_parquet(self.build(kind, config, builder, force) / "table.parquet")
