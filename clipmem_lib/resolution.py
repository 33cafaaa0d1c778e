"""The power plan made before the run: for every tested row, whether a profile's seeds can decide it.

A row is *decidable* at a profile when its expected 95% interval is narrower than its δ (half-width below
δ/2): then, whatever the effect, the interval either excludes zero (holds or fails) or lies wholly below
δ (too small).  The expected half-width is t · sd / √n at the profile's n seeds, with sd the per-seed sd
of the row's differences stored by the last full run at that profile (``profiles/variances/<profile>.csv``,
committed so that a fresh clone plans the same way), or by the named pilot (the cpu table) where a
profile has none, and t at the row's degrees of freedom: (S − 1)(n − 1) where the row's design pooled S
settings, n − 1 where it was paired (:mod:`clipmem_lib.designs`).  The plan reads variances only, never
effects.  A row without δ (the paper gives no number) is two-way: no seed count can promise it a verdict.

    python -m clipmem_lib.book plan --profile cpu --resolution      # the labels, nothing trains
"""
from __future__ import annotations

import math
import pathlib

import numpy as np
import pandas as pd

from .designs import t_half_width
from .store import output_path, project_path

__all__ = ["PILOT", "MOST_SEEDS", "variances_path", "variance_table", "refresh_variances", "load_variances", "expected_half_width",
           "seeds_to_decide", "label_of", "chapter_cost", "row_seeds", "resolution_table"]

PILOT = "cpu"        # the profile whose variances plan a profile that has none stored yet
MOST_SEEDS = 1000    # beyond this, "more than 1000 seeds"
KEY = ["claim", "what"]
# The pooled designs a profile gives seeds of their own: the parameter, its chapter, and what marks its rows
# (claim 6's rows are "<placement> noise, ..."; see claims.claim6).
DESIGN_SEEDS = {"noise_seeds": ("06_mitigation", " noise, ")}
COLUMNS = ["chapter", "claim", "what", "delta", "sd", "settings", "n_seeds", "interval"]


def variances_path(profile: str) -> pathlib.Path:
    """Where the variances of ``profile``'s last full run are committed."""
    return project_path("profiles") / "variances" / f"{profile}.csv"


def _settings(interval: str) -> int:
    """S of a "pooled: S settings × n seeds, df" interval; 2 (a pair) for a paired one."""
    return int(interval.split(":")[1].split()[0]) if str(interval).startswith("pooled") else 2


def variance_table(rows: pd.DataFrame) -> pd.DataFrame:
    """What the plan reads, from a run's paper-vs-this-run rows (:func:`~clipmem_lib.report.load_claims`):
    per tested row with an interval, its per-seed sd, the settings its design pooled and its seeds."""
    from .claims import TESTED

    t = rows[rows.verdict.isin(TESTED)]  # a one-seed row stays, without a spread: the plan names it so
    return pd.DataFrame({"chapter": t.get("chapter", ""), "claim": t.claim, "what": t.what,
                         "delta": pd.to_numeric(t.delta, errors="coerce"), "sd": pd.to_numeric(t.sd, errors="coerce").round(6),
                         "settings": [_settings(i) for i in t.interval], "n_seeds": t.n_seeds.astype(int),
                         "interval": t.interval}, columns=COLUMNS).reset_index(drop=True)


def refresh_variances(rows: pd.DataFrame, profile: str) -> pathlib.Path:
    """Write the variances of a run at ``profile`` (:func:`variance_table` of its rows) over the committed
    table: the chapters the run holds are replaced, the others kept; atomically."""
    new = variance_table(rows)
    path = output_path(variances_path(profile).relative_to(project_path(".")))  # the tests write elsewhere
    committed = variances_path(profile) if not path.is_file() else path
    old = pd.read_csv(committed, keep_default_na=False, dtype={"claim": str}) if committed.is_file() else new.iloc[:0]
    out = pd.concat([old[~old.chapter.isin(set(new.chapter))], new], ignore_index=True)
    out = out.sort_values("chapter", kind="stable")[COLUMNS]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".csv.tmp")
    out.to_csv(tmp, index=False)
    tmp.replace(path)
    return path


def load_variances(profile: str) -> tuple[pd.DataFrame, str]:
    """(the stored variances that plan ``profile``, where they come from): its own table, else the pilot's."""
    for name in dict.fromkeys([profile, PILOT]):
        path = variances_path(name)
        if path.is_file():
            table = pd.read_csv(path, keep_default_na=False, dtype={"claim": str})
            for col in ("delta", "sd"):
                table[col] = pd.to_numeric(table[col], errors="coerce")
            where = path.relative_to(project_path(".")) if path.is_relative_to(project_path(".")) else path
            source = f"{where}" + ("" if name == profile else f" (pilot: {name})")
            return table, source
    return pd.DataFrame(columns=COLUMNS), "no stored variances: run the profile once"


def expected_half_width(sd: float, n: int, settings: int = 2) -> float:
    """The 95% half-width a row would have at ``n`` paired seeds, at per-seed sd ``sd``, its design
    pooling ``settings`` settings ((S − 1)(n − 1) df; 2: paired, n − 1)."""
    return t_half_width(sd, n, (max(settings, 2) - 1) * (n - 1))


def seeds_to_decide(sd: float, delta: float, settings: int = 2, most: int = MOST_SEEDS) -> float:
    """The fewest seeds at which the expected half-width falls below δ/2 (NaN without δ; inf beyond ``most``)."""
    if not (np.isfinite(delta) and delta > 0 and np.isfinite(sd)):
        return math.nan
    for n in range(2, most + 1):
        if expected_half_width(sd, n, settings) < delta / 2:
            return float(n)
    return math.inf


def label_of(row, profile: str, seeds: int, cost=None, seeds_at: dict | None = None) -> tuple[bool | None, str]:
    """(decidable: True, False or None for a two-way row; the plan's label) of one variance-table row at
    ``seeds``; ``cost(chapter, n)`` gives (trainings, minutes) for n seeds of the row's chapter, and
    ``seeds_at`` the seeds each other profile gives that chapter."""
    if not np.isfinite(row.sd):
        return False, (f"beyond resolution at {profile}: this row runs at one seed by design, so it has no interval "
                       "and no stored spread; it needs 2 seeds or more at every setting it compares")
    h = expected_half_width(row.sd, seeds, row.settings)
    if not np.isfinite(row.delta):
        return None, (f"two-way at {profile} (the paper gives no number, so no δ): expected half-width {h:.3g}, "
                      "decided only if the effect is larger; no seed count can promise it")
    if h < row.delta / 2:
        return True, f"decidable at {profile}: expected half-width {h:.3g} < δ/2 = {row.delta / 2:.3g}"
    need = seeds_to_decide(row.sd, row.delta, row.settings)
    if not np.isfinite(need):
        return False, f"beyond resolution at {profile}: needs more than {MOST_SEEDS} seeds (δ = {row.delta:.3g}, " \
                      f"expected half-width {h:.3g})"
    n = int(need)
    spent = ""
    if cost is not None:
        trainings, minutes = cost(row.chapter, n)
        spent = f" ({trainings} trainings, about {minutes:,.0f} min)"
    where = [p for p, s in (seeds_at or {}).items() if s >= n]
    return False, (f"beyond resolution at {profile}: needs {n} seeds{spent}; "
                   + (f"decidable at {where[0]}" if where else f"no profile has {n} seeds (set seeds={n})"))


def chapter_cost(trainings: pd.DataFrame, seeds: dict, samples_per_s: float):
    """``cost(chapter, n)`` for :func:`label_of`: (trainings, minutes) of n seeds of a chapter, at the
    chapter's trainings per seed (an upper bound for a design's rows) and mean samples per training of a plan (:func:`~clipmem_lib.plan.book_trainings`)."""
    def cost(chapter, n):
        part = trainings[trainings.chapter == chapter]  # asked, stored or not: more seeds need them all
        per_seed = len(part) / max(seeds.get(chapter, 1), 1)
        count = int(math.ceil(per_seed * n))
        return count, count * (part.samples.mean() if len(part) else 0) / samples_per_s / 60
    return cost


def row_seeds(row, seeds: dict) -> int:
    """The seeds a profile gives a row: its design's own (``seeds`` holds e.g. ``noise_seeds``) or its chapter's."""
    for name, (chapter, marker) in DESIGN_SEEDS.items():
        if row.chapter == chapter and marker in row.what and seeds.get(name):
            return int(seeds[name])
    return int(seeds.get(row.chapter, max((v for k, v in seeds.items() if k not in DESIGN_SEEDS), default=0)))


def resolution_table(profile: str, seeds: dict, cost=None, seeds_at: dict | None = None) -> tuple[pd.DataFrame, str]:
    """Per stored row: δ, the expected half-width at the profile's seeds (``seeds``: chapter -> seeds, and
    the designs' own, :data:`DESIGN_SEEDS`), whether it can be decided, and the label; with the source of
    the variances."""
    table, source = load_variances(profile)
    out = []
    for r in table.itertuples():
        n = row_seeds(r, seeds)
        ok, label = label_of(r, profile, n, cost, {p: row_seeds(r, s) for p, s in (seeds_at or {}).items()})
        out.append({"chapter": r.chapter, "claim": r.claim, "what": r.what, "δ": r.delta, "seeds": n,
                    "expected half-width": expected_half_width(r.sd, n, r.settings),
                    "interval": "pooled" if r.settings > 2 else "paired",
                    "decidable": {True: "yes", False: "no", None: "two-way"}[ok], "plan": label})
    return pd.DataFrame(out, columns=["chapter", "claim", "what", "δ", "seeds", "expected half-width", "interval",
                                      "decidable", "plan"]), source
