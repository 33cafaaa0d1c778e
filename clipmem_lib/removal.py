"""Removing memorised pairs and retraining (Sec. 4.6, Fig. 6 and 7).

The pool is S_C, the pairs CLIPMem is defined for.  Three strategies order it: highest CLIPMem
first, random, and lowest CLIP similarity under f first (the paper's two baselines).  Removing the
first k of an order from f's training set and retraining gives one point of the utility curve.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

__all__ = ["STRATEGIES", "removal_order", "doubling_grid", "without", "peak_and_cutoff"]

STRATEGIES = ("clipmem", "random", "similarity")


def removal_order(pool: pd.DataFrame, strategy: str, seed: int = 0) -> np.ndarray:
    """The pool's ``index`` values in the order ``strategy`` removes them (Fig. 6).

    ``pool`` has one row per pair with ``index``, ``clipmem`` and ``sim_f`` (f's image–text cosine
    similarity): "clipmem" sorts by CLIPMem, highest first; "similarity" by ``sim_f``, lowest first;
    "random" is a seeded permutation.  Ties keep the pool's order (stable sort).
    """
    if strategy == "clipmem":
        pos = np.argsort(-pool["clipmem"].to_numpy(), kind="stable")
    elif strategy == "similarity":
        pos = np.argsort(pool["sim_f"].to_numpy(), kind="stable")
    elif strategy == "random":
        pos = np.random.default_rng([seed, 6]).permutation(len(pool))
    else:
        raise ValueError(f"unknown removal strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    return pool["index"].to_numpy()[pos]


def doubling_grid(pool_size: int, fractions: Sequence[float]) -> list[int]:
    """k for each fraction of the pool (a doubling grid such as 5%, 10%, …, 80% of |S_C|), at least 1 each."""
    bad = [f for f in fractions if not 0 < f <= 1]
    if bad:
        raise ValueError(f"removal fractions must lie in (0, 1], got {bad}")
    return sorted({max(1, int(round(f * pool_size))) for f in fractions})


def without(indices: Sequence[int], removed: Sequence[int]) -> np.ndarray:
    """``indices`` minus ``removed``, in their original order (the retraining set)."""
    idx = np.asarray(indices, dtype=np.int64)
    return idx[~np.isin(idx, np.asarray(removed, dtype=np.int64))]


def peak_and_cutoff(curve: pd.DataFrame, metric: str = "utility") -> dict:
    """Where removal by CLIPMem helps most, and where it stops beating random removal (Fig. 6).

    ``curve`` has columns ``strategy``, ``k`` and ``metric`` (k = 0 is the model before removal).
    Returns ``peak_k`` (the k ≥ 1 with the highest CLIPMem-strategy utility), ``peak_gain`` (its
    utility minus random removal's at that k), and ``cutoff_k``: the first k after which CLIPMem
    removal is below random removal (None if it never is on the grid).
    """
    wide = curve[curve.k > 0].pivot_table(index="k", columns="strategy", values=metric).sort_index()
    diff = wide["clipmem"] - wide["random"]
    peak_k = int(wide["clipmem"].idxmax())
    below = diff[diff < 0]
    return dict(peak_k=peak_k, peak_gain=float(diff.loc[peak_k]),
                cutoff_k=int(below.index[0]) if len(below) else None)
