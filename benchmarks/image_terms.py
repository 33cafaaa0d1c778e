"""Which image similarity should the audit's model-free neighbour terms use?  ``audit.neighbour_consistency``
with pixels (``audit.pixel_vectors``), colour histograms, HOG (``imagefeatures``) and pixels + HOG as the
image rows, finding captions swapped at random (``splits.plant_miscaptions``) on the built-in scenes, the CJK
set (``loaders.load_cjk``) and openclipart's drawings (``loaders.load_openclipart``); no model is trained.

The score of each image term is the audit's ``consistency_score``: ``audit.miscaption_score`` with
``audit.CONSISTENCY_EVIDENCE`` (the mean percentile rank of the two neighbour terms).  Prints per set and
image term the AUROC (``audit.detection_metrics``) and, per term alone, the mean over the seeds with its 95%
t-interval, then each term minus pixels, paired by seed.  The seed sets the planting; the images, their
vectors and the sets' samples are the same for every seed.  A set whose Debian packages are missing is
skipped, saying so.

Usage: .venv/bin/python benchmarks/image_terms.py [--sets scenes cjk openclipart] [--pairs 4000] [--rate 0.1]
       [--seeds 3] [--first-seed 0] [--image-size 32] [--neighbours 10]
"""
import argparse
import time

import pandas as pd

from clipmem_lib import audit, imagefeatures
from clipmem_lib.claims import paired_interval
from clipmem_lib.loaders import cjk_available, load_cjk, load_openclipart, openclipart_available
from clipmem_lib.scenes import SceneConfig, make_scenes
from clipmem_lib.splits import plant_miscaptions

TERMS = ("pixels", "colour histogram", "HOG", "pixels + HOG")
SCORES = {"consistency score": None, "images of caption-neighbours": "images_of_caption_neighbours",
          "captions of image-neighbours": "captions_of_image_neighbours"}


def image_terms(data, size: int) -> tuple[dict, dict]:
    """Each image term's unit rows of all pairs, and the seconds each took."""
    idx, rows, secs = range(len(data)), {}, {}
    makers = {"pixels": lambda: audit.pixel_vectors(data.images, idx, size),
              "colour histogram": lambda: imagefeatures.colour_histogram_vectors(data.images, idx, size),
              "HOG": lambda: imagefeatures.hog_vectors(data.images, idx, size),
              "pixels + HOG": lambda: imagefeatures.joint_vectors(rows["pixels"], rows["HOG"])}
    for term in TERMS:
        t0 = time.perf_counter()
        rows[term] = makers[term]()
        secs[term] = time.perf_counter() - t0
    return rows, secs


def detection_rows(data, rows: dict, rate: float, seed: int, k: int) -> list[dict]:
    """AUROC of the consistency score and of each neighbour term alone, per image term, at one planting."""
    planted = plant_miscaptions(data, range(len(data)), rate, seed=seed)
    truth = planted.meta["is_miscaptioned"].to_numpy()
    txt = audit.caption_vectors(" ".join(c) for c in planted.captions)
    out = []
    for term, img in rows.items():
        t0 = time.perf_counter()
        a, b = audit.neighbour_consistency(img, txt, k)
        df = pd.DataFrame(dict(images_of_caption_neighbours=a, captions_of_image_neighbours=b))
        for score, col in SCORES.items():
            s = audit.miscaption_score(df, audit.CONSISTENCY_EVIDENCE if col is None else {col: -1})
            out.append(dict(seed=seed, term=term, score=score, auroc=audit.detection_metrics(truth, s)["auroc"],
                            seconds=time.perf_counter() - t0))
    return out


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per set, score and image term: the AUROC's mean and 95% t-interval, and the paired difference from pixels."""
    out = {}
    for (name, score), part in table.groupby(["set", "score"], sort=False):
        wide = part.pivot(index="seed", columns="term", values="auroc")
        for term in TERMS:
            mean, low, high, n = paired_interval(wide[term])
            d, dlow, dhigh, _ = paired_interval(wide[term] - wide["pixels"])
            out[(name, score, term)] = dict(auroc=mean, low=low, high=high, minus_pixels=d, diff_low=dlow,
                                            diff_high=dhigh, n_seeds=n)
    return pd.DataFrame.from_dict(out, orient="index").rename_axis(["set", "score", "image term"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", nargs="+", default=["scenes", "cjk", "openclipart"], choices=["scenes", "cjk", "openclipart"])
    ap.add_argument("--pairs", type=int, default=4000, help="pairs of each set (a seeded sample of CJK and openclipart)")
    ap.add_argument("--rate", type=float, default=0.1, help="share of the captions swapped")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=0, help="plantings first-seed .. first-seed + seeds - 1")
    ap.add_argument("--image-size", type=int, default=32, help="side of the images and of their vectors in pixels")
    ap.add_argument("--neighbours", type=int, default=10, help="k of the neighbour terms (the audit's default)")
    a = ap.parse_args()
    makers = {"scenes": (lambda: True, lambda: make_scenes(SceneConfig(n=a.pairs, seed=0, image_size=a.image_size))),
              "cjk": (cjk_available, lambda: load_cjk(a.pairs, image_size=a.image_size, seed=0)),
              "openclipart": (openclipart_available, lambda: load_openclipart(a.pairs, image_size=a.image_size, seed=0))}
    tables = []
    for name in a.sets:
        available, make = makers[name]
        if not available():
            print(f"{name}: skipped, its Debian packages are not installed (make installs them where it can)")
            continue
        t0 = time.perf_counter()
        data = make()
        t_load = time.perf_counter() - t0
        rows, secs = image_terms(data, a.image_size)
        t1 = time.perf_counter()
        table = pd.DataFrame([r for s in range(a.first_seed, a.first_seed + a.seeds)
                              for r in detection_rows(data, rows, a.rate, s, a.neighbours)]).assign(set=name)
        tables.append(table)
        print(f"{name}: {len(data)} pairs ({data.name}), loaded in {t_load:.1f} s; image vectors "
              + ", ".join(f"{t} {rows[t].shape[1]} dims {secs[t]:.1f} s" for t in TERMS)
              + f"; {a.seeds} plantings x {len(TERMS)} terms scored in {time.perf_counter() - t1:.1f} s")
    if not tables:
        raise SystemExit("no set to measure")
    with pd.option_context("display.width", 220, "display.max_columns", 20, "display.float_format", "{:.3f}".format):
        print(summary(pd.concat(tables)))


if __name__ == "__main__":
    main()
