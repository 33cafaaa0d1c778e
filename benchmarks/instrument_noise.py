"""How much of a utility row's interval is the instrument: seed spread and 95% half-width of each
instrument, old and new, on the same trained models (issue: instruments).

Trains f (only f: utility is measured on f) of chapter 06's set-up at the cpu profile's scale for
``--seeds`` paired training seeds and three settings: 1 caption (the baseline, no noise), 5 captions,
and text noise std 0.15 on the raw features. Then measures every model with
  - the probe: 1,500 images x 5 fit/test splits (before), 15,000 images x 5 splits (after), and
    1,500 images x 50 splits (the same fitting cost as 15,000 x 5: more splits instead of more images);
  - retrieval: R@1 on S_E, one gallery of 200 (before), R@1 over 10 galleries of 200 held-out scenes
    of an unused seed (after), and the mean rank in those galleries (the continuous figure).
Prints, per comparison and instrument, the paired effect, its interval, the seed sd of the differences
and the half-width, and the seconds each instrument took per model. Models go to the run store
(``--runs``, default runs/), so a second run only measures.

Usage: .venv/bin/python benchmarks/instrument_noise.py [--seeds 3] [--n-jobs 2] [--runs runs]
"""
import argparse
import time

import numpy as np
import pandas as pd

from clipmem_lib import chapter
from clipmem_lib import experiment as ex
from clipmem_lib.claims import paired_interval
from clipmem_lib.params import Params
from clipmem_lib.schema import chapter_parameters
from clipmem_lib.scenes import make_probe_set
from clipmem_lib.sweeps import caption_settings, noise_settings


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--n-jobs", type=int, default=2)
    ap.add_argument("--runs", default="runs")
    a = ap.parse_args()
    P = Params(**{k: d.default for k, d in chapter_parameters("06_mitigation").items()})
    P.seeds, P.n_jobs, P.runs_dir = a.seeds, a.n_jobs, a.runs
    S = chapter.setup(P)
    settings = {"1 caption": S.train, "5 captions": caption_settings(S.train, [5], S.data.n_captions)["5 captions"],
                "noise 0.15 raw": noise_settings(S.train, [0, 0.15], "raw")["std 0.15"]}
    plan = [(label, s) for label in settings for s in S.seeds]
    jobs = [ex.fg_jobs(S.data, S.splits, P.model, S.seeded(cfg)[s])[0] for label, cfg in settings.items()
            for s in S.seeds]
    t0 = time.perf_counter()
    models = ex.fit_many(jobs, S.ctx.replace(progress=False))
    print(f"{len(models)} models of f ({len(S.seeds)} seeds x {len(settings)} settings) ready in "
          f"{time.perf_counter() - t0:.0f} s")

    new = chapter.instruments(P, S)
    small = make_probe_set(1500, seed=chapter.PROBE_SEED, image_size=P.image_size)
    instruments = {  # name -> (function of a model returning {metric: value}, metric names)
        "probe 1,500 x 5 splits (before)": lambda m: ex.utility(m, small, seeds=range(5), ctx=S.ctx),
        "probe 15,000 x 5 splits (after)": lambda m: ex.utility(m, new.probe, seeds=range(5), ctx=S.ctx),
        "probe 1,500 x 50 splits": lambda m: ex.utility(m, small, seeds=range(50), ctx=S.ctx),
        "R@1 on S_E, 1 gallery of 200 (before)": lambda m: ex.utility(m, small, S.data, S.splits.external,
                                                                      seeds=(0,), ctx=S.ctx),
        "R@1, 10 galleries of 200 held out (after)": lambda m: new.utility(m, S.ctx),
    }
    metric = {name: "lp_acc" if name.startswith("probe") else "r_at_1" for name in instruments}
    values, seconds = {}, {}
    for name, fn in instruments.items():
        t = time.perf_counter()
        values[name] = [fn(m) for m in models]
        seconds[name] = (time.perf_counter() - t) / len(models)
    values["mean rank, 10 galleries of 200 (after)"] = values["R@1, 10 galleries of 200 held out (after)"]
    metric["mean rank, 10 galleries of 200 (after)"] = "mean_rank"
    seconds["mean rank, 10 galleries of 200 (after)"] = seconds["R@1, 10 galleries of 200 held out (after)"]

    rows = []
    for other in ("5 captions", "noise 0.15 raw"):
        for name, vals in values.items():
            by = {(label, s): v[metric[name]] for (label, s), v in zip(plan, vals)}
            d = np.array([by[(other, s)] - by[("1 caption", s)] for s in S.seeds])
            mean, low, high, n = paired_interval(d)
            rows.append({"comparison": f"{other} minus 1 caption", "instrument": name,
                         "effect": mean, "low": low, "high": high, "seed sd": d.std(ddof=1),
                         "half-width": (high - low) / 2, "s per model": seconds[name]})
    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 200, "display.max_colwidth", 60):
        print(table.to_string(index=False, float_format=lambda x: f"{x:+.4f}" if abs(x) < 1 else f"{x:.2f}"))
    for comp, part in table.groupby("comparison", sort=False):
        hw = part.set_index("instrument")["half-width"]
        print(f"{comp}: half-width ratio before/after, probe "
              f"{hw['probe 1,500 x 5 splits (before)'] / hw['probe 15,000 x 5 splits (after)']:.2f}x "
              f"(50 splits instead: {hw['probe 1,500 x 5 splits (before)'] / hw['probe 1,500 x 50 splits']:.2f}x), "
              f"R@1 {hw['R@1 on S_E, 1 gallery of 200 (before)'] / hw['R@1, 10 galleries of 200 held out (after)']:.2f}x")


if __name__ == "__main__":
    main()
