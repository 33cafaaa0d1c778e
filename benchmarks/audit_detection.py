"""Finding planted mis-captions: every method of ``audit.METHODS`` on the built-in scenes, on the CJK
set (Noto Sans CJK glyphs captioned with their Unihan definitions, built from Debian packages) and on
scikit-image's 19 photographs (``loaders.load_photos``: real, but too few to measure power), at each
planting rate, over paired seeds (issue: audit).

Prints per set, rate and method AUROC, AUPRC and precision at k (k = the number planted) with 95%
t-intervals over the seeds, then the mis-caption score minus each other method (AUROC, paired by seed).
Models go to the run store (``--runs``), so a second run only scores.

Usage: .venv/bin/python benchmarks/audit_detection.py [--sets scenes cjk photos] [--rates 0.1] [--seeds 3] [--first-seed 0]
       [--pairs 1000] [--folds 5] [--epochs 40] [--batch-size 128] [--n-jobs 2] [--runs runs] [--image-size 32]
"""
import argparse
import time

import pandas as pd

from clipmem_lib import audit
from clipmem_lib.loaders import load_cjk, load_photos
from clipmem_lib.runtime import Context
from clipmem_lib.scenes import SceneConfig, make_scenes
from clipmem_lib.store import RunStore
from clipmem_lib.train import TrainConfig


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", nargs="+", default=["scenes", "cjk"], choices=["scenes", "cjk", "photos"])
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
    a = ap.parse_args()
    ctx = Context(RunStore(a.runs), device="cpu", progress=False, n_jobs=a.n_jobs)
    makers = {"scenes": lambda: make_scenes(SceneConfig(n=a.pairs, seed=0, image_size=a.image_size)),
              "cjk": lambda: load_cjk(a.pairs, image_size=a.image_size, seed=0),
              "photos": lambda: load_photos(a.image_size)}  # all of them: --pairs does not apply
    summaries, diffs = [], []
    for name in a.sets:
        t0 = time.perf_counter()
        data = makers[name]()
        table, _ = audit.detection_benchmark(data, range(len(data)), a.rates, list(range(a.first_seed, a.first_seed + a.seeds)), "clipmem-tiny",
                                             TrainConfig(epochs=a.epochs, batch_size=a.batch_size), n_folds=a.folds, ctx=ctx)
        summaries.append(audit.benchmark_summary(table).assign(set=name))
        diffs.append(audit.benchmark_differences(table, reference="mis-caption score").assign(set=name))
        print(f"{name}: {len(data)} pairs, {len(a.rates) * a.seeds * (a.folds + 1)} trainings, "
              f"{time.perf_counter() - t0:.0f} s")
    with pd.option_context("display.width", 220, "display.max_columns", 20, "display.float_format", "{:.3f}".format):
        print(pd.concat(summaries).reset_index().set_index(["set", "rate", "method"])
              [["auroc", "auroc_low", "auroc_high", "auprc", "precision_at_k", "n_seeds"]])
        print(pd.concat(diffs).reset_index().set_index(["set", "rate", "mis-caption score minus"]))


if __name__ == "__main__":
    main()
