"""Where the cpu book's time goes: runs the book's chapters cold (an empty run store) through the runner
and prints, per chapter, the wall seconds and the seconds the library spent training, computing
embeddings (Eq. 3's crops), probing (sklearn fits over probe seeds, R@1), running UnitMem and plotting,
with each category's share of the total.

Usage: python benchmarks/book_profile.py [--profile cpu] [--only 01_metric 02_memorisation] [--runs DIR]
(``make book`` records the same figures; ``python -m clipmem_lib.book timings`` prints them.)
"""
import argparse
import tempfile

from clipmem_lib import book


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--runs", default=None, help="run store (default: a new, empty one: a cold run)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        args = ["run", "--profile", a.profile, "--runs", a.runs or f"{tmp}/runs", "--out", f"{tmp}/out", "--no-progress"]
        rc = book.main(args + (["--only", *a.only] if a.only else []))
        table = book.timing_table(f"{tmp}/out")
    print(f"\nseconds per chapter (profile {a.profile}, {'cold' if a.runs is None else 'store ' + a.runs}):")
    print(table.to_string())
    total = table.loc["total"]
    print("\nshare of the wall time: " + ", ".join(f"{c} {total[c] / total['wall']:.0%}" for c in table.columns[1:]))
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
