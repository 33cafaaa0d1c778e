"""Pooled seed noise within a design: several settings trained on the same paired seeds.

A chapter often compares S settings on the same n seeds (06's noise grid, 07's removal strategies at one
k, the appendix's caption styles).  The additive model *setting + seed*, a randomised complete block
design with the seeds as blocks, estimates one residual variance σ² from all S settings, with
(S − 1)(n − 1) degrees of freedom; every contrast of two settings then has standard error σ·√(2/n)
(CPU_SCALE.md, "Pooling the seed noise of a design").  At 5 settings × 3 seeds, t = 2.31 instead of the
paired row's 4.30.

Pooling assumes the settings share one spread.  The homogeneity rule, fixed before any run it judges and
blind to the effects: Cochran's C, the largest variance of the settings' per-seed differences from the
control over their sum, against its null distribution under the additive model (simulated once, so the
correlation through the shared control is exact), at α = 0.25, Bancroft's level for a preliminary test
that decides whether to pool (a wrongly refused pool only costs width).  A setting whose C exceeds the
critical value is flagged and its contrasts fall back to their own paired interval; the test is
repeated on the rest while at least two contrasts remain.  σ² is always estimated from every setting of
the design, flagged ones included.  A design of two settings is its own pair: the interval is the paired one.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["HOMOGENEITY_ALPHA", "BlockDesign", "cochran_critical", "pool_seeds", "block_design", "Contrast", "contrast", "t_half_width",
           "family_false_hold_bound"]

HOMOGENEITY_ALPHA = 0.25  # Bancroft (1944): a preliminary test that decides pooling runs at about 0.25
NULL_DRAWS = 20_000       # draws of the homogeneity statistic's null distribution (seeded: the same critical everywhere)


@dataclasses.dataclass(frozen=True)
class BlockDesign:
    """One design's pooled error for one metric: σ² (``sigma2``, ``df`` degrees of freedom over ``n``
    complete seeds) of the additive model over the ``control``, the ``pooled`` and the ``excluded``
    settings; the ``excluded`` ones failed the homogeneity rule, so their contrasts use their own paired
    interval, while their spread stays in σ² (dropping it would bias σ² low: the pre-test would
    then under-cover, 92.9% at 5 × 3 against 95.5% when kept, measured in 4,000 simulated designs)."""

    control: str
    pooled: tuple
    excluded: tuple
    n: int
    sigma2: float
    df: int
    cochran: float = math.nan   # the last C tested
    critical: float = math.nan  # its critical value

    def pools(self, a: str, b: str) -> bool:
        """Whether the contrast a − b gains from the pool: both settings in it and more than one contrast."""
        members = {self.control, *self.pooled}
        return a in members and b in members and 1 + len(self.pooled) + len(self.excluded) > 2 and self.df > 0


@functools.lru_cache(maxsize=None)
def cochran_critical(k: int, n: int, alpha: float = HOMOGENEITY_ALPHA) -> float:
    """The 1 − ``alpha`` quantile of Cochran's C over ``k`` contrasts with a shared control at ``n`` seeds,
    under the additive model with equal variances (simulated, seed 0)."""
    if k < 2 or n < 2:
        return math.nan
    y = np.random.default_rng(0).standard_normal((NULL_DRAWS, k + 1, n))
    v = (y[:, 1:] - y[:, :1]).var(axis=2, ddof=1)
    return float(np.quantile(v.max(axis=1) / v.sum(axis=1), 1 - alpha))


def _residual_variance(wide: np.ndarray) -> tuple[float, int]:
    """σ² and its degrees of freedom of the additive model setting + seed on a seeds × settings array."""
    n, s = wide.shape
    resid = wide - wide.mean(axis=0, keepdims=True) - wide.mean(axis=1, keepdims=True) + wide.mean()
    df = (s - 1) * (n - 1)
    return (float((resid ** 2).sum() / df) if df > 0 else math.nan), df


def pool_seeds(y: np.ndarray, alpha: float = HOMOGENEITY_ALPHA) -> tuple[float, int, list[int], float, float]:
    """(σ², df, flagged columns, last C, its critical value) of a seeds × settings array whose column 0
    is the control: σ² of the additive model over every column; flagged, the columns the homogeneity
    rule removes one at a time (largest variance of the difference from the control first)."""
    n, s = y.shape
    sigma2, df = _residual_variance(y)
    members, flagged = list(range(1, s)), []
    C = crit = math.nan
    while len(members) >= 2 and n >= 2:
        v = (y[:, members] - y[:, :1]).var(axis=0, ddof=1)
        C, crit = (float(v.max() / v.sum()) if v.sum() > 0 else 0.0), cochran_critical(len(members), n, alpha)
        if C <= crit:
            break
        flagged.append(members.pop(int(v.argmax())))
    return sigma2, df, flagged, C, crit


def block_design(table: pd.DataFrame, column: str, control: str, label: str = "setting") -> BlockDesign:
    """The pooled error of ``column`` over every setting of ``table`` run at all of the control's seeds
    (``seed`` column), with the homogeneity rule of this module (:func:`pool_seeds`)."""
    wide = table.pivot_table(index="seed", columns=label, values=column)
    if control not in wide:
        raise ValueError(f"the design has no control setting {control!r} (settings: {', '.join(map(str, wide.columns))})")
    wide = wide[wide[control].notna()]
    wide = wide[[control] + [c for c in wide.columns if c != control and wide[c].notna().all()]]
    if len(wide) < 2:
        return BlockDesign(control, tuple(wide.columns[1:]), (), len(wide), math.nan, 0)
    sigma2, df, flagged, C, crit = pool_seeds(wide.to_numpy(dtype=float))
    names = list(wide.columns)
    excluded = tuple(names[i] for i in flagged)
    return BlockDesign(control, tuple(c for c in names[1:] if c not in excluded), excluded, len(wide), sigma2, df, C,
                       crit)


def t_half_width(sd: float, n: int, df: int, level: float = 0.95) -> float:
    """Student's t half-width of a mean difference whose per-seed sd is ``sd`` over ``n`` seeds at ``df``."""
    if n < 1 or df < 1 or not np.isfinite(sd):
        return math.nan
    return float(stats.t.ppf(0.5 + level / 2, df) * sd / math.sqrt(n))


class Contrast(NamedTuple):
    """Per-seed differences a − b with the per-seed sd and the degrees of freedom their interval uses."""

    differences: np.ndarray
    sd: float
    df: int
    kind: str


def contrast(table: pd.DataFrame, column: str, a: str, b: str, design: BlockDesign | None,
             label: str = "setting") -> Contrast:
    """The :class:`Contrast` a − b of ``column``: with the design's pooled σ² when
    :meth:`BlockDesign.pools` them (sd = σ·√2, df (S − 1)(n − 1), complete seeds only), else paired
    (their own sd, n − 1)."""
    wide = table.pivot_table(index="seed", columns=label, values=column)
    if not {a, b} <= set(wide.columns):
        return Contrast(np.array([]), math.nan, 0, "paired")
    d = (wide[a] - wide[b]).dropna().to_numpy()
    if design is not None and design.pools(a, b) and len(d) == design.n:
        members = 1 + len(design.pooled) + len(design.excluded)
        return Contrast(d, math.sqrt(2 * design.sigma2), design.df,
                        f"pooled: {members} settings × {design.n} seeds, {design.df} df")
    flagged = design is not None and bool({a, b} & set(design.excluded))
    sd = float(d.std(ddof=1)) if len(d) >= 2 else math.nan
    return Contrast(d, sd, max(len(d) - 1, 0), f"paired, {max(len(d) - 1, 0)} df"
                    + (" (flagged by the homogeneity rule: its spread is unlike its design's)" if flagged else ""))


def family_false_hold_bound(m: int, per_row: float = 0.025) -> float:
    """Bonferroni's bound on the chance of at least one false "holds" among ``m`` contrasts of a design,
    each tested at a one-sided ``per_row`` (no correction is applied to the rows themselves)."""
    return min(1.0, m * per_row)
