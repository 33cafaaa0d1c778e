"""The estimation protocol's four disjoint subsets (Sec. 4.1) and planted mis-captions (Fig. 2b).

S_S is shared by f and g, S_C (candidates) is seen only by f, S_I (independent) only by g, S_E
(external) by neither; |S_C| = |S_I|.  f trains on S_S ∪ S_C and g on S_S ∪ S_I.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .data import PairData

__all__ = ["Splits", "make_splits", "plant_miscaptions"]

SUBSETS = ("S_S", "S_C", "S_I", "S_E")


@dataclasses.dataclass(frozen=True)
class Splits:
    """Index arrays into a :class:`PairData` for S_S, S_C, S_I and S_E."""

    shared: np.ndarray
    candidates: np.ndarray
    independent: np.ndarray
    external: np.ndarray

    @property
    def f_indices(self) -> np.ndarray:
        """f's training pairs, S_S then S_C (position len(S_S)+i is S_C[i])."""
        return np.concatenate([self.shared, self.candidates])

    @property
    def g_indices(self) -> np.ndarray:
        """g's training pairs, S_S then S_I: S_I[i] takes the slot S_C[i] has in f's list."""
        return np.concatenate([self.shared, self.independent])

    def subsets(self) -> dict[str, np.ndarray]:
        return dict(zip(SUBSETS, (self.shared, self.candidates, self.independent, self.external)))

    def subset_of(self, n: int) -> np.ndarray:
        """Subset name per pair index (``""`` for pairs in no subset)."""
        out = np.full(n, "", dtype=object)
        for name, idx in self.subsets().items():
            out[idx] = name
        return out


def make_splits(n: int, n_candidates: int, n_external: int, n_shared: int | None = None, seed: int = 0) -> Splits:
    """Disjoint random S_S, S_C, S_I, S_E of a dataset of ``n`` pairs (|S_I| = |S_C|).

    ``n_shared=None`` gives S_S all remaining pairs.  Paper sizes (COCO, CC3M): 65,000 / 5,000 /
    5,000 / 5,000.  Deterministic given ``seed``.
    """
    sizes = dict(n_candidates=n_candidates, n_external=n_external, n_shared=n_shared)
    for k, v in sizes.items():
        if v is not None and (not isinstance(v, (int, np.integer)) or v < (1 if k != "n_shared" else 0)):
            raise ValueError(f"{k} must be a positive integer, got {v!r}")
    rest = n - 2 * n_candidates - n_external
    if rest < 0 or (n_shared is not None and n_shared > rest):
        need = 2 * n_candidates + n_external + (n_shared or 0)
        raise ValueError(f"split sizes too large for the data: |S_C|=|S_I|={n_candidates}, |S_E|={n_external}"
                         + (f", |S_S|={n_shared}" if n_shared is not None else "")
                         + f" need {need} pairs, the data has {n}")
    if n_shared is None:
        n_shared = rest
    perm = np.random.default_rng(seed).permutation(n)
    c = np.cumsum([n_shared, n_candidates, n_candidates, n_external])
    return Splits(*(np.sort(perm[a:b]) for a, b in zip([0, *c[:-1]], c)))


def plant_miscaptions(data: PairData, subset: np.ndarray, fraction: float = 0.1, seed: int = 0) -> PairData:
    """Shuffle the caption sets of a random ``fraction`` of ``subset`` among themselves (Fig. 2b).

    The shuffle is a derangement: every chosen pair receives another chosen pair's captions.  The
    paper shuffles 500 of the 5,000 captions of S_C.  Sets ``meta['is_miscaptioned']``.
    """
    subset = np.asarray(subset)
    k = int(round(fraction * len(subset)))
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    if k == 0:
        return data
    if k < 2:
        raise ValueError(f"need at least 2 pairs to shuffle captions, fraction {fraction} of {len(subset)} gives {k}")
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(subset, size=k, replace=False))
    shift = rng.permutation(k)  # a cyclic shift along a random order is a derangement
    new = {int(chosen[shift[j]]): data.captions[int(chosen[shift[(j + 1) % k]])] for j in range(k)}
    return data.replace_captions(new, name=f"{data.name} + {k} shuffled captions")
