"""Paper-vs-this-run tables: every notebook ends with one, and the summary page gathers them all.

A row holds the paper's figure (clipmem_lib/paper.yaml), this run's effect with its 95% interval over
paired training seeds, the row's smallest effect of interest δ beside the interval's half-width, and
the verdict (:mod:`clipmem_lib.claims`): holds, fails, too small, inconclusive, or n/a for rows that
report numbers without testing them.  Tables are saved as CSV beside the executed
notebooks so the closing "Reproduction summary" can collect them.
"""
from __future__ import annotations

import os
import pathlib

import numpy as np
import pandas as pd

from .claims import TESTED, Verdict, paper, seeds_needed
from .store import output_path

__all__ = ["COLUMNS", "verdict_rows", "signature", "value_row", "claims_table", "save_claims", "load_claims", "counts",
           "claim_status", "power_table", "with_plan", "decision_groups",
           "design_families", "show"]

COLUMNS = ["section", "claim", "what", "paper", "this run", "verdict", "delta", "half_width", "interval", "effect", "low",
           "high", "n_seeds", "sd", "df", "unit", "reason"]
NUMERIC = ("delta", "half_width", "effect", "low", "high", "n_seeds", "sd", "df")
SEEDS_SHOWN = 1000  # the power table's largest seed count shown as a number
FALSE_HOLD_RATE = 0.025  # a 95% two-sided interval lies wholly right of zero by chance once in 40 null rows


def verdict_rows(section: str, verdicts: list[Verdict]) -> list[dict]:
    """Table rows of :class:`~clipmem_lib.claims.Verdict` s: effect ± interval over seeds and the verdict."""
    return [{"section": section, "claim": v.claim, "what": v.what, "paper": v.paper, "this run": v.measured(),
             "verdict": v.verdict, "delta": v.delta, "half_width": v.half_width, "interval": v.interval,
             "effect": v.effect, "low": v.low, "high": v.high, "n_seeds": v.n_seeds, "sd": v.sd, "df": v.df,
             "unit": v.unit, "reason": v.reason} for v in verdicts]


def value_row(section: str, what: str, paper_figure: str, measured: str, claim_id: str = "") -> dict:
    """A row that reports numbers beside the paper's and tests nothing (verdict "n/a")."""
    return {"section": section, "claim": claim_id, "what": what, "paper": paper_figure, "this run": measured,
            "verdict": "n/a"}


def signature(table: pd.DataFrame) -> list[str]:
    """``claim:verdict:sign of the effect`` per tested row: what nbval compares between runs (observations,
    whose effects are ≈ 0 by nature, would flip sign with float rounding, so they are left out)."""
    sign = {1.0: "+", -1.0: "-", 0.0: "0"}
    return [f"{r.claim or '-'}:{r.verdict}:{sign.get(float(np.sign(r.effect)), '?')}"
            for r in table.itertuples() if r.verdict in TESTED and np.isfinite(r.effect)]


def claims_table(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=COLUMNS)


def save_claims(table: pd.DataFrame, name: str, results_dir: str | os.PathLike) -> pathlib.Path:
    """Write ``table`` to ``results_dir/name.csv`` atomically (relative paths: from the project root)."""
    d = output_path(results_dir)
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / f".{name}.csv.tmp"
    table.to_csv(tmp, index=False)
    os.replace(tmp, d / f"{name}.csv")
    return d / f"{name}.csv"


def load_claims(results_dir: str | os.PathLike) -> pd.DataFrame:
    """All saved tables, in file-name (= notebook) order; an empty table if there are none."""
    files = sorted(output_path(results_dir).glob("*.csv"))
    if not files:
        return claims_table([])
    rows = pd.concat([pd.read_csv(f, keep_default_na=False, dtype=str).assign(chapter=f.stem) for f in files],
                     ignore_index=True)
    for col in NUMERIC:
        rows[col] = pd.to_numeric(rows[col], errors="coerce") if col in rows else np.nan
    return rows


def counts(rows: pd.DataFrame) -> dict[str, int]:
    """How many rows were tested, how many of them hold, fail, are too small or inconclusive, and
    ``chance_holds``: how many "holds" chance alone would give if no effect were real (rounded up)."""
    tested = rows[rows.verdict.isin(TESTED)]
    return {"tested": len(tested), **{v.replace(" ", "_"): int((tested.verdict == v).sum()) for v in TESTED},
            "chance_holds": int(np.ceil(FALSE_HOLD_RATE * len(tested)))}


def claim_status(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per paper claim (1–8, then the appendix's A1–A5): "holds" when every tested row of it holds,
    "fails" when every one fails,
    "holds in part" when some hold, "inconclusive" otherwise; with the fewest seeds behind it."""
    def status(cid):
        part = rows[(rows.claim == cid) & rows.verdict.isin(TESTED)]
        if part.empty:
            return "not measured in this book yet", ""
        v = set(part.verdict)
        word = ("holds" if v == {"holds"} else "fails" if v == {"fails"} else "holds in part" if "holds" in v
                else "too small" if v == {"too small"} else "inconclusive")
        return word, f"{len(part)} rows, {int(part.n_seeds.min())} seeds or more"

    stated = {**paper("claims"), **paper("appendix_claims")}
    found = [status(c) for c in stated]
    return pd.DataFrame({"#": list(stated), "claim": list(stated.values()), "this run": [f[0] for f in found],
                         "behind it": [f[1] for f in found]})


def power_table(rows: pd.DataFrame) -> pd.DataFrame:
    """The tested rows that have a δ: half-width beside δ, the seeds behind the interval and the seeds
    that would bring the half-width down to δ at this run's seed spread (:func:`~clipmem_lib.claims.seeds_needed`),
    widest relative to δ first."""
    t = rows[rows.verdict.isin(TESTED) & np.isfinite(rows.delta) & np.isfinite(rows.half_width) & (rows.n_seeds >= 2)]
    out = pd.DataFrame({"claim": t.claim, "what": t.what, "verdict": t.verdict, "half_width": t.half_width,
                        "delta": t.delta, "half-width / δ": t.half_width / t.delta, "seeds": t.n_seeds.astype(int),
                        "seeds for half-width ≤ δ": [seeds_needed(h, int(n), d, most=SEEDS_SHOWN)
                                                     for h, n, d in zip(t.half_width, t.n_seeds, t.delta)]})
    out = out.sort_values("half-width / δ", ascending=False, kind="stable").reset_index(drop=True)
    return out.round({"half-width / δ": 2})


def with_plan(table: pd.DataFrame, profile: str) -> pd.DataFrame:
    """``table`` with the power plan's label of each tested row at ``profile`` (``plan``), made from the
    committed variances before the run (:mod:`clipmem_lib.resolution`); where the plan called a row
    decidable and it ended inconclusive, the label says by how much its spread exceeded the plan's."""
    from .resolution import expected_half_width, label_of, load_variances

    if not profile or table.empty:
        return table
    stored = load_variances(profile)[0].set_index(["claim", "what"])
    labels = []
    for r in table.itertuples():
        key = (str(r.claim), r.what)
        if r.verdict not in TESTED:
            labels.append("")
        elif key not in stored.index:
            labels.append(f"not in the plan: no stored variance for this row at {profile}")
        else:
            row = stored.loc[key]
            row = row.iloc[0] if isinstance(row, pd.DataFrame) else row
            ok, label = label_of(row, profile, int(r.n_seeds) if np.isfinite(r.n_seeds) else 0)
            if ok and r.verdict == "inconclusive":
                planned = expected_half_width(row.sd, int(r.n_seeds), int(row.settings))
                label += (f"; ended inconclusive: half-width {r.half_width:.3g}, {r.half_width / planned:.1f}× the "
                          "planned (its spread came out larger than the stored one)")
            labels.append(label)
    return table.assign(plan=labels)


DECIDED = ("holds", "fails", "too small")


def decision_groups(rows: pd.DataFrame, profile: str) -> pd.DataFrame:
    """The tested rows in the groups the plan and the run put them in: decided (holds, fails, too small),
    beyond resolution (the plan said so before the run), two-way and undecided (no δ, so no promise), and
    planned decidable but undecided (the page says why); with counts and shares."""
    t = with_plan(rows[rows.verdict.isin(TESTED)], profile)
    plan = t.get("plan", pd.Series("", index=t.index)).fillna("")
    group = np.select([t.verdict.isin(DECIDED), plan.str.startswith("beyond resolution"), plan.str.startswith("two-way"),
                       plan.str.startswith("decidable")],
                      ["decided", "beyond resolution (labelled by the plan before the run)",
                       "two-way, undecided (no δ: the plan promised nothing)", "planned decidable, undecided"],
                      "undecided, not in the plan")
    out = pd.Series(group).value_counts().rename_axis("group").rename("rows").reset_index()
    return out.assign(share=(out.rows / max(len(t), 1)).round(3))


def design_families(rows: pd.DataFrame) -> pd.DataFrame:
    """Per pooled design and metric (chapter, unit, interval): its tested contrasts and Bonferroni's bound on
    the chance of at least one false "holds" among them (:func:`~clipmem_lib.designs.family_false_hold_bound`;
    the rows themselves are not corrected)."""
    from .designs import family_false_hold_bound

    t = rows[rows.verdict.isin(TESTED) & rows.interval.astype(str).str.startswith("pooled")]
    if t.empty:
        return pd.DataFrame(columns=["chapter", "unit", "interval", "contrasts", "false holds at most"])
    g = t.groupby(["chapter", "unit", "interval"], sort=False).size().rename("contrasts").reset_index()
    return g.assign(**{"false holds at most": [family_false_hold_bound(m, FALSE_HOLD_RATE) for m in g.contrasts]})


def show(table: pd.DataFrame, profile: str = ""):
    """A paper-vs-this-run table for display: every cell in full (pandas would cut long text), no index,
    δ and the half-width beside the verdict, without the numeric columns kept for the summary's forest plot;
    with ``profile``, each tested row's power-plan label (:func:`with_plan`)."""
    shown = with_plan(table, profile) if "verdict" in table and "what" in table else table
    shown = shown.drop(columns=[c for c in ("effect", "low", "high", "n_seeds", "sd", "df", "unit", "reason", "chapter")
                                if c in shown])
    shown = shown.rename(columns={"delta": "δ", "half_width": "half-width"})
    num = lambda x: "—" if not isinstance(x, (int, float)) or not np.isfinite(x) else f"{x:.3g}"  # noqa: E731
    count = lambda x: f"more than {SEEDS_SHOWN}" if x > SEEDS_SHOWN else f"{x:.0f}"  # noqa: E731
    return (shown.style.hide(axis="index").format(escape="html")
            .format(num, subset=[c for c in ("δ", "half-width", "half-width / δ") if c in shown])
            .format(count, subset=[c for c in ("seeds for half-width ≤ δ",) if c in shown]))
