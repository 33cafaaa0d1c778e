"""Removing memorised pairs and retraining (Sec. 4.6, Fig. 6 and 7).

The pool is S_C, the pairs CLIPMem is defined for.  Three strategies order it: highest CLIPMem
first, random, and lowest CLIP image–caption similarity first (the paper's two baselines).  The
similarity is taken under g, which never saw S_C: f has fitted S_C, mis-captions included, which
inflates exactly the similarities this baseline needs to be low ("similarity_f" is f's version, for
comparison).  "oracle" removes the planted mis-captions first: the ceiling of any detector.  Removing
the first k of an order from f's training set and retraining gives one point of the utility curve.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from .claims import paired_interval

__all__ = ["STRATEGIES", "WITH_ORACLE", "ORDERINGS", "removal_order", "detection_counts", "nearest", "nearest_k", "first_k_covering", "doubling_grid", "without", "peak_and_cutoff", "peak_table", "describe_peak",
           "planted_counts", "utility_gap", "oracle_check"]

STRATEGIES = ("clipmem", "random", "similarity")  # retrained by default (Fig. 6)
WITH_ORACLE = STRATEGIES + ("oracle",)  # retrained on planted data: the oracle is the ceiling
ORDERINGS = STRATEGIES + ("similarity_f", "oracle")


def removal_order(pool: pd.DataFrame, strategy: str, seed: int = 0) -> np.ndarray:
    """The pool's ``index`` values in the order ``strategy`` removes them (Fig. 6).

    ``pool`` has one row per pair with ``index``, ``clipmem``, ``sim_g`` and ``sim_f`` (image–caption
    cosine similarity under g and f) and, for "oracle", ``is_miscaptioned``: "clipmem" sorts by CLIPMem,
    highest first; "similarity" by ``sim_g`` and "similarity_f" by ``sim_f``, lowest first; "random" is a
    seeded permutation; "oracle" puts the planted pairs first, then the rest at random.  Ties keep the
    pool's order (stable sort).
    """
    rnd = np.random.default_rng([seed, 6]).permutation(len(pool))
    if strategy == "clipmem":
        pos = np.argsort(-pool["clipmem"].to_numpy(), kind="stable")
    elif strategy in ("similarity", "similarity_f"):
        pos = np.argsort(pool["sim_g" if strategy == "similarity" else "sim_f"].to_numpy(), kind="stable")
    elif strategy == "random":
        pos = rnd
    elif strategy == "oracle":
        pos = rnd[np.argsort(~pool["is_miscaptioned"].to_numpy(dtype=bool)[rnd], kind="stable")]
    else:
        raise ValueError(f"unknown removal strategy {strategy!r}; choose one of {', '.join(ORDERINGS)}")
    return pool["index"].to_numpy()[pos]


def detection_counts(pool: pd.DataFrame, ks: Sequence[int], orderings=ORDERINGS, seed: int = 0) -> pd.DataFrame:
    """Planted mis-captions among the first k of each ordering (rows: k, columns: ordering): how well
    each ranking finds them, with no retraining."""
    planted = dict(zip(pool["index"], pool["is_miscaptioned"].astype(bool)))
    orders = {s: removal_order(pool, s, seed) for s in orderings}
    return pd.DataFrame({s: [sum(planted[i] for i in orders[s][:k]) for k in ks] for s in orderings},
                        index=pd.Index(list(ks), name="k"))


def nearest(values, target: float):
    """The grid value closest to ``target`` (the smaller on a tie), fixed before any result is seen: the
    k nearest the number of planted mis-captions, or the noise std nearest the paper's best (0.15)."""
    return min(sorted(values), key=lambda v: abs(v - target))


def nearest_k(ks, target: float) -> int:
    """:func:`nearest` for a grid of k."""
    return int(nearest(ks, target))


def first_k_covering(ks, n: int) -> int:
    """The first grid value ≥ ``n`` (the largest if none is)."""
    ks = sorted(ks)
    return int(next((k for k in ks if k >= n), ks[-1]))


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


def peak_table(curve: pd.DataFrame, metrics: Sequence[str], by: str | None = "data") -> pd.DataFrame:
    """:func:`peak_and_cutoff` for each of ``metrics``, one row per metric, or per (``by``, metric) where
    ``curve`` has a ``by`` column (e.g. clean and planted data in Fig. 6)."""
    groups = curve.groupby(by, sort=False) if by and by in curve else [(None, curve)]
    rows = {(name, m) if name is not None else m: peak_and_cutoff(part, m) for name, part in groups for m in metrics}
    return pd.DataFrame.from_dict(rows, orient="index").astype({"peak_k": int, "cutoff_k": "Int64"})


def describe_peak(row) -> str:
    """Fig. 6 in words, from one row of :func:`peak_table` (or a :func:`peak_and_cutoff` dict)."""
    cut = "no cut-off on the grid" if pd.isna(row["cutoff_k"]) else f"below random from k = {int(row['cutoff_k'])}"
    return f"peak at k = {int(row['peak_k'])} ({row['peak_gain']:+.3f} vs random), {cut}"


def planted_counts(curve: pd.DataFrame) -> pd.DataFrame:
    """Fig. 6's planted panel as a table: planted mis-captions among the first k removed (rows: k ≥ 0,
    columns: strategy)."""
    return curve.pivot_table(index="k", columns="strategy", values="planted_removed").astype(int)


def utility_gap(clean: dict, planted: dict, metrics=("r_at_1", "lp_acc"), level: float = 0.95) -> pd.DataFrame:
    """The design check of the removal experiment (the paper's Fig. 8 logic): how much the planted
    mis-captions cost f's utility.  ``clean`` and ``planted``: training seed -> :func:`~clipmem_lib.measure.utility`
    dict of f.  Per metric: the gap clean − planted (mean over paired seeds, t-interval), the seed spread
    (the mean of the two settings' std over seeds) and ``ratio`` = gap / spread.  Removal can only show a
    utility gain where the gap is several times the seed spread."""
    seeds = sorted(set(clean) & set(planted))
    rows = {}
    for m in metrics:
        a = np.array([clean[s][m] for s in seeds], dtype=float)
        b = np.array([planted[s][m] for s in seeds], dtype=float)
        mean, low, high, n = paired_interval(a - b, level)
        spread = float((a.std(ddof=1) + b.std(ddof=1)) / 2) if n > 1 else float("nan")
        rows[m] = dict(clean=a.mean(), planted=b.mean(), gap=mean, low=low, high=high, seed_spread=spread,
                       ratio=mean / spread if spread > 0 else float("nan"), n_seeds=n)
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("metric")


def oracle_check(curve: pd.DataFrame, k: int, half_widths: dict[str, float]) -> pd.DataFrame:
    """Claim 7's design check, fixed by the oracle and not by the verdict: at ``k`` (k_peak), the oracle's
    gain over random removal (planted data, the seeds that retrained the oracle), against twice the
    half-width of the CLIPMem-minus-random row of each metric (``half_widths``: metric -> half-width).
    Where the oracle's gain is below twice the half-width, no detector's gain could show there."""
    at = curve[curve.k == k].pivot_table(index="seed", columns="strategy", values=list(half_widths))
    rows = {}
    for m, hw in half_widths.items():
        gain = (at[(m, "oracle")] - at[(m, "random")]).dropna() if (m, "oracle") in at else pd.Series(dtype=float)
        mean = float(gain.mean()) if len(gain) else np.nan
        rows[m] = dict(oracle_gain=mean, half_width=hw, ratio=mean / hw if hw > 0 else np.nan,
                       enough=bool(mean >= 2 * hw), n_seeds=len(gain))
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("metric")
