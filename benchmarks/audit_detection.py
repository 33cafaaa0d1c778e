"""Finding planted mis-captions: every method of ``audit.METHODS`` on the built-in scenes, on the CJK
set (Noto Sans CJK glyphs captioned with their Unihan definitions, built from Debian packages), on
Debian's openclipart drawings (``loaders.load_openclipart``) and on scikit-image's 19 photographs
(``loaders.load_photos``: real, but too few to measure power), at each planting rate, over paired seeds
(issue: audit).

Prints per set, rate and method AUROC, AUPRC and precision at k (k = the number planted) with 95%
t-intervals over the seeds, then the mis-caption score minus each other method (AUROC, paired by seed).
Then the weight fit (issue 34): the score each fit kind chooses (``audit.choose_score``, logistic and
non-negative, with its fallback), the fixed weights and every single term it weighs, and the chosen
score minus each (paired by seed); the upper bound on the wrong captions against the planted count; and
a simulated review of ``--review`` random pairs (marks from the planted truth) over ``--review-seeds``
samples: how often its Clopper–Pearson interval covers the planted count.
Models go to the run store (``--runs``), so a second run only scores.

Usage: .venv/bin/python benchmarks/audit_detection.py [--sets scenes cjk openclipart photos] [--rates 0.1] [--seeds 3]
       [--first-seed 0] [--pairs 1000] [--folds 5] [--epochs 40] [--batch-size 128] [--n-jobs 2] [--runs runs]
       [--image-size 32] [--review 200] [--review-seeds 20]
"""
import argparse
import time

import numpy as np
import pandas as pd

from clipmem_lib import audit
from clipmem_lib.claims import paired_interval
from clipmem_lib import loaders
from clipmem_lib.loaders import load_cjk, load_photos
from clipmem_lib.runtime import Context
from clipmem_lib.scenes import SceneConfig, make_scenes
from clipmem_lib.store import RunStore
from clipmem_lib.train import TrainConfig

# The single terms the fit weighs (oriented: + high is suspect), and CLIPMem beside them.
SINGLE = {**{f"term: {c}": (c, s) for c, s in audit.FIT_EVIDENCE.items()}, "term: clipmem": ("clipmem", 1)}


def fit_rows(scores, extra) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per (rate, seed): AUROC of each fit kind's chosen score, the fixed weights and each single term
    (tidy, as ``detection_benchmark``'s table), and the bound, fallback and held-out AUROC of each kind."""
    rows, info = [], []
    for (rate, seed), sc in scores.items():
        syn, _ = extra[(rate, seed)]
        methods = {"fixed weights (MISCAPTION_EVIDENCE)": ("fixed_score", 1), **SINGLE}
        for kind in audit.FIT_KINDS:
            c = audit.choose_score(sc, syn, kind)
            col = f"chosen, {kind}"
            sc[col] = c.real
            methods[col] = (col, 1)
            planted = int(sc.is_miscaptioned.sum())
            share = audit.wrong_upper_bound(c.real, c.synthetic)
            low, high = audit.bound_interval(c.real, c.synthetic, seed=seed)
            info.append(dict(rate=rate, seed=seed, kind=kind, fallback=c.fallback, heldout_fitted=c.auroc_fitted,
                             heldout_fixed=c.auroc_fixed, planted=planted, bound=int(np.ceil(len(sc) * share - 1e-9)),
                             bound_low=int(np.floor(len(sc) * low + 1e-9)), bound_high=int(np.ceil(len(sc) * high - 1e-9))))
        rows.append(audit.detection_table(sc, methods).reset_index().assign(rate=rate, seed=seed))
    return pd.concat(rows, ignore_index=True), pd.DataFrame(info)


def simulated_review(scores, size: int, n_samples: int) -> pd.DataFrame:
    """Per rate: ``n_samples`` random reviews of ``size`` pairs (marks = the planted truth), sample r on
    the seeds' data in turn; whether each Clopper–Pearson interval, scaled to the pairs, covers the
    planted count."""
    out = []
    for rate in sorted({r for r, _ in scores}):
        seeds = sorted(s for r, s in scores if r == rate)
        for r in range(n_samples):
            sc = scores[(rate, seeds[r % len(seeds)])]
            ids = audit.review_sample(sc["index"].to_numpy(), min(size, len(sc)), seed=1000 + r)
            wrong = sc.set_index("index").loc[ids, "is_miscaptioned"].to_numpy()
            low, high = audit.clopper_pearson(int(wrong.sum()), len(ids))
            planted = int(sc.is_miscaptioned.sum())
            out.append(dict(rate=rate, sample=r, planted=planted, estimate=len(sc) * wrong.mean(), low=len(sc) * low,
                            high=len(sc) * high, covers=len(sc) * low <= planted <= len(sc) * high))
    return pd.DataFrame(out)


def _fmt(mean, low, high):
    return f"{mean:+.3f} [{low:+.3f}, {high:+.3f}]"


def report_fit(name, table, info, review, reference):
    """Markdown tables: the chosen score, the fixed weights and each term (AUROC, paired intervals), the
    chosen score (``reference``) minus each, the bound and the fallback, the simulated review."""
    rates = sorted(table.rate.unique())
    summ = audit.benchmark_summary(table, metrics=("auroc",))
    diff = audit.benchmark_differences(table, reference=reference)
    print(f"\n**{name}**: AUROC, mean [95% interval over paired seeds]\n")
    print("| method | " + " | ".join(f"{r:.0%}" for r in rates) + " |\n|---|" + "---|" * len(rates))
    for m in table.method.unique():
        print(f"| {m} | " + " | ".join(f"{summ.loc[(r, m), 'auroc']:.3f} [{summ.loc[(r, m), 'auroc_low']:.3f}, "
                                       f"{summ.loc[(r, m), 'auroc_high']:.3f}]" for r in rates) + " |")
    print(f"| *{reference} minus:* |" + " |" * len(rates))
    for m in [m for m in table.method.unique() if m != reference]:
        print(f"| {m} | " + " | ".join(_fmt(*diff.loc[(r, m), ["difference", "low", "high"]]) for r in rates) + " |")
    print("\n| rate | seed | kind | fallback | held-out AUROC fitted / fixed | planted | upper bound [bootstrap 95%] | covers |"
          "\n|---|---|---|---|---|---|---|---|")
    for _, r in info.iterrows():
        print(f"| {r.rate:.0%} | {r.seed} | {r.kind} | {'yes' if r.fallback else 'no'} | {r.heldout_fitted:.3f} / "
              f"{r.heldout_fixed:.3f} | {r.planted} | {r.bound} [{r.bound_low}, {r.bound_high}] | "
              f"{'yes' if r.bound >= r.planted else 'NO'} |")
    for rate, part in review.groupby("rate"):
        print(f"simulated review at {rate:.0%}: {int(part.covers.sum())} of {len(part)} intervals cover the planted "
              f"count ({part.planted.iloc[0]} of each seed's pairs); mean width {(part.high - part.low).mean():.0f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", nargs="+", default=["scenes", "cjk"], choices=["scenes", "cjk", "openclipart", "photos"])
    ap.add_argument("--rates", nargs="+", type=float, default=[0.1])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + seeds - 1")
    ap.add_argument("--pairs", type=int, default=1000)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=128, help="as clipmem audit: no larger than a fold model's pairs")
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument("--runs", default="runs")
    ap.add_argument("--image-size", type=int, default=32, help="side of the scenes, glyphs and photos in pixels")
    ap.add_argument("--review", type=int, default=200, help="pairs in each simulated review")
    ap.add_argument("--review-seeds", type=int, default=20, help="simulated reviews per rate")
    a = ap.parse_args()
    ctx = Context(RunStore(a.runs), device="cpu", progress=False, n_jobs=a.n_jobs)
    makers = {"scenes": lambda: make_scenes(SceneConfig(n=a.pairs, seed=0, image_size=a.image_size)),
              "cjk": lambda: load_cjk(a.pairs, image_size=a.image_size, seed=0),
              "openclipart": lambda: loaders.load_openclipart(a.pairs, image_size=a.image_size, seed=0),  # another helper's loader
              "photos": lambda: load_photos(a.image_size)}  # all of them: --pairs does not apply
    summaries, diffs = [], []
    for name in a.sets:
        t0 = time.perf_counter()
        data = makers[name]()
        table, scores, extra = audit.detection_benchmark(
            data, range(len(data)), a.rates, list(range(a.first_seed, a.first_seed + a.seeds)), "clipmem-tiny",
            TrainConfig(epochs=a.epochs, batch_size=a.batch_size), n_folds=a.folds, ctx=ctx, with_synthetic=True)
        summaries.append(audit.benchmark_summary(table).assign(set=name))
        diffs.append(audit.benchmark_differences(table, reference="mis-caption score").assign(set=name))
        fits, info = fit_rows(scores, extra)
        review = simulated_review(scores, a.review, a.review_seeds)
        print(f"{name}: {len(data)} pairs, {len(a.rates) * a.seeds * (a.folds + 1)} trainings, "
              f"{time.perf_counter() - t0:.0f} s")
        report_fit(f"{name}, {len(data)} pairs, {a.folds} folds, seeds {a.first_seed}-{a.first_seed + a.seeds - 1}",
                   fits, info, review, reference=f"chosen, {audit.DEFAULT_FIT}")
    with pd.option_context("display.width", 220, "display.max_columns", 20, "display.float_format", "{:.3f}".format):
        print(pd.concat(summaries).reset_index().set_index(["set", "rate", "method"])
              [["auroc", "auroc_low", "auroc_high", "auprc", "precision_at_k", "n_seeds"]])
        print(pd.concat(diffs).reset_index().set_index(["set", "rate", "mis-caption score minus"]))


if __name__ == "__main__":
    main()
