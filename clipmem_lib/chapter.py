"""What every chapter does first: from its checked parameters to data, splits, the training recipe and
the :class:`~clipmem_lib.runtime.Context` that every cached call takes.

    P = guard.check()
    S = chapter.setup(P)
    f, g = fit_f_and_g(S.data, S.splits, P.model, S.train, ctx=S.ctx)
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .data import PairData
from .datasets import load_dataset
from .measure import utility
from .runtime import Context
from .scenes import SceneConfig, make_probe_set, make_scenes
from .splits import Splits, make_splits
from .store import RunStore, output_path
from .train import TrainConfig

__all__ = ["Setup", "setup", "design_seeds", "split_sizes", "removal_pool", "REMOVAL_POOLS", "Instruments", "instruments", "HELDOUT_SEED", "PROBE_SEED"]

PROBE_SEED, HELDOUT_SEED = 10_000, 20_000  # built-in probe and held-out scenes: seeds no chapter trains on


@dataclasses.dataclass
class Setup:
    """A chapter's data, splits, training config (``train``) and run context (``ctx``)."""

    data: PairData
    splits: Splits
    train: TrainConfig
    ctx: Context
    seeds: list[int] = dataclasses.field(default_factory=lambda: [0])
    profile: str = ""  # the book's profile (the scale's name), when the book runner ran the chapter

    def seeded(self, config: TrainConfig | None = None) -> dict[int, TrainConfig]:
        """``config`` (default: the chapter's) once per training seed.  Settings trained with the same
        seed share the initialisation and the batch order: the seeds pair them (common random numbers)."""
        return {s: dataclasses.replace(config or self.train, seed=s) for s in self.seeds}

    def describe(self) -> str:
        """One line on the scale of the run, printed at the top of each chapter."""
        s = self.splits
        return ((f"profile {self.profile}: " if self.profile else "") + f"{len(self.data)} pairs ({self.data.name}); |S_S|={len(s.shared)}, |S_C|=|S_I|={len(s.candidates)}, "
                f"|S_E|={len(s.external)}; {self.train.epochs} epochs, {len(self.seeds)} training seed"
                f"{'s' if len(self.seeds) > 1 else ''} per setting, device {self.ctx.device}")


@dataclasses.dataclass
class Instruments:
    """Sec. 4.4–4.6's utility instruments, on data no model of the chapter trained on: a linear probe on
    ``probe`` over ``probe_seeds`` fit/test splits, and image→text retrieval on ``heldout`` =
    (data, indices) in galleries of ``gallery`` pairs.  ``kw`` passes all of them to
    :func:`~clipmem_lib.sweeps.compare_settings` and :func:`~clipmem_lib.sweeps.removal_curve`."""

    probe: PairData
    heldout: tuple[PairData, np.ndarray]
    gallery: int
    probe_seeds: tuple[int, ...]

    @property
    def kw(self) -> dict:
        return dict(probe_seeds=self.probe_seeds, heldout=self.heldout, gallery=self.gallery)

    def utility(self, trained, ctx: Context | None = None) -> dict:
        """:func:`~clipmem_lib.measure.utility` of one model with these instruments."""
        return utility(trained, self.probe, *self.heldout, seeds=self.probe_seeds, gallery=self.gallery, ctx=ctx)

    def describe(self) -> str:
        n = len(self.heldout[1])
        return (f"probe: {len(self.probe)} images ({self.probe.name}), {len(self.probe_seeds)} fit/test splits; "
                f"retrieval: {n // self.gallery} galleries of {self.gallery} held-out pairs ({self.heldout[0].name})")


def instruments(P, S: Setup, builtin: bool | None = None) -> Instruments:
    """The utility instruments of a chapter's parameters: on built-in data a probe of ``P.probe_size``
    scenes and ``P.heldout_pairs`` held-out scenes, both from seeds no chapter trains on; on real data
    (no labels to probe but the built-in scenes') retrieval on S_E and every pair the splits leave unused.
    ``builtin=True`` gives the built-in ones whatever the data (for models trained on built-in stand-ins)."""
    probe = make_probe_set(P.probe_size, seed=PROBE_SEED, image_size=P.image_size)
    if builtin or (builtin is None and P.data_source == "builtin"):
        held = make_scenes(SceneConfig(n=P.heldout_pairs, seed=HELDOUT_SEED + P.seed, image_size=P.image_size))
        heldout = (held, np.arange(len(held)))
    else:
        used = np.concatenate([S.splits.f_indices, S.splits.g_indices, S.splits.external])
        heldout = (S.data, np.concatenate([S.splits.external, np.setdiff1d(np.arange(len(S.data)), used)]))
    gallery = min(P.gallery_size, len(heldout[1]))
    if gallery < 2:
        raise ValueError(f"gallery_size must be at least 2 held-out pairs, got {P.gallery_size} "
                         f"({len(heldout[1])} held out)")
    return Instruments(probe, heldout, gallery, tuple(range(P.probe_seeds)))


def _submitit_options(P) -> dict:
    """``Context.submitit`` of a chapter's ``submitit_*`` parameters (those left at "", -1 or 0 leave
    submitit's or fit_many's defaults)."""
    folder = str(output_path(P.submitit_folder)) if P.submitit_folder else None
    given = dict(cluster=P.submitit_cluster or None, folder=folder, slurm_partition=P.submitit_partition or None,
                 timeout_min=P.submitit_timeout_min, gpus_per_node=None if P.submitit_gpus < 0 else P.submitit_gpus,
                 cpus_per_task=P.submitit_cpus or None)
    return {k: v for k, v in given.items() if v is not None}


REMOVAL_POOLS = ("all", "S_C")


def removal_pool(P) -> str:
    """Chapter 07's ``removal_pool`` ("S_C" for a chapter that declares none), checked."""
    pool = getattr(P, "removal_pool", "S_C")
    if pool not in REMOVAL_POOLS:
        raise ValueError(f"removal_pool must be one of {', '.join(map(repr, REMOVAL_POOLS))}, got {pool!r}")
    return pool


def split_sizes(P, n: int | None) -> tuple[int, int, int | None]:
    """(|S_C|, |S_E|, |S_S| or None for all remaining pairs) of a chapter's parameters on ``n`` pairs.

    Chapter 07's ``removal_pool`` "all" (beyond the paper's protocol) leaves S_S empty, so f's whole
    training set is S_C, the pool that CLIPMem scores and removal draws from: S_C and S_I halve the
    pairs S_E leaves, and f and g are the two halves.  "S_C" (the paper's, and every other chapter's)
    takes ``n_candidates`` and ``n_shared``."""
    if removal_pool(P) == "S_C":
        return P.n_candidates, P.n_external, None if P.n_shared < 0 else P.n_shared
    if n is None:
        raise ValueError("removal_pool 'all' sizes S_C from the number of pairs in the data, which is not known here")
    return (n - P.n_external) // 2, P.n_external, 0


def setup(P) -> Setup:
    """The :class:`Setup` of a chapter's checked parameters ``P`` (the schema's RUN parameters; the splits
    as :func:`split_sizes` says)."""
    ctx = Context(store=RunStore(output_path(P.runs_dir)), device=P.device, progress=P.progress,
                  num_workers=P.num_workers, n_jobs=P.n_jobs, executor=P.executor,
                  submitit=_submitit_options(P))  # checks the device and the executor before any data is read
    removal_pool(P)
    data = load_dataset(P.data_source, P.data_path, n_pairs=P.n_pairs, image_size=P.image_size,
                        n_variants=P.n_variants, generated_path=P.generated_path, seed=P.seed)
    splits = make_splits(len(data), *split_sizes(P, len(data)), seed=P.seed)
    if P.seeds < 1:
        raise ValueError(f"seeds must be at least 1, got {P.seeds}")
    cfg = TrainConfig(epochs=P.epochs, batch_size=P.batch_size, lr=P.lr, warmup=P.warmup, seed=P.seed)
    return Setup(data, splits, cfg, ctx, [P.seed + s for s in range(P.seeds)], P.profile)


def design_seeds(P, n: int) -> list[int]:
    """The paired training seeds of a pooled design that a profile gives ``n`` seeds (0: the chapter's
    ``seeds``): the chapter's seeds first, so the design's first seeds are every other setting's."""
    if n < 0:
        raise ValueError(f"a design's seeds must be 0 (the chapter's) or more, got {n}")
    return [P.seed + s for s in range(n or P.seeds)]

