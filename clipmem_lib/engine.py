"""The one epoch engine behind every trainer here: CLIP (train.py), DINO and the supervised baseline
(vision.py).

It owns what the three share, so they cannot drift apart: the seeded per-epoch order and augmentation
generator, AdamW with no weight decay on gains, biases and ``logit_scale`` (as open_clip_train), linear
warm-up then cosine decay per step, DataLoader workers, bf16 autocast on CUDA, an atomic checkpoint after
every epoch with resume, tqdm, and the per-epoch history.  A trainer supplies what differs: the batches
of an epoch and the loss of one step.
"""
from __future__ import annotations

import math
import os
import pathlib
import time
from typing import Callable, Protocol, Sequence

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

__all__ = ["EpochConfig", "decay_groups", "lr_at", "epoch_order", "epoch_generator", "fit_epochs"]


class EpochConfig(Protocol):
    """The fields the engine reads from a trainer's config (``TrainConfig``, ``VisionConfig``)."""

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    warmup: float
    seed: int


def lr_at(step: int, total: int, base: float, warmup: float) -> float:
    """Linear warm-up over ``warmup·total`` steps, then cosine decay to 0 (Table 2's schedule)."""
    w = max(1, round(warmup * total))
    if step < w:
        return base * (step + 1) / w
    return 0.5 * base * (1 + math.cos(math.pi * (step - w) / max(1, total - w)))


def decay_groups(module: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW parameter groups: weight decay on matrices only, none on gains, biases and ``logit_scale``."""
    named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    no = [p for n, p in named if p.ndim < 2 or "logit_scale" in n]
    yes = [p for n, p in named if not (p.ndim < 2 or "logit_scale" in n)]
    return [{"params": yes, "weight_decay": weight_decay}, {"params": no, "weight_decay": 0.0}]


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The order in which epoch ``epoch`` visits training positions 0..n-1 (seeded by (seed, epoch) only)."""
    return np.random.default_rng([seed, 0, epoch]).permutation(n)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The augmentation generator of epoch ``epoch``: f and g of one seed draw the very same crops."""
    return torch.Generator().manual_seed(int(np.random.default_rng([seed, 3, epoch]).integers(2**62)))


def _save_atomic(obj, path: pathlib.Path):
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


class _Batches(torch.utils.data.Dataset):
    """Step ``j`` of an epoch, loaded by ``load(spec)`` (lets a DataLoader prefetch file images)."""

    def __init__(self, specs: Sequence, load: Callable):
        self.specs, self.load = specs, load

    def __len__(self):
        return len(self.specs)

    def __getitem__(self, j):
        return self.load(self.specs[j])


def fit_epochs(state: dict[str, torch.nn.Module], params: torch.nn.Module, cfg, n_items: int,
               epoch_specs: Callable[[int, np.ndarray], list], load: Callable, step: Callable, *,
               device: torch.device, checkpoint: str | os.PathLike | None = None, progress: bool = True,
               num_workers: int = 0, desc: str = "train", after_step: Callable[[], None] | None = None,
               on_epoch_end: Callable[[int], None] | None = None) -> list[dict]:
    """Train for ``cfg.epochs`` epochs and return the per-epoch history.

    state:       the modules a checkpoint saves and a resume restores (e.g. model, EMA teacher, loss centre);
    params:      the module whose parameters AdamW updates (:func:`decay_groups`);
    n_items:     training positions; each epoch drops the last partial batch, as open_clip does;
    epoch_specs: ``(epoch, order) -> specs``, one spec per step (which items, views and captions);
    load:        ``spec -> batch`` (run in DataLoader workers when ``num_workers`` > 0);
    step:        ``(batch, generator, epoch, step, total) -> (loss, logs)``, run under bf16 autocast on
                 CUDA; ``logs`` is a dict of floats averaged into the history.
    """
    world, rank = (dist.get_world_size(), dist.get_rank()) if dist.is_initialized() else (1, 0)
    if n_items < cfg.batch_size:
        raise ValueError(f"{n_items} training items is fewer than one batch of {cfg.batch_size}")
    opt = torch.optim.AdamW(decay_groups(params, cfg.weight_decay), lr=cfg.lr)
    per_epoch = n_items // cfg.batch_size
    total, history, start = per_epoch * cfg.epochs, [], 0
    ckpt = pathlib.Path(checkpoint) if checkpoint else None
    if ckpt and ckpt.exists():
        saved = torch.load(ckpt, map_location=device, weights_only=True)
        for name, module in state.items():
            module.load_state_dict(saved["state"][name])
        opt.load_state_dict(saved["optimizer"])
        history, start = list(saved["history"]), int(saved["epoch"]) + 1
    bar = tqdm(total=total, initial=start * per_epoch, desc=desc, disable=not progress or rank != 0,
               mininterval=2.0, dynamic_ncols=True)
    for epoch in range(start, cfg.epochs):
        t0, losses, logs = time.perf_counter(), [], {}
        gen = epoch_generator(cfg.seed, epoch)
        loader = torch.utils.data.DataLoader(_Batches(epoch_specs(epoch, epoch_order(n_items, cfg.seed, epoch)), load),
                                             batch_size=None, num_workers=num_workers, shuffle=False)
        for s, batch in enumerate(loader):
            k = epoch * per_epoch + s
            for group in opt.param_groups:
                group["lr"] = lr_at(k, total, cfg.lr, cfg.warmup)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                loss, extra = step(batch, gen, epoch, k, total)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if after_step is not None:
                after_step()
            losses.append(loss.item())
            for name, v in extra.items():
                logs.setdefault(name, []).append(v)
            bar.update(1)
            bar.set_postfix(epoch=epoch, loss=f"{losses[-1]:.3f}", refresh=False)
        dt = time.perf_counter() - t0
        history.append(dict(epoch=epoch, loss=float(np.mean(losses)), lr=opt.param_groups[0]["lr"], seconds=dt,
                            samples_per_s=per_epoch * cfg.batch_size / dt,
                            **{name: float(np.mean(v)) for name, v in logs.items()}))
        if ckpt and rank == 0:
            _save_atomic(dict(state={n: m.state_dict() for n, m in state.items()}, optimizer=opt.state_dict(),
                              epoch=epoch, history=history), ckpt)
        if on_epoch_end is not None:
            on_epoch_end(epoch)
    bar.close()
    return history
