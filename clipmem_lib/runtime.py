"""Where and how the library runs: the run store, the device, progress bars and parallelism.

Notebooks get one :class:`Context` from :func:`clipmem_lib.chapter.setup` and pass it to every cached
call (``ctx=S.ctx``) instead of repeating ``store``, ``device``, ``progress``, ``num_workers``,
``n_jobs`` and where a sweep's trainings run (``executor``, ``submitit``) at each call.
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

__all__ = ["Context", "default_device", "resolve_device", "timer", "timed", "worker", "TIMINGS_ENV", "CHAPTER_ENV",
           "CATEGORIES", "EXECUTORS", "SUBMITIT_PIN"]

TIMINGS_ENV, CHAPTER_ENV = "CLIPMEM_TIMINGS", "CLIPMEM_CHAPTER"  # set by the book runner (book.py)
CATEGORIES = ("training", "embeddings", "probing", "unitmem", "plotting")
EXECUTORS = ("local", "submitit")  # where fit_many trains what the store lacks (Context.executor)
SUBMITIT_PIN = "submitit==1.5.4"  # the tested version (requirements.txt); optional, so not in pyproject's dependencies
_open: list[float] = []  # time spent in nested timed calls, per open call
_worker: list[bool] = []  # non-empty inside worker(): this process trains for another


@contextlib.contextmanager
def worker():
    """Inside it this process trains for another one (a submitit job), so its timings count as a worker's."""
    _worker.append(True)
    try:
        yield
    finally:
        _worker.pop()


@contextlib.contextmanager
def timer(category: str):
    """Context manager form of :func:`timed`.  In a worker process (``n_jobs`` > 1, or a submitit job) the
    category gets " (workers)": those seconds run beside the chapter's own and are reported apart."""
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
        if _worker or multiprocessing.parent_process() is not None:
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
    n_jobs:      trainings of a sweep run side by side in worker processes (CPU only, executor "local");
    executor:    where :func:`~clipmem_lib.fitting.fit_many` trains what the store lacks: "local" (here, or in
                 ``n_jobs`` processes) or "submitit" (one submitit job per training, SLURM where available; the
                 store must be on a filesystem the jobs share);
    submitit:    options of submitit's ``AutoExecutor.update_parameters`` (``timeout_min``, ``slurm_partition``,
                 ``gpus_per_node``, ``cpus_per_task``, …) and two of its constructor: ``cluster`` ("slurm";
                 "local" runs the jobs as processes here, "debug" in this process; default: SLURM where
                 available) and ``folder`` (its logs; default ``<store>/.submitit``).
    """

    store: RunStore = dataclasses.field(default_factory=lambda: RunStore(output_path("runs")))
    device: str | None = None
    progress: bool = True
    num_workers: int = 0
    n_jobs: int = 1
    executor: str = "local"
    submitit: dict = dataclasses.field(default_factory=dict, hash=False)

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
        if self.executor not in EXECUTORS:
            raise ValueError(f"executor must be {' or '.join(map(repr, EXECUTORS))}, got {self.executor!r}")
        if not isinstance(self.submitit, dict) or not all(isinstance(k, str) for k in self.submitit):
            raise ValueError(f"submitit must be a dict of submitit options by name, got {self.submitit!r}")
        if self.executor == "submitit":
            try:
                import submitit  # noqa: F401
            except ImportError:
                raise ValueError(f"executor 'submitit' needs the submitit package: pip install {SUBMITIT_PIN}") from None
            if self.store.root is None:
                raise ValueError("executor 'submitit' needs a run store with a folder: its jobs hand their models "
                                 "back through it")

    def replace(self, **changes) -> "Context":
        """A copy with ``changes`` (checked like a new one)."""
        return dataclasses.replace(self, **changes)
