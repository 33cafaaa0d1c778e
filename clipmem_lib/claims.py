"""The book's verdicts on the paper's claims, and the paper's own numbers.

Over paired seeds (settings A and B trained with the same seed share the data order and the
initialisation), a claim's effect is the per-seed difference in the paper's direction; its 95%
interval is Student's t over those differences.  :func:`decide` says "holds" when the interval
excludes zero in the paper's direction, "fails" when it excludes zero the other way, "too small" when
the whole interval lies below the row's smallest effect of interest δ, and "inconclusive" otherwise,
always with one seed.

δ (:func:`smallest_effect`) is the paper's own effect carried to this run's baseline by one rule fixed
before any run: a proportion (probe accuracy, R@1) moves by the paper's change in log-odds, any other
score by the paper's relative change.  A row whose paper gives no number has no δ and stays two-way.

Below it, one function per claim (and per sub-row the chapters show) takes the chapter's per-seed
results (a dict seed -> score table, or a table with a ``seed`` column) and returns its verdicts.
Rows that describe rather than test (an "≈", a property true by construction) are observations:
shown with their interval, verdict "n/a", never counted.

Claims 1–8 are those of the summary page, then the appendix's A1–A5 (chapter 08).  The margins (0.02, 0.05, …) are the book's, not the paper's;
the paper's numbers live in the chapters' tables.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import pathlib

import numpy as np
import pandas as pd
import yaml
from scipy import stats

from .clipmem import clean_vs_miscaptioned, separation_auc, subset_means, top_enrichment
from .designs import Contrast, block_design, contrast, t_half_width

__all__ = ["paper", "Verdict", "paired_interval", "seeds_needed", "smallest_effect", "decide", "verdict", "observation", "sec3_checks", "claim1",
           "claim2", "rare_concepts", "claim3", "claim4", "claim5_modality", "claim5_captions", "balanced_sampling",
           "noise_grid", "claim6", "claim7", "claim8", "dino_memorises_more", "fig11_moves_later", "table5", "table6", "fig8",
           "table4_7"]


HOLDS, FAILS, TOO_SMALL, INCONCLUSIVE = "holds", "fails", "too small", "inconclusive"
TESTED = (HOLDS, FAILS, TOO_SMALL, INCONCLUSIVE)


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
    and the verdict.  ``effect``, ``low`` and ``high`` are signed so that positive is the paper's
    direction; ``direction`` (+1 or −1) turns them back into the measured difference A − B."""

    claim: str
    what: str
    paper: str
    effect: float
    low: float
    high: float
    n_seeds: int
    verdict: str
    reason: str = ""
    unit: str = ""
    direction: int = 1
    delta: float = math.nan  # the smallest effect of interest (NaN: the paper gives no number)
    interval: str = ""       # "paired, 2 df" or "pooled: 5 settings × 3 seeds, 8 df" (:mod:`clipmem_lib.designs`)
    sd: float = math.nan     # the per-seed sd of the differences the interval uses (pooled: σ·√2)
    df: int = 0              # its degrees of freedom

    @property
    def half_width(self) -> float:
        """Half the interval's width: the smallest effect this row could tell from zero."""
        return (self.high - self.low) / 2

    def measured(self, fmt: str = "+.3f") -> str:
        """The measured difference A − B: ``+0.123 [+0.050, +0.196], 3 seeds`` (or ``…, 1 seed: no interval``)."""
        mean, ends = self.direction * self.effect, sorted([self.direction * self.low, self.direction * self.high])
        if self.n_seeds < 2:
            return f"{mean:{fmt}}, 1 seed: no interval"
        return f"{mean:{fmt}} [{ends[0]:{fmt}}, {ends[1]:{fmt}}], {self.n_seeds} seeds"


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


def seeds_needed(half_width: float, n_seeds: int, delta: float, level: float = 0.95, most: int = 1000) -> float:
    """The fewest paired seeds whose interval would be no wider than ±δ, at the spread of the per-seed
    differences that this row's ``half_width`` over ``n_seeds`` seeds implies (:func:`paired_interval`:
    t_{m−1} · sd / √m ≤ δ).  NaN without a spread or a δ; inf beyond ``most``."""
    if not (n_seeds >= 2 and np.isfinite(half_width) and np.isfinite(delta) and delta > 0):
        return math.nan
    sd = half_width * math.sqrt(n_seeds) / stats.t.ppf(0.5 + level / 2, n_seeds - 1)
    m = np.arange(2, most + 1)
    ok = np.flatnonzero(stats.t.ppf(0.5 + level / 2, m - 1) * sd / np.sqrt(m) <= delta)
    return float(m[ok[0]]) if len(ok) else math.inf


def smallest_effect(paper_base: float, paper_other: float, baseline: float, proportion: bool) -> float:
    """δ: the paper's effect, ``paper_base`` → ``paper_other``, carried to this run's ``baseline``.

    A ``proportion`` (accuracy, R@1; the paper's percentages are divided by 100) moves by the paper's
    change in log-odds, so a probe near 0.9 and an R@1 near 0.15 get comparable δs; a relative rule gives
    R@1 about 0.005, below what any instrument here resolves.  Any other score moves by the paper's
    relative change.  Always ≥ 0: the direction is the row's."""
    if proportion:
        a, b = (x / 100 if x > 1 else x for x in (paper_base, paper_other))
        logit = lambda p: math.log(p / (1 - p))  # noqa: E731
        if not 0 < baseline < 1:
            return math.nan
        moved = 1 / (1 + math.exp(-(logit(baseline) + abs(logit(b) - logit(a)))))
        return float(moved - baseline)
    return float(abs((paper_other - paper_base) / paper_base) * abs(baseline))


def decide(low: float, high: float, n: int, delta: float = math.nan) -> tuple[str, str]:
    """(verdict, reason) from an interval of an effect signed in the paper's direction, and the row's
    smallest effect of interest ``delta`` (NaN: none, the row is two-way)."""
    small = f"the whole interval lies below δ = {delta:.3g}: smaller than the paper's effect, if there is one"
    if n < 2:
        return INCONCLUSIVE, "one seed gives no interval, so no verdict"
    if low > 0:
        return HOLDS, ("holds, but " + small) if high < delta else ""
    if high < 0:
        return FAILS, "the interval excludes zero against the paper's direction"
    if high < delta:
        return TOO_SMALL, small
    return INCONCLUSIVE, (f"the interval [{low:+.3g}, {high:+.3g}] contains zero"
                          + ("" if math.isnan(delta) else f" and reaches δ = {delta:.3g}")
                          + ": seed noise is as large as the effect")


def verdict(claim: str, what: str, paper_figure: str, differences, direction: int = 1, level: float = 0.95,
            unit: str = "", delta: float = math.nan) -> Verdict:
    """The verdict on per-seed paired ``differences`` (A − B for each seed), or on a
    :class:`~clipmem_lib.designs.Contrast` whose interval uses its design's pooled error; ``direction``
    is +1 when the paper says A > B and −1 when it says A < B; ``delta`` is the row's smallest effect of
    interest."""
    if direction not in (1, -1):
        raise ValueError(f"direction must be +1 or -1, got {direction!r}")
    c = differences if isinstance(differences, Contrast) else None
    d = np.asarray(c.differences if c else differences, dtype=float)
    mean, low, high, n = paired_interval(direction * d, level)
    sd, df, kind = (c.sd, c.df, c.kind) if c else (float(d[~np.isnan(d)].std(ddof=1)) if n >= 2 else math.nan,
                                                      max(n - 1, 0), f"paired, {max(n - 1, 0)} df")
    if c is not None and n >= 2:
        half = t_half_width(c.sd, n, c.df, level)
        low, high = mean - half, mean + half
    v, why = decide(low, high, n, delta)
    return Verdict(claim, what, paper_figure, mean, low, high, n, v, why, unit, direction, delta, kind, sd, df)


def observation(claim: str, what: str, paper_figure: str, values, unit: str = "", why: str = "") -> Verdict:
    """A row shown with its interval but not tested (verdict "n/a"): an "≈", or a property by construction."""
    mean, low, high, n = paired_interval(values)
    return Verdict(claim, what, paper_figure, mean, low, high, n, "n/a", why, unit)


def _per_seed(frames: dict, fn) -> np.ndarray:
    return np.array([fn(frames[s]) for s in sorted(frames)], dtype=float)


def _paired(table: pd.DataFrame, column: str, a: str, b: str, label: str = "setting") -> np.ndarray:
    """Per seed, ``column`` of setting ``a`` minus setting ``b`` (seeds where both ran)."""
    wide = table.pivot_table(index="seed", columns=label, values=column)
    return (wide[a] - wide[b]).dropna().to_numpy() if {a, b} <= set(wide.columns) else np.array([])


def _pooled(table: pd.DataFrame, column: str, a: str, b: str, label: str = "setting") -> Contrast:
    """``column`` of ``a`` minus ``b`` per seed, with the pooled error of the design that every setting of
    ``table`` run at all of ``b``'s seeds forms, ``b`` its control (:func:`~clipmem_lib.designs.block_design`)."""
    if b not in set(table[label]) or column not in table:
        return Contrast(np.array([]), math.nan, 0, "paired")
    return contrast(table, column, a, b, block_design(table, column, b, label), label)


def _mean_of(table: pd.DataFrame, column: str, setting: str, label: str = "setting") -> float:
    """This run's baseline for δ: the mean over seeds of ``column`` in ``setting``."""
    part = table.loc[table[label] == setting, column]
    return float(part.mean()) if len(part) else math.nan


def _delta(paper_ab, table, column, base, label="setting", proportion=False) -> float:
    """δ of a row comparing against setting ``base`` (:func:`smallest_effect`); NaN without the paper's pair."""
    if paper_ab is None:
        return math.nan
    return smallest_effect(paper_ab[0], paper_ab[1], _mean_of(table, column, base, label), proportion)


# ----------------------------------------------------------------- Sec. 3, App. A.2 (01_metric)

def sec3_checks(scores: dict) -> list[Verdict]:
    """Sec. 3 and App. A.2, shown not counted: mean raw CLIPMem of S_S ≈ 0 (f and g both trained on it),
    f's own alignment of S_S minus S_C (why Eq. 4 subtracts g), and the range of the normalised scores
    (1 by construction)."""
    return [observation("", "mean raw CLIPMem of S_S (≈ 0: f and g both trained on it)", "≈ 0",
                        _per_seed(scores, lambda t: subset_means(t, columns=("clipmem_raw",)).loc["S_S", "clipmem_raw"]),
                        "raw CLIPMem"),
            observation("", "f's alignment (Eq. 3): S_S minus S_C (f alone does not single out S_C)", "motivates g",
                        _per_seed(scores, lambda t: subset_means(t, columns=("align_f",)).align_f.pipe(
                            lambda a: a["S_S"] - a["S_C"])), "alignment"),
            observation("", "range of the normalised scores (App. A.2)", "1", _per_seed(
                scores, lambda t: t.clipmem.max() - t.clipmem.min()), "", "1 by construction: shown, not counted")]


# ----------------------------------------------------------------------- Fig. 1, 2 (02_memorisation)

def claim1(scores: dict, claim: str = "1", model: str = "") -> list[Verdict]:
    """Claim 1 (Fig. 2a) on raw CLIPMem per seed: S_C above S_S, S_I below 0; S_S ≈ S_E is shown.  With
    ``claim`` "A5" and ``model`` named, the same pattern for a second multimodal model (App. A.6)."""
    m = {s: subset_means(t, columns=("clipmem_raw",)).clipmem_raw for s, t in scores.items()}
    fig, on = paper("fig2a"), f"{model}: " if model else ""
    return [verdict(claim, f"{on}mean raw CLIPMem: S_C minus S_S", fig, _per_seed(m, lambda x: x["S_C"] - x["S_S"]),
                    unit="raw CLIPMem"),
            verdict(claim, f"{on}mean raw CLIPMem of S_I (negative: only g saw it)", fig, _per_seed(m, lambda x: x["S_I"]),
                    -1, unit="raw CLIPMem"),
            observation(claim, f"{on}mean raw CLIPMem: S_S minus S_E (≈ 0)", fig,
                        _per_seed(m, lambda x: x["S_S"] - x["S_E"]), "raw CLIPMem")]


def claim2(clean: dict, poisoned: dict) -> list[Verdict]:
    """Claim 2 (Fig. 2b) per seed: under the model trained with planted mis-captions, their mean raw
    CLIPMem minus the clean S_C pairs'; the clean pairs' change between the clean and the poisoned model
    is shown (≈ 0)."""
    bars = {s: clean_vs_miscaptioned(clean[s], poisoned[s])[0].clipmem_raw.to_numpy() for s in clean}
    p = paper("fig2b")
    delta = smallest_effect(p["poisoned_clean"], p["poisoned_miscaptioned"], _per_seed(bars, lambda b: b[1]).mean(), False)
    return [verdict("2", "poisoned model: mis-captioned minus clean S_C (raw CLIPMem)",
                    f"{p['poisoned_miscaptioned']:.3f} vs {p['poisoned_clean']:.3f}", _per_seed(bars, lambda b: b[2] - b[1]),
                    unit="raw CLIPMem", delta=delta),
            observation("2", "clean S_C: poisoned minus clean model (≈ 0, raw CLIPMem)",
                        f"{p['clean_model_clean']:.3f} → {p['poisoned_clean']:.3f}", _per_seed(bars, lambda b: b[1] - b[0]),
                        "raw CLIPMem")]


def rare_concepts(scores: dict) -> list[Verdict]:
    """Fig. 1 with the built-in ground truth: the top 10% of S_C by CLIPMem show rarer concepts (mean
    occurrences in the data) than S_C as a whole.  No verdict on data without concept counts."""
    if not all("concept_count" in t for t in scores.values()):
        return []
    diff = _per_seed(scores, lambda t: top_enrichment(t, ["concept_count"]).loc["concept_count"].pipe(
        lambda r: r.iloc[0] - r.iloc[1]))
    return [verdict("", "concept occurrences: top 10% of S_C minus all of S_C", paper("fig1"), diff, -1,
                    unit="occurrences")]


# ------------------------------------------------------------------- Fig. 3, Sec. 4.3 (03_modalities)

def claim3(both: dict) -> list[Verdict]:
    """Claim 3 (Fig. 3) per seed: ROC AUC (S_C vs S_S) of CLIPMem minus the better SSLMem (either encoder)."""
    better = lambda t: max(separation_auc(t, "sslmem_image"), separation_auc(t, "sslmem_text"))  # noqa: E731
    diff = _per_seed(both, lambda t: separation_auc(t, "clipmem") - better(t))
    f3 = paper("fig3")
    delta = smallest_effect(max(f3["max_sslmem_image"], f3["max_sslmem_text"]), f3["max_clipmem"],
                            _per_seed(both, better).mean(), True)
    return [verdict("3", "ROC AUC S_C vs S_S: CLIPMem minus the better SSLMem", "single modalities overlap S_S", diff,
                    unit="ROC AUC", delta=delta)]


def claim4(both: dict) -> list[Verdict]:
    """Claim 4 (Sec. 4.3) per seed: mean normalised SSLMem on S_C, text encoder minus image encoder."""
    p = paper("sslmem_text_vs_image")
    diff = _per_seed(both, lambda t: t[t.subset == "S_C"].sslmem_text.mean() - t[t.subset == "S_C"].sslmem_image.mean())
    base = _per_seed(both, lambda t: t[t.subset == "S_C"].sslmem_image.mean()).mean()
    return [verdict("4", "mean SSLMem on S_C: text minus image encoder", f"{p['text']} vs {p['image']}", diff,
                    unit="SSLMem", delta=smallest_effect(p["image"], p["text"], base, False))]


# ---------------------------------------------------------------------------- Table 1 (04_modality)

def _utility(claim, what, paper_figure, table, a, b, direction=1, paper_lp=None) -> list[Verdict]:
    """The probe and R@1 rows of ``a`` minus ``b``; ``paper_lp`` (the paper's LP %, ``b``'s then ``a``'s)
    sets both rows' δ: the paper reports utility by its probe only, so R@1 gets the same change in log-odds."""
    return [verdict(claim, f"{what}: linear probe", paper_figure, _pooled(table, "lp_acc", a, b), direction,
                    unit="LP accuracy", delta=_delta(paper_lp, table, "lp_acc", b, proportion=True)),
            verdict(claim, f"{what}: held-out R@1", "—", _pooled(table, "r_at_1", a, b), direction, unit="R@1",
                    delta=_delta(paper_lp, table, "r_at_1", b, proportion=True))]


def claim5_modality(table: pd.DataFrame, base: str = "1 image, 1 caption", text: str = "1 image, 5 captions",
                    image: str = "5 generated images, 1 caption") -> list[Verdict]:
    """Claim 5 (Table 1) per seed: augmenting the text side (5 captions) lowers raw CLIPMem on S_C more
    than augmenting the image side (5 generated images), and raises utility more.  Both are compared to
    the same baseline, so the differences reduce to text-side minus image-side."""
    if image not in set(table.setting):
        return []
    t1 = paper("table1")
    return [verdict("5", "raw CLIPMem on S_C: text side minus image side", f"{t1[text][0]} vs {t1[image][0]}",
                    _pooled(table, "clipmem_raw", text, image), -1, unit="raw CLIPMem",
                    delta=_delta((t1[image][0], t1[text][0]), table, "clipmem_raw", image)),
            *_utility("5", "text side minus image side", f"{t1[text][1]}% vs {t1[image][1]}%", table, text, image,
                      paper_lp=(t1[image][1], t1[text][1]))]


def claim5_captions(table: pd.DataFrame, few: str, many: str) -> list[Verdict]:
    """Claim 5 (Fig. 5a) per seed: more captions per image lower raw CLIPMem on S_C and raise utility.  δ
    from Table 1's 1 → 5 captions when ``few`` and ``many`` are 1 and 5 captions (Fig. 5a gives no numbers)."""
    t1 = paper("table1")
    one_five = (few.split()[0], many.split()[0]) == ("1", "5")
    pair = lambda col: (t1["1 image, 1 caption"][col], t1["1 image, 5 captions"][col]) if one_five else None  # noqa: E731
    return [verdict("5", f"raw CLIPMem on S_C: {many} minus {few}", paper("fig5a"),
                    _pooled(table, "clipmem_raw", many, few), -1, unit="raw CLIPMem",
                    delta=_delta(pair(0), table, "clipmem_raw", few)),
            *_utility("5", f"{many} minus {few}", paper("fig5a"), table, many, few, paper_lp=pair(1))]


def balanced_sampling(table: pd.DataFrame, balanced: str = "balanced over 5",
                      others=("first caption only (baseline)", "random caption of 5")) -> list[Verdict]:
    """Table 3 per seed: balanced caption sampling's probe accuracy minus the better of the others."""
    wide = table.pivot_table(index="seed", columns="setting", values="lp_acc")
    diff = (wide[balanced] - wide[list(others)].max(axis=1)).dropna()
    t3 = paper("table3")
    delta = smallest_effect(max(t3[k][2] for k in others), t3[balanced][2], float(wide[list(others)].max(axis=1).mean()),
                            True)
    return [verdict("", "LP accuracy: balanced minus the better of first / random", " / ".join(
        f"{t3[k][2]}%" for k in (balanced, *others)), diff, unit="LP accuracy", delta=delta)]


def noise_grid(tables: dict, none: str) -> pd.DataFrame:
    """Table 8's whole grid as one design: the no-noise setting (one training whatever the placement) once,
    as ``none``, and every other setting of each placement as "<placement> <setting>" (``tables``:
    placement -> :func:`~clipmem_lib.sweeps.compare_settings` table)."""
    parts = [t[t.setting != none].assign(setting=at + " " + t.setting[t.setting != none]) for at, t in tables.items()]
    return pd.concat([next(iter(tables.values())).query("setting == @none"), *parts], ignore_index=True)


def claim6(table: pd.DataFrame, none: str, moderate: str, large: str, placement: str = "",
           grid: pd.DataFrame | None = None) -> list[Verdict]:
    """Claim 6 (Table 8) per seed: moderate text noise lowers raw CLIPMem and raises utility against no
    noise; large noise raises raw CLIPMem and lowers utility against no noise ("hurts both").
    ``placement`` (e.g. "raw", "normalized") names where the noise went, in each row's description; with
    ``grid`` (:func:`noise_grid`), the contrasts pool the seed noise of every placement's settings."""
    t8 = paper("table8")
    std = lambda label: float(label.split()[1])  # noqa: E731 - settings are named "std <value>"
    fig = lambda label: f"{t8[std(label)][0]}, {t8[std(label)][1]}%" if std(label) in t8 else "—"  # noqa: E731
    at = f"{placement} noise, " if placement else ""
    pair = lambda label, col: (t8[std(none)][col], t8[std(label)][col]) if {std(none), std(label)} <= set(t8) else None  # noqa: E731
    design = table if grid is None else grid
    name = lambda label: label if grid is None else f"{placement} {label}"  # noqa: E731 - the setting in the design
    return [verdict("6", f"{at}raw CLIPMem on S_C: {moderate} minus none", f"{fig(none)} → {fig(moderate)}",
                    _pooled(design, "clipmem_raw", name(moderate), none), -1, unit="raw CLIPMem",
                    delta=_delta(pair(moderate, 0), table, "clipmem_raw", none)),
            *_utility("6", f"{at}{moderate} minus none", f"{fig(none)} → {fig(moderate)}", design, name(moderate), none,
                      paper_lp=pair(moderate, 1)),
            verdict("6", f"{at}raw CLIPMem on S_C: {large} minus none", f"{fig(none)} → {fig(large)}",
                    _pooled(design, "clipmem_raw", name(large), none), unit="raw CLIPMem",
                    delta=_delta(pair(large, 0), table, "clipmem_raw", none)),
            *_utility("6", f"{at}{large} minus none", f"{fig(none)} → {fig(large)}", design, name(large), none, -1,
                      paper_lp=pair(large, 1))]


# ------------------------------------------------------------------------------ Fig. 6 (07_removal)

def claim7(curve: pd.DataFrame, k_peak: int, k_late: int, data: str = "planted") -> list[Verdict]:
    """Claim 7 (Fig. 6) per seed on ``data``: removing the ``k_peak`` most memorised pairs beats removing
    as many at random (probe, R@1); at the larger ``k_late`` it no longer does (the cut-off; direction −).
    ``k_peak`` must be fixed before looking at the curve (e.g. the number of planted pairs).  Also: the
    planted pairs among the first ``k_peak`` removed."""
    part = curve[(curve.data == data) & (curve.k > 0)]
    at = lambda k: part[part.k == k].rename(columns={"strategy": "setting"})  # noqa: E731
    fig = paper("fig6")
    return [*_utility("7", f"{data} data, k = {k_peak}: CLIPMem minus random removal", fig, at(k_peak), "clipmem", "random"),
            verdict("7", f"{data} data, k = {k_late}: CLIPMem minus random removal, probe (below: the cut-off)",
                    fig, _pooled(at(k_late), "lp_acc", "clipmem", "random"), -1, unit="LP accuracy"),
            verdict("7", f"planted pairs among the first {k_peak} removed: CLIPMem minus random", "CLIPMem finds them first",
                    _pooled(at(k_peak), "planted_removed", "clipmem", "random"), unit="pairs")]


# --------------------------------------------------------------------------- Sec. 4.5 (05_between)

def claim8(layers: dict) -> list[Verdict]:
    """Claim 8 (Fig. 4) per seed on the last block's mean UnitMem (``layers``: seed ->
    :func:`~clipmem_lib.unitmem.layer_summary`): supervised above CLIP, CLIP above DINO."""
    fig = paper("fig4")
    return [verdict("8", "last-block UnitMem: supervised minus CLIP", fig,
                    _per_seed(layers, lambda t: t.loc["supervised", "last"] - t.loc["CLIP image", "last"]), unit="UnitMem"),
            verdict("8", "last-block UnitMem: CLIP minus DINO", fig,
                    _per_seed(layers, lambda t: t.loc["CLIP image", "last"] - t.loc["DINO", "last"]), unit="UnitMem")]


def claim8_treatments(layers_by_treatment: dict) -> list[Verdict]:
    """Claim 8's differences under other treatments of negative GELU outputs (``{treatment: {seed:
    layer_summary}}``): shown with their intervals but not counted (verdict "n/a"), because the
    treatment of the verdict, the clamp, was fixed before any result was seen."""
    return [dataclasses.replace(v, what=f"{v.what} (GELU treatment: {t})", verdict="n/a",
                                reason="robustness check, not counted: the verdict uses the clamp")
            for t, layers in layers_by_treatment.items() for v in claim8(layers)]


def dino_memorises_more(ssl: dict) -> list[Verdict]:
    """Sec. 4.5 per seed: mean SSLMem on S_C, DINO's encoder minus CLIP's image encoder."""
    p = paper("sslmem_clip_vs_dino")
    diff = _per_seed(ssl, lambda t: t[t.subset == "S_C"].sslmem_dino.mean() - t[t.subset == "S_C"].sslmem_image.mean())
    base = _per_seed(ssl, lambda t: t[t.subset == "S_C"].sslmem_image.mean()).mean()
    return [verdict("", "mean SSLMem on S_C: DINO minus CLIP image encoder", f"{p['dino']} vs {p['clip']}", diff,
                    unit="SSLMem", delta=smallest_effect(p["clip"], p["dino"], base, False))]


def fig11_moves_later(shares: dict) -> list[Verdict]:
    """Fig. 11 per seed: share of the top-1% UnitMem units in the last block, last snapshot minus first
    (``shares``: seed -> (first, last) from :func:`~clipmem_lib.unitmem.last_layer_share`)."""
    return [verdict("", "top-1% units in the last block: last minus first snapshot", paper("fig11"),
                    _per_seed(shares, lambda fl: fl[1] - fl[0]), unit="share")]


# --------------------------------------------------------------------------- Appendix (08_appendix)

def table5(table: pd.DataFrame, small: str, large: str) -> list[Verdict]:
    """Table 5 per seed (``setting`` names the model config): the larger model memorises S_C more (raw
    CLIPMem) and is more useful (probe, held-out R@1), trained on the same pairs with the same seeds."""
    t5 = paper("table5")
    return [verdict("A1", f"raw CLIPMem on S_C: {large} minus {small}", f"{t5['base'][0]} → {t5['large'][0]}",
                    _pooled(table, "clipmem_raw", large, small), unit="raw CLIPMem",
                    delta=_delta((t5["base"][0], t5["large"][0]), table, "clipmem_raw", small)),
            *_utility("A1", f"{large} minus {small}", f"{t5['base'][1]}% → {t5['large'][1]}%", table, large, small,
                      paper_lp=(t5["base"][1], t5["large"][1]))]


def table6(scores: dict) -> list[Verdict]:
    """Table 6 and Fig. 9 per seed, for f and g trained one epoch on many more pairs, with mis-captions
    planted in S_C: the clean S_C pairs score above S_S (one pass suffices to memorise), and the
    mis-captioned ones above the clean ones."""
    def means(t):
        c = t[t.subset == "S_C"]
        mis = c.is_miscaptioned.astype(bool)
        return t[t.subset == "S_S"].clipmem_raw.mean(), c[~mis].clipmem_raw.mean(), c[mis].clipmem_raw.mean()
    m = {s: means(t) for s, t in scores.items()}
    return [verdict("A2", "one epoch: mean raw CLIPMem, clean S_C minus S_S", paper("table6", "yfcc_1_epoch")[0],
                    _per_seed(m, lambda x: x[1] - x[0]), unit="raw CLIPMem"),
            verdict("A2", "one epoch: mean raw CLIPMem, mis-captioned minus clean S_C", paper("fig9"),
                    _per_seed(m, lambda x: x[2] - x[1]), unit="raw CLIPMem")]


def fig8(scores: dict, curve: pd.DataFrame, k: int) -> list[Verdict]:
    """Fig. 8 per seed, supervised learning with flipped labels in S_C (``scores``: seed -> per-image
    label memorisation with ``is_flipped``; ``curve``: removal and retraining with ``strategy``, ``k``,
    ``seed``, ``accuracy``, ``flipped_removed``): flipped labels are memorised more than clean ones; removing
    the ``k`` most memorised (``k`` = the number flipped, fixed beforehand) beats random removal in test
    accuracy and removes more flipped labels."""
    at = curve[curve.k == k].rename(columns={"strategy": "setting"})
    mem = _per_seed(scores, lambda t: t[(t.subset == "S_C") & t.is_flipped].mem.mean()
                    - t[(t.subset == "S_C") & ~t.is_flipped].mem.mean())
    return [verdict("A3", "label memorisation on S_C: flipped minus clean", "flipped labels are memorised", mem,
                    unit="P_f − P_g"),
            verdict("A3", f"k = {k}: test accuracy, most memorised minus random removal", paper("fig8"),
                    _pooled(at, "accuracy", "memorisation", "random"), unit="accuracy"),
            verdict("A3", f"flipped labels among the first {k} removed: most memorised minus random", "—",
                    _pooled(at, "flipped_removed", "memorisation", "random"), unit="labels")]


def table4_7(table: pd.DataFrame, few: str, many: str, similarity: pd.DataFrame | None = None) -> list[Verdict]:
    """Tables 4/7 and Fig. 12 per seed (``table``: ``style`` "template" or "generated", ``setting`` ``few``
    or ``many`` captions): more captions lower raw CLIPMem on S_C in both styles (tested); the generated
    style's CLIPMem and probe minus the template style's (≈ in the paper: shown, not counted); with
    ``similarity`` (:func:`~clipmem_lib.sweeps.style_similarity`), Fig. 12's gap in caption similarity."""
    t = paper("table4_7")
    fig = {"template": t["coco"], "generated": t["gpt35"]}
    rows = [verdict("A4", f"{style} captions: raw CLIPMem on S_C, {many} minus {few}",
                    f"{fig[style][0]} → {fig[style][1]}", _pooled(table[table["style"] == style], "clipmem_raw", many, few),
                    -1, unit="raw CLIPMem", delta=_delta(fig[style][:2], table[table["style"] == style], "clipmem_raw", few))
            for style in ("template", "generated")]
    for setting, col in ((few, 0), (many, 1)):
        part = table[table.setting == setting]
        rows += [observation("A4", f"{setting}: raw CLIPMem on S_C, generated minus template (≈)",
                             f"{t['gpt35'][col]} vs {t['coco'][col]}", _paired(part, "clipmem_raw", "generated", "template",
                                                                                 "style"), "raw CLIPMem"),
                 observation("A4", f"{setting}: linear probe, generated minus template (≈)",
                             f"{t['gpt35'][col + 2]}% vs {t['coco'][col + 2]}%",
                             _paired(part, "lp_acc", "generated", "template", "style"), "LP accuracy")]
    if similarity is not None:
        f12 = paper("fig12")
        rows.append(observation("A4", "mean pairwise similarity of an image's captions: generated minus template",
                                f"{f12['gpt35']} vs {f12['coco']}",
                                _paired(similarity, "similarity", "generated", "template", "style"), "cosine",
                                "the generated style is built to be more uniform: shown, not counted"))
    return rows
