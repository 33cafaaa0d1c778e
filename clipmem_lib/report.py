"""Paper-vs-this-run tables: every notebook ends with one, and the summary page gathers them all.

A row holds the paper's number (from ../shared/paper/REFERENCE.md), the measured one, and whether
the paper's qualitative claim held in this run.  Tables are saved as CSV beside the executed
notebooks so the closing "Reproduction summary" can collect them.
"""
from __future__ import annotations

import os
import pathlib

import pandas as pd

from .store import project_path

__all__ = ["claim", "claims_table", "save_claims", "load_claims", "verdict", "show"]

COLUMNS = ["section", "claim", "what", "paper", "this run", "held"]


def verdict(held: bool | None) -> str:
    """'yes', 'no' or 'n/a' (no qualitative claim, or not measurable at this scale)."""
    return "n/a" if held is None else ("yes" if held else "no")


def claim(section: str, what: str, paper: str, measured: str, held: bool | None, claim_id: str = "") -> dict:
    """One row of a paper-vs-this-run table."""
    return {"section": section, "claim": claim_id, "what": what, "paper": paper, "this run": measured,
            "held": verdict(held)}


def claims_table(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=COLUMNS)


def save_claims(table: pd.DataFrame, name: str, results_dir: str | os.PathLike) -> pathlib.Path:
    """Write ``table`` to ``results_dir/name.csv`` atomically (relative paths: from the project root)."""
    d = project_path(results_dir)
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / f".{name}.csv.tmp"
    table.to_csv(tmp, index=False)
    os.replace(tmp, d / f"{name}.csv")
    return d / f"{name}.csv"


def load_claims(results_dir: str | os.PathLike) -> pd.DataFrame:
    """All saved tables, in file-name (= notebook) order; an empty table if there are none."""
    files = sorted(project_path(results_dir).glob("*.csv"))
    if not files:
        return claims_table([])
    return pd.concat([pd.read_csv(f, keep_default_na=False, dtype=str) for f in files], ignore_index=True)


def show(table: pd.DataFrame):
    """A paper-vs-this-run table for display: every cell in full (pandas would cut long text), no index."""
    return table.style.hide(axis="index").format(escape="html")  # "S_I < 0" must stay text
