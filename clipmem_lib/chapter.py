"""What every chapter does first: from its checked parameters to data, splits, the training recipe and
the :class:`~clipmem_lib.runtime.Context` that every cached call takes.

    P = guard.check()
    S = chapter.setup(P)
    f, g = fit_f_and_g(S.data, S.splits, P.model, S.train, ctx=S.ctx)
"""
from __future__ import annotations

import dataclasses

from .data import PairData
from .datasets import load_dataset
from .runtime import Context
from .splits import Splits, make_splits
from .store import RunStore, output_path
from .train import TrainConfig

__all__ = ["Setup", "setup"]


@dataclasses.dataclass
class Setup:
    """A chapter's data, splits, training config (``train``) and run context (``ctx``)."""

    data: PairData
    splits: Splits
    train: TrainConfig
    ctx: Context
    seeds: list[int] = dataclasses.field(default_factory=lambda: [0])

    def seeded(self, config: TrainConfig | None = None) -> dict[int, TrainConfig]:
        """``config`` (default: the chapter's) once per training seed.  Settings trained with the same
        seed share the initialisation and the batch order: the seeds pair them (common random numbers)."""
        return {s: dataclasses.replace(config or self.train, seed=s) for s in self.seeds}

    def describe(self) -> str:
        """One line on the scale of the run, printed at the top of each chapter."""
        s = self.splits
        return (f"{len(self.data)} pairs ({self.data.name}); |S_S|={len(s.shared)}, |S_C|=|S_I|={len(s.candidates)}, "
                f"|S_E|={len(s.external)}; {self.train.epochs} epochs, {len(self.seeds)} training seed"
                f"{'s' if len(self.seeds) > 1 else ''} per setting, device {self.ctx.device}")


def setup(P) -> Setup:
    """The :class:`Setup` of a chapter's checked parameters ``P`` (the schema's RUN parameters)."""
    ctx = Context(store=RunStore(output_path(P.runs_dir)), device=P.device, progress=P.progress,
                  num_workers=P.num_workers, n_jobs=P.n_jobs)  # checks the device before any data is read
    data = load_dataset(P.data_source, P.data_path, n_pairs=P.n_pairs, image_size=P.image_size,
                        n_variants=P.n_variants, generated_path=P.generated_path, seed=P.seed)
    splits = make_splits(len(data), P.n_candidates, P.n_external, None if P.n_shared < 0 else P.n_shared, seed=P.seed)
    if P.seeds < 1:
        raise ValueError(f"seeds must be at least 1, got {P.seeds}")
    cfg = TrainConfig(epochs=P.epochs, batch_size=P.batch_size, lr=P.lr, warmup=P.warmup, seed=P.seed)
    return Setup(data, splits, cfg, ctx, [P.seed + s for s in range(P.seeds)])
