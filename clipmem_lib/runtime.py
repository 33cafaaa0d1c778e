"""Where and how the library runs: the run store, the device, progress bars and parallelism.

Notebooks get one :class:`Context` from :func:`clipmem_lib.chapter.setup` and pass it to every cached
call (``ctx=S.ctx``) instead of repeating ``store``, ``device``, ``progress``, ``num_workers`` and
``n_jobs`` at each call.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import multiprocessing
import os
import time

import torch

from .store import RunStore, output_path

__all__ = ["Context", "default_device", "resolve_device", "timer", "timed", "TIMINGS_ENV", "CHAPTER_ENV", "CATEGORIES"]

TIMINGS_ENV, CHAPTER_ENV = "CLIPMEM_TIMINGS", "CLIPMEM_CHAPTER"  # set by the book runner (book.py)
CATEGORIES = ("training", "embeddings", "probing", "unitmem", "plotting")
_open: list[float] = []  # time spent in nested timed calls, per open call


@contextlib.contextmanager
def timer(category: str):
    """Context manager form of :func:`timed`.  In a worker process (``n_jobs`` > 1) the category gets
    " (workers)": those seconds run beside the chapter's own and are reported apart."""
    path = os.environ.get(TIMINGS_ENV)
    if not path:
        yield
        return
    start = time.perf_counter()
    _open.append(0.0)
    try:
        yield
    finally:
        inner, total = _open.pop(), time.perf_counter() - start
        if _open:
            _open[-1] += total  # a nested call's time is its own, not its caller's
        if multiprocessing.parent_process() is not None:
            category += " (workers)"
        with open(path, "a") as fh:
            fh.write(json.dumps(dict(chapter=os.environ.get(CHAPTER_ENV, ""), category=category,
                                     seconds=total - inner)) + "\n")


def timed(category: str):
    """Decorator: when ``$CLIPMEM_TIMINGS`` names a file, append the call's own seconds (nested timed
    calls excluded) under ``category`` and the chapter ``$CLIPMEM_CHAPTER``; otherwise a no-op."""
    def wrap(fn):
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            with timer(category):
                return fn(*args, **kwargs)
        return inner
    return wrap


def default_device() -> torch.device:
    """CUDA when a GPU is visible, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(device: torch.device | str | None) -> torch.device:
    """``device`` as a :class:`torch.device`; None means :func:`default_device`."""
    return torch.device(device) if device is not None else default_device()


@dataclasses.dataclass(frozen=True)
class Context:
    """What every cached fit or measurement needs besides its inputs (none of it changes a result's key).

    store:       the run store (default: ``runs/`` of the project, see :func:`~clipmem_lib.store.output_path`);
    device:      "cpu", "cuda" or "cuda:k" (None: CUDA if visible);
    progress:    tqdm bars while training;
    num_workers: DataLoader workers decoding image files while training;
    n_jobs:      trainings of a sweep run side by side in worker processes (CPU only).
    """

    store: RunStore = dataclasses.field(default_factory=lambda: RunStore(output_path("runs")))
    device: str | None = None
    progress: bool = True
    num_workers: int = 0
    n_jobs: int = 1

    def __post_init__(self):
        d = self.device
        if d is not None and d not in ("cpu", "cuda") and not str(d).startswith("cuda:"):
            raise ValueError(f"device must be 'cpu' or 'cuda[:k]', got {d!r}")
        if d is not None and str(d).startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device={d!r} but no CUDA GPU is visible; use device 'cpu'")
        for name in ("num_workers", "n_jobs"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < (0 if name == "num_workers" else 1):
                raise ValueError(f"{name} must be an integer ≥ {0 if name == 'num_workers' else 1}, got {v!r}")

    def replace(self, **changes) -> "Context":
        return dataclasses.replace(self, **changes)
