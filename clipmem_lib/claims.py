"""The book's verdicts on the paper's claims, and the paper's own numbers.

Over paired seeds (settings A and B trained with the same seed share the data order and the
initialisation), a claim's effect is the per-seed difference in the paper's direction; its 95%
interval is Student's t over those differences.  :func:`decide` says "holds" when the interval
excludes zero in the paper's direction, "fails" when it excludes zero the other way and
"inconclusive" otherwise, always with one seed.

The single-run rules below it (one function per rule, each taking numbers or frames a chapter has
already measured and returning a bool) are the book's qualitative checks of one training seed.

Claims 1–8 are those of the summary page.  The margins (0.02, 0.05, …) are the book's, not the paper's;
the paper's numbers live in the chapters' tables.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import pathlib
from typing import Sequence

import numpy as np
import pandas as pd
import yaml
from scipy import stats

from .removal import claim7_holds

__all__ = ["paper", "Verdict", "paired_interval", "decide", "verdict", "shared_near_zero", "alignment_alone_fails", "unit_range", "claim1_subset_order",
           "claim2_miscaptioned_highest", "claim2_clean_unchanged", "rare_concepts_memorised",
           "claim3_clipmem_separates_best", "claim4_text_memorises_more", "claim5_text_side_lowers_memorisation",
           "claim5_text_side_raises_utility", "claim5_captions_lower_memorisation", "claim5_captions_raise_utility",
           "balanced_sampling_best", "moderate_noise_std", "claim6_moderate_noise_helps", "claim6_large_noise_hurts",
           "claim7_holds", "planted_found_first", "dino_memorises_more", "claim8_clip_between", "fig11_moves_later"]


HOLDS, FAILS, INCONCLUSIVE = "holds", "fails", "inconclusive"


@functools.lru_cache(maxsize=None)
def _paper() -> dict:
    return yaml.safe_load((pathlib.Path(__file__).with_name("paper.yaml")).read_text())


def paper(*path):
    """A number or text the paper reports (``clipmem_lib/paper.yaml``), e.g. ``paper("table8", 0.15)``."""
    node = _paper()
    for key in path:
        if key not in node:
            raise KeyError(f"paper.yaml has no {'/'.join(map(str, path))} (have {', '.join(map(str, node))})")
        node = node[key]
    return node


@dataclasses.dataclass(frozen=True)
class Verdict:
    """One claim row: the paper's figure, this run's effect with its 95% interval over paired seeds,
    and the verdict.  ``effect`` is signed so that positive is the paper's direction."""

    claim: str
    what: str
    paper: str
    effect: float
    low: float
    high: float
    n_seeds: int
    verdict: str
    reason: str = ""

    def measured(self, fmt: str = "+.3f") -> str:
        """``+0.123 [+0.050, +0.196], 3 seeds`` (or ``…, 1 seed: no interval``)."""
        if self.n_seeds < 2:
            return f"{self.effect:{fmt}}, 1 seed: no interval"
        return f"{self.effect:{fmt}} [{self.low:{fmt}}, {self.high:{fmt}}], {self.n_seeds} seeds"


def paired_interval(differences, level: float = 0.95) -> tuple[float, float, float, int]:
    """(mean, low, high, n) of per-seed paired differences: Student's t interval (NaN bounds with one seed)."""
    d = np.asarray(differences, dtype=float)
    d = d[~np.isnan(d)]
    n = len(d)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    mean = float(d.mean())
    if n < 2:
        return mean, math.nan, math.nan, n
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * d.std(ddof=1) / math.sqrt(n))
    return mean, mean - half, mean + half, n


def decide(low: float, high: float, n: int) -> tuple[str, str]:
    """(verdict, reason) from an interval of an effect signed in the paper's direction."""
    if n < 2:
        return INCONCLUSIVE, "one seed gives no interval, so no verdict"
    if low > 0:
        return HOLDS, ""
    if high < 0:
        return FAILS, "the interval excludes zero against the paper's direction"
    return INCONCLUSIVE, f"the interval [{low:+.3g}, {high:+.3g}] contains zero: seed noise is as large as the effect"


def verdict(claim: str, what: str, paper_figure: str, differences, direction: int = 1, level: float = 0.95) -> Verdict:
    """The verdict on per-seed paired ``differences`` (A − B for each seed); ``direction`` is +1 when the
    paper says A > B and −1 when it says A < B."""
    if direction not in (1, -1):
        raise ValueError(f"direction must be +1 or -1, got {direction!r}")
    mean, low, high, n = paired_interval(direction * np.asarray(differences, dtype=float), level)
    v, why = decide(low, high, n)
    return Verdict(claim, what, paper_figure, mean, low, high, n, v, why)


# --------------------------------------------------------------------- Sec. 3, App. A.2 (01_metric)

def shared_near_zero(means: pd.DataFrame, tol: float = 0.05) -> bool:
    """Sec. 3: f and g both trained on S_S, so its mean CLIPMem (``means``: :func:`~clipmem_lib.clipmem.subset_means`)
    is within ``tol`` of 0."""
    return bool(abs(means.loc["S_S", "clipmem"]) < tol)


def alignment_alone_fails(means: pd.DataFrame, margin: float = 0.05) -> bool:
    """Sec. 3 (why Eq. 4 subtracts g): f's mean alignment (Eq. 3) on S_S is at least that on S_C minus
    ``margin``, so A_align under f alone does not single out S_C (``means`` has ``align_f``)."""
    return bool(means.loc["S_S", "align_f"] >= means.loc["S_C", "align_f"] - margin)


def unit_range(scores: pd.DataFrame, column: str = "clipmem") -> bool:
    """App. A.2: range-normalised scores span exactly 1 (hence lie in [−1, 1])."""
    return bool(np.isclose(scores[column].max() - scores[column].min(), 1.0))


# ----------------------------------------------------------------------- Fig. 1, 2 (02_memorisation)

def claim1_subset_order(means: pd.DataFrame, margin: float = 0.02, tol: float = 0.05) -> bool:
    """Claim 1 (Fig. 2a): mean CLIPMem of S_C exceeds S_S by ``margin``, S_I is negative and S_S and S_E
    agree within ``tol``."""
    m = means["clipmem"]
    return bool(m["S_C"] > m["S_S"] + margin and m["S_I"] < 0 and abs(m["S_S"] - m["S_E"]) < tol)


def claim2_miscaptioned_highest(fig2b: pd.DataFrame, auc: float, min_auc: float = 0.6) -> bool:
    """Claim 2 (Fig. 2b): under the poisoned model the mis-captioned pairs score higher on average than
    the clean S_C pairs, and CLIPMem tells them apart with ROC AUC above ``min_auc`` (``fig2b``, ``auc``:
    :func:`~clipmem_lib.clipmem.clean_vs_miscaptioned`)."""
    return bool(fig2b.clipmem.iloc[2] > fig2b.clipmem.iloc[1] and auc > min_auc)


def claim2_clean_unchanged(fig2b: pd.DataFrame, rel: float = 0.25) -> bool:
    """Claim 2 (Fig. 2b): adding mis-captions moves the clean S_C pairs' mean raw CLIPMem by less than
    ``rel`` of its clean-model value."""
    raw = fig2b.clipmem_raw
    return bool(abs(raw.iloc[1] - raw.iloc[0]) < rel * abs(raw.iloc[0]))


def rare_concepts_memorised(enrich: pd.DataFrame) -> bool:
    """Fig. 1 (built-in data): the most memorised S_C pairs show rarer concepts than S_C on average
    (``enrich``: :func:`~clipmem_lib.clipmem.top_enrichment` with ``concept_count``)."""
    top, everyone = enrich.loc["concept_count"]
    return bool(top < everyone)


# ------------------------------------------------------------------------- Fig. 3 (03_modalities)

def claim3_clipmem_separates_best(summary: pd.DataFrame, best: str = "clipmem") -> bool:
    """Claim 3 (Fig. 3): ``best`` separates S_C from S_S with a higher ROC AUC than every other score
    of ``summary`` (:func:`~clipmem_lib.clipmem.metric_summary`)."""
    auc = summary["ROC AUC S_C vs S_S"]
    return bool(auc[best] > auc.drop(best).max())


def claim4_text_memorises_more(summary: pd.DataFrame) -> bool:
    """Claim 4 (Sec. 4.3): mean SSLMem on S_C is higher for the text encoder than for the image encoder."""
    mean = summary["mean on S_C"]
    return bool(mean["sslmem_text"] > mean["sslmem_image"])


# ------------------------------------------------------------------------- Table 1 (04_modality)

def claim5_text_side_lowers_memorisation(effects: pd.DataFrame) -> bool:
    """Claim 5 (Table 1): 5 captions (row ``text``) lower mean CLIPMem on S_C more than 5 generated
    images (row ``image``); ``effects``: :func:`~clipmem_lib.clipmem.setting_effects` against 1 image, 1 caption."""
    return bool(effects.loc["text", "clipmem"] < effects.loc["image", "clipmem"])


def claim5_text_side_raises_utility(effects: pd.DataFrame) -> bool:
    """Claim 5 (Table 1): 5 captions raise linear-probe accuracy more than 5 generated images."""
    return bool(effects.loc["text", "lp_acc"] > effects.loc["image", "lp_acc"])


# ------------------------------------------------------------------------ Fig. 4, 11 (05_between)

def dino_memorises_more(ssl_means: pd.DataFrame) -> bool:
    """Sec. 4.5: mean SSLMem on S_C of the DINO encoder (``sslmem_dino``) exceeds that of CLIP's image
    encoder (``sslmem_image``)."""
    return bool(ssl_means.loc["S_C", "sslmem_dino"] > ssl_means.loc["S_C", "sslmem_image"])


def claim8_clip_between(values: pd.Series, order: Sequence[str] = ("supervised", "CLIP image", "DINO")) -> bool:
    """Claim 8 (Fig. 4): a UnitMem figure per model (last-block mean or rise, from
    :func:`~clipmem_lib.unitmem.layer_summary`) falls strictly along ``order``: CLIP between supervised and SSL."""
    v = [values[m] for m in order]
    return bool(all(a > b for a, b in zip(v, v[1:])))


def fig11_moves_later(first: float, last: float) -> bool:
    """Fig. 11: the last layer's share of the top units grows from the first to the last snapshot
    (:func:`~clipmem_lib.unitmem.last_layer_share`)."""
    return bool(last > first)


# ------------------------------------------------------------- Fig. 5, Tables 3 and 8 (06_mitigation)

def _ends(table: pd.DataFrame, x: str) -> tuple[pd.Series, pd.Series]:
    t = table.sort_values(x)
    return t.iloc[0], t.iloc[-1]


def claim5_captions_lower_memorisation(table: pd.DataFrame, x: str = "captions") -> bool:
    """Claim 5 (Fig. 5a): mean CLIPMem on S_C is lower with the most captions per image than with the fewest."""
    lo, hi = _ends(table, x)
    return bool(hi.clipmem < lo.clipmem)


def claim5_captions_raise_utility(table: pd.DataFrame, x: str = "captions") -> bool:
    """Claim 5 (Fig. 5a): linear-probe accuracy is higher with the most captions than with the fewest."""
    lo, hi = _ends(table, x)
    return bool(hi.lp_acc > lo.lp_acc)


def balanced_sampling_best(table: pd.DataFrame, best: str = "balanced over 5", label: str = "setting") -> bool:
    """Table 3: sampling the captions ``best`` gives a higher linear-probe accuracy than every other sampling."""
    acc = table.set_index(label).lp_acc
    return bool(acc[best] > acc.drop(best).max())


def moderate_noise_std(stds: Sequence[float]) -> float:
    """Table 8's "moderate" noise: std 0.15 (the paper's best) if swept, else the middle of the sorted grid."""
    return 0.15 if 0.15 in stds else sorted(stds)[len(stds) // 2]


def claim6_moderate_noise_helps(table: pd.DataFrame, moderate: float, x: str = "std") -> bool:
    """Claim 6 (Fig. 5b, Table 8): noise of std ``moderate`` on the text embeddings lowers mean CLIPMem
    on S_C and raises linear-probe accuracy, against no noise (std 0)."""
    t = table.set_index(x)
    return bool(t.loc[moderate, "clipmem"] < t.loc[0.0, "clipmem"] and t.loc[moderate, "lp_acc"] > t.loc[0.0, "lp_acc"])


def claim6_large_noise_hurts(table: pd.DataFrame, moderate: float, x: str = "std") -> bool:
    """Claim 6 (Fig. 5b, Table 8): the largest noise raises CLIPMem above the ``moderate`` level and
    lowers linear-probe accuracy below no noise."""
    t = table.set_index(x)
    large = t.index.max()
    return bool(t.loc[large, "clipmem"] > t.loc[moderate, "clipmem"] and t.loc[large, "lp_acc"] < t.loc[0.0, "lp_acc"])


# ------------------------------------------------------------------------------ Fig. 6 (07_removal)

def planted_found_first(counts: pd.DataFrame) -> bool:
    """Fig. 6: at the largest k, removal by CLIPMem has taken out more planted mis-captions than random
    removal (``counts``: :func:`~clipmem_lib.removal.planted_counts`)."""
    last = counts.loc[counts.index.max()]
    return bool(last["clipmem"] > last["random"])
