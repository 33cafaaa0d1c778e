"""Paper-vs-this-run tables: every notebook ends with one, and the summary page gathers them all.

A row holds the paper's number (from ../shared/paper/REFERENCE.md), the measured one, and whether
the paper's qualitative claim held in this run.  Tables are saved as CSV beside the executed
notebooks so the closing "Reproduction summary" can collect them.
"""
from __future__ import annotations

import os
import pathlib

import pandas as pd

from .claims import paper
from .store import output_path

__all__ = ["claim", "claims_table", "save_claims", "load_claims", "verdict", "held_counts", "claim_status",
           "show"]


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
    return pd.concat([pd.read_csv(f, keep_default_na=False, dtype=str) for f in files], ignore_index=True)


def held_counts(rows: pd.DataFrame) -> tuple[int, int]:
    """(rows with a qualitative check, rows whose check held) of the gathered tables."""
    checked = rows[rows.held != "n/a"]
    return len(checked), int((checked.held == "yes").sum())


def claim_status(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per paper claim: "held" when all its checked rows held, "did not hold" when none did,
    "held in part" otherwise, or "not measured" when no chapter checked it."""
    def status(cid):
        part = rows[(rows.claim == cid) & (rows.held != "n/a")]
        if part.empty:
            return "not measured in this book yet"
        return "held" if (part.held == "yes").all() else ("did not hold" if (part.held == "no").all() else "held in part")

    stated = paper("claims")
    return pd.DataFrame({"#": list(stated), "claim": list(stated.values()), "this run": [status(c) for c in stated]})


def show(table: pd.DataFrame):
    """A paper-vs-this-run table for display: every cell in full (pandas would cut long text), no index."""
    return table.style.hide(axis="index").format(escape="html")  # "S_I < 0" must stay text
