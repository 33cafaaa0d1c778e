"""UnitMem (Wang et al., NeurIPS 2024; paper Sec. 4.5, Fig. 4): how much single units specialise on
single training points, per transformer layer.

For unit u and point x, mu_u(x) is u's activation averaged over all tokens (CLS included) and over
the augmentations of x. With mu_max,u = max_x mu_u(x) and mu_-max,u the mean (or, as in the
reference code, the median) of mu_u over the other points:

    UnitMem(u) = (mu_max,u − mu_-max,u) / (mu_max,u + mu_-max,u)

**Negative activations.** open_clip's MLP uses GELU, whose output dips to −0.17. The ratio is only
meaningful for non-negative activations. Three treatments (``treatment``), all defensible:

- ``"clamp"`` (the default, fixed before any result): the token-averaged activation is clamped at 0
  ("a negative mean response counts as no response");
- ``"relu"``: each token's activation is clamped at 0 before averaging (only positive responses count);
- ``"shift"``: every activation is shifted up by GELU's minimum (:data:`GELU_MIN`), so the scale starts
  at GELU's floor rather than at 0.

A unit whose activations are all 0 after the treatment scores 0.  The clamp saturates many units at
exactly 1 (a unit negative on average for all but one point); the book shows each treatment's share of
saturated units per layer.

:class:`UnitActivations` streams mu_u(x) with forward hooks on every block's ``mlp.gelu``: it keeps
one running sum per (point, unit), so memory grows with units × points, never × augmentations.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch

from .augment import random_resized_crop, to_model_input
from .models import image_size
from .runtime import resolve_device, timed

__all__ = ["GELU_MIN", "TREATMENTS", "unitmem", "UnitActivations", "gelu_blocks", "layer_unitmem", "text_layer_unitmem", "top_unit_layers",
           "layer_summary", "saturation_by_layer", "last_layer_share"]

GELU_MIN = -0.16997  # min of x·Φ(x), at x ≈ −0.7518
TREATMENTS = ("clamp", "relu", "shift")


def unitmem(mu: torch.Tensor | np.ndarray, reduce: str = "median") -> np.ndarray:
    """UnitMem per unit from mean activations ``mu`` of shape (points, units)."""
    mu = torch.as_tensor(mu, dtype=torch.float64).clamp(min=0)
    if mu.shape[0] < 2:
        raise ValueError("UnitMem needs at least two points")
    top, arg = mu.max(0)
    others = mu.clone()
    others[arg, torch.arange(mu.shape[1])] = float("nan")  # drop the arg-max point of each unit
    if reduce == "median":
        rest = others.nanquantile(0.5, dim=0)  # numpy's median: the mean of the two middle values for even counts
    elif reduce == "mean":
        rest = others.nanmean(0)
    else:
        raise ValueError(f"reduce must be 'median' or 'mean', got {reduce!r}")
    denom = top + rest
    return torch.where(denom > 0, (top - rest) / denom.clamp(min=1e-12), torch.zeros_like(denom)).numpy()


def gelu_blocks(tower) -> list[torch.nn.Module]:
    """The ``mlp.gelu`` modules of a tower's transformer blocks (``model.visual``, or a CLIP ``model``
    for its text transformer), in depth order."""
    blocks = tower.transformer.resblocks
    return [b.mlp.gelu for b in blocks]


class UnitActivations:
    """Accumulate token-averaged activations per point and unit over repeated passes (augmentations).

    Usage::

        acts = UnitActivations(gelu_blocks(model.visual), n_points=len(idx))
        for aug in range(10):
            for batch_positions, images in batches:       # positions 0..n_points-1
                with acts.recording(batch_positions):
                    model.encode_image(augment(images))
        mu = acts.means()                                  # list, one (n_points, units) tensor per layer
    """

    def __init__(self, modules: Sequence[torch.nn.Module], n_points: int, treatment: str = "clamp"):
        if treatment not in TREATMENTS:
            raise ValueError(f"treatment must be one of {TREATMENTS}, got {treatment!r}")
        self.modules, self.n_points, self.treatment = list(modules), n_points, treatment
        self.sums: list[torch.Tensor | None] = [None] * len(self.modules)
        self.counts = torch.zeros(n_points, dtype=torch.float64)
        self._positions = None
        self._handles = [m.register_forward_hook(self._hook(i)) for i, m in enumerate(self.modules)]

    def _hook(self, layer):
        def fn(_module, _inp, out):
            if self._positions is None:
                return
            act = out.detach().float()
            if self.treatment == "relu":
                act = act.clamp(min=0)  # per token, before the mean
            elif self.treatment == "shift":
                act = act - GELU_MIN
            act = act.mean(dim=1) if act.dim() == 3 else act  # mean over tokens
            if self.sums[layer] is None:
                self.sums[layer] = torch.zeros(self.n_points, act.shape[-1], dtype=torch.float64)
            self.sums[layer].index_add_(0, self._positions, act.double().cpu())
        return fn

    class _Recording:
        def __init__(self, owner, positions):
            self.owner, self.positions = owner, torch.as_tensor(positions, dtype=torch.long)

        def __enter__(self):
            self.owner._positions = self.positions

        def __exit__(self, *exc):
            self.owner.counts.index_add_(0, self.positions, torch.ones(len(self.positions), dtype=torch.float64))
            self.owner._positions = None

    def recording(self, positions):
        """Context manager: activations of the forward passes inside belong to these point positions."""
        return self._Recording(self, positions)

    def means(self) -> list[torch.Tensor]:
        """mu per layer: (n_points, units) mean activation over tokens and recorded passes."""
        if (self.counts == 0).any():
            raise ValueError(f"{int((self.counts == 0).sum())} points were never recorded")
        return [s / self.counts[:, None] for s in self.sums]

    def remove(self):
        for h in self._handles:
            h.remove()


@timed("unitmem")
@torch.no_grad()
def layer_unitmem(model, images, indices: Sequence[int], *, n_aug: int = 10, crop_scale=(0.9, 1.0),
                  reduce: str = "median", treatment: str = "clamp", seed: int = 0, batch_size: int = 256,
                  device=None) -> pd.DataFrame:
    """UnitMem of every MLP unit of ``model.visual`` over the points ``indices`` (Fig. 4), from ``n_aug``
    random resized crops per point (the training augmentation).  One row per (layer, unit); the same
    crops for every model given the same ``seed``; ``treatment`` of negative GELU outputs as in the
    module docstring.  Works for CLIP and for :class:`vision.Encoder`."""
    device = resolve_device(device)
    model.to(device).eval()
    idx, size = np.asarray(indices, dtype=np.int64), image_size(model)
    acts = UnitActivations(gelu_blocks(model.visual), n_points=len(idx), treatment=treatment)
    try:
        for a in range(n_aug):
            gen = torch.Generator().manual_seed(int(np.random.default_rng([seed, a]).integers(2**62)))
            for start in range(0, len(idx), batch_size):
                chunk = idx[start:start + batch_size]
                x = to_model_input(images.batch(chunk, [0] * len(chunk), size).to(device))
                with acts.recording(np.arange(start, start + len(chunk))):
                    model.encode_image(random_resized_crop(x, gen, crop_scale))
        mus = acts.means()
    finally:
        acts.remove()
    return _per_unit(mus, reduce)


def _per_unit(mus: list[torch.Tensor], reduce: str) -> pd.DataFrame:
    return pd.concat([pd.DataFrame({"layer": layer, "unit": np.arange(mu.shape[1]), "unitmem": unitmem(mu, reduce)})
                      for layer, mu in enumerate(mus)], ignore_index=True)


@timed("unitmem")
@torch.no_grad()
def text_layer_unitmem(model, tokens: torch.Tensor, indices: Sequence[int], caption_ids: Sequence[int] = (0,), *,
                       reduce: str = "median", treatment: str = "clamp", batch_size: int = 512,
                       device=None) -> pd.DataFrame:
    """UnitMem of every MLP unit of CLIP's text transformer (not in the paper): the captions
    ``caption_ids`` of a pair are its augmentations, and activations are averaged over all context
    positions (padding included, as all tokens are for images)."""
    device = resolve_device(device)
    model.to(device).eval()
    idx = np.asarray(indices, dtype=np.int64)
    acts = UnitActivations(gelu_blocks(model), n_points=len(idx), treatment=treatment)
    try:
        for c in caption_ids:
            for start in range(0, len(idx), batch_size):
                chunk = idx[start:start + batch_size]
                with acts.recording(np.arange(start, start + len(chunk))):
                    model.encode_text(tokens[torch.as_tensor(chunk), c].to(device))
        mus = acts.means()
    finally:
        acts.remove()
    return _per_unit(mus, reduce)


def top_unit_layers(table: pd.DataFrame, percents=(1, 3, 5)) -> pd.DataFrame:
    """Fig. 11: where the top ``p``% units by UnitMem sit: for each p, the fraction of them in each layer.

    Units tied at the cut-off (common: many units score exactly 1) share the remaining places equally,
    so the answer does not depend on the order of the units."""
    rows, u = [], table.unitmem.to_numpy()
    for p in percents:
        k = max(1, int(round(len(table) * p / 100)))
        cut = np.sort(u)[::-1][k - 1]
        above, tied = u > cut, u == cut
        weight = above + tied * (k - above.sum()) / tied.sum()
        share = pd.Series(weight).groupby(table.layer.to_numpy()).sum() / k
        rows += [dict(top_percent=p, layer=int(layer), share=float(share.get(layer, 0.0)))
                 for layer in sorted(table.layer.unique())]
    return pd.DataFrame(rows)


def layer_summary(table: pd.DataFrame, saturated_above: float = 0.999) -> pd.DataFrame:
    """Fig. 4 as a table, one row per model (``table``: model, layer, unitmem per unit): the mean UnitMem
    of each layer (columns 0, 1, …), ``last`` (the model's own last block), ``rise`` (last minus first
    block) and ``saturated`` (the share of its units with UnitMem above ``saturated_above``)."""
    means = table.groupby(["model", "layer"]).unitmem.mean()
    ends = means.groupby(level="model").agg(["first", "last"])  # groups come sorted by layer
    return means.unstack("layer").assign(
        last=ends["last"], rise=ends["last"] - ends["first"],
        saturated=table.groupby("model").unitmem.apply(lambda u: float((u > saturated_above).mean())))


def saturation_by_layer(table: pd.DataFrame, saturated_above: float = 0.999, by=("model",)) -> pd.DataFrame:
    """Per ``by`` group (rows) and layer (columns): the share of units with UnitMem above ``saturated_above``."""
    sat = table.assign(saturated=table.unitmem > saturated_above)
    return sat.groupby([*by, "layer"]).saturated.mean().unstack("layer")


def last_layer_share(track: pd.DataFrame, percent: float = 1) -> tuple[float, float]:
    """Fig. 11: the share of the top ``percent``% units that sit in the last layer, at the first and at
    the last snapshot of ``track`` (from :func:`top_unit_layers` per epoch)."""
    part = track[(track.layer == track.layer.max()) & (track.top_percent == percent)].sort_values("epoch")
    return float(part.share.iloc[0]), float(part.share.iloc[-1])
