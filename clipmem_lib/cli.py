"""The ``clipmem`` command: audit your own image–caption data with cross-fitted CLIPMem.

    clipmem audit pairs.csv --out audit/                       # train K models, score every pair, write the report
    clipmem audit pairs.csv --out audit/ --fold 3              # one fold's model only (e.g. a SLURM array task)
    clipmem audit /data/coco --out audit/ --folds 5 --device cuda --model ViT-B-32
    clipmem audit pairs.csv --out audit/ --review-sample 200   # also review.csv: 200 random pairs to mark
    clipmem audit pairs.csv --out audit/ --reviewed review.csv --drop reviewed   # clean.csv without those marked wrong

Options are named like ``open_clip_train``'s.  PATH is an OpenCLIP CSV, a COCO root or a webdataset shard
pattern.  Trained models go to a run store (``--runs``, default ``OUT/runs``), so an interrupted audit
resumes, and a final call without ``--fold`` reuses the folds trained by separate jobs.  Bad input exits
with status 2 and one line naming the problem.
"""
from __future__ import annotations

import argparse
import pathlib
import sys

__all__ = ["main", "load_pairs"]


def load_pairs(path: str, img_key: str = "filepath", caption_key: str = "title", sep: str = "\t"):
    """A :class:`~clipmem_lib.data.PairData` from PATH: a COCO root (a folder holding
    ``annotations/captions_train2017.json``), a webdataset pattern (``{..}`` or ``.tar``) or a CSV."""
    from . import loaders
    from .datasets import load_dataset

    kind = _kind_of(path)
    if kind == "coco":
        return load_dataset("coco", path)
    if kind == "webdataset":
        return loaders.load_webdataset(path)
    return loaders.load_csv(path, img_key=img_key, caption_key=caption_key, sep=sep)


def _kind_of(path: str) -> str:
    """"coco" (a folder), "webdataset" (a shard pattern) or "csv"."""
    if pathlib.Path(path).is_dir():
        return "coco"
    return "webdataset" if "{" in path or path.endswith(".tar") else "csv"


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="clipmem", description="Memorisation audits of image-caption data "
                                 "(Captured by Captions, ICLR 2025).")
    sub = ap.add_subparsers(dest="command", required=True)
    a = sub.add_parser("audit", help="score every pair by cross-fitted CLIPMem and write scores.csv and report.html",
                       description=__doc__.split("\n\n")[0])
    a.add_argument("path", help="OpenCLIP CSV, COCO root, or webdataset shard pattern")
    a.add_argument("--out", required=True, help="output folder for scores.csv and report.html")
    a.add_argument("--csv-img-key", default="filepath", help="CSV column of image paths (default: filepath)")
    a.add_argument("--csv-caption-key", default="title", help="CSV column of captions (default: title)")
    a.add_argument("--csv-separator", default="\t", help="CSV separator (default: tab)")
    a.add_argument("--folds", type=int, default=5, help="K, from 2 to 10: K models, each trained without one fold")
    a.add_argument("--fold", type=int, default=None, help="train only this fold's model (1..K) and stop")
    a.add_argument("--model", default="clipmem-tiny", help="open_clip config (clipmem-tiny, clipmem-small, ViT-B-32, …)")
    a.add_argument("--epochs", type=int, default=40, help="training epochs per fold model (default 40)")
    a.add_argument("--batch-size", type=int, default=128, help="training batch size (default 128)")
    a.add_argument("--lr", type=float, default=1.2e-3, help="peak learning rate (default 1.2e-3)")
    a.add_argument("--image-size", type=int, default=None, help="image side in pixels (default: the model's)")
    a.add_argument("--device", default=None, help="cpu, cuda or cuda:k (default: CUDA if visible)")
    a.add_argument("--seed", type=int, default=0, help="seed of the folds, the initialisation and the batch order")
    a.add_argument("--workers", type=int, default=0, help="DataLoader workers decoding images (default 0)")
    a.add_argument("--runs", default=None, help="run store of the trained models (default: OUT/runs)")
    a.add_argument("--executor", default="local", choices=["local", "submitit"],
                   help="where the fold models train: here (default), or one submitit job each (SLURM where "
                        "available; the run store must be on a filesystem the jobs share)")
    a.add_argument("--top", type=int, default=50, help="pairs in each gallery of report.html (default 50)")
    a.add_argument("--drop", default=None, metavar="K|reviewed", help="write OUT/clean.csv: the input CSV without the K "
                   "pairs most suspect of a wrong caption, or ('reviewed') without those marked wrong in --reviewed")
    a.add_argument("--review-sample", type=int, default=None, metavar="N", help="add N random pairs to report.html "
                   "and write OUT/review.csv (image, caption, an empty caption_ok) for you to mark")
    a.add_argument("--reviewed", default=None, metavar="FILE", help="your marks (review.csv, or the report's download: "
                   "caption_ok yes/no): estimate how many captions are wrong, and what --drop reviewed leaves out")
    a.add_argument("--quiet", action="store_true", help="no progress bars")
    return ap


def _audit(args) -> int:
    import numpy as np

    from .audit import (assign_folds, check_images, crossfit_jobs, input_problems, read_review, review_sample,
                        score_crossfit, write_audit, write_clean_csv)
    from .fitting import fit, fit_many
    from .models import image_size, model_config, sized
    from .runtime import Context
    from .store import RunStore
    from .train import TrainConfig

    name = sized(args.model, args.image_size)
    size = model_config(name)["vision_cfg"]["image_size"]  # an unknown model fails here, before any data is read
    size = size[0] if isinstance(size, (list, tuple)) else int(size)
    out = pathlib.Path(args.out).resolve()
    ctx = Context(store=RunStore(pathlib.Path(args.runs).resolve() if args.runs else out / "runs"), device=args.device,
                  progress=not args.quiet, num_workers=args.workers, executor=args.executor)
    drop = _drop_count(args.drop)
    if drop == "reviewed" and args.reviewed is None:
        raise ValueError("--drop reviewed leaves out the pairs marked wrong in --reviewed FILE; give that file")
    if (drop is not None or args.review_sample is not None or args.reviewed) and _kind_of(args.path) != "csv":
        raise ValueError(f"--drop, --review-sample and --reviewed name pairs by a CSV's image column; {args.path} is not a CSV")
    data = load_pairs(args.path, args.csv_img_key, args.csv_caption_key, args.csv_separator)
    marks = read_review(args.reviewed, data.meta.filepath, args.csv_img_key) if args.reviewed else None
    warnings, pool = input_problems(data)
    for line in warnings:
        print(f"clipmem audit: warning: {line}", file=sys.stderr)
    folds = assign_folds(len(data), args.folds, args.seed, pool)
    sample = review_sample(pool, args.review_sample, args.seed) if args.review_sample is not None else ()
    if args.fold is not None and not 1 <= args.fold <= args.folds:
        raise ValueError(f"--fold {args.fold}: choose a fold from 1 to {args.folds}")
    check_images(data, size, progress=not args.quiet)
    smallest = len(pool) - int(np.bincount(folds[folds >= 0]).max())  # pairs the smallest fold model trains on
    batch = min(args.batch_size, smallest)
    if batch < args.batch_size:
        print(f"clipmem audit: batch size {batch}, not {args.batch_size}: a fold model trains on only {smallest} pairs",
              file=sys.stderr)
    config = TrainConfig(epochs=args.epochs, batch_size=batch, lr=args.lr, seed=args.seed)
    jobs = crossfit_jobs(data, folds, name, config)
    if args.fold is not None:
        m = fit(jobs[args.fold - 1], ctx)
        print(f"fold {args.fold} of {args.folds}: model stored in {m.path}")
        return 0
    models = fit_many(jobs, ctx)
    scores, synthetic, choice = score_crossfit(models, data, folds, seed=args.seed, ctx=ctx, return_synthetic=True)
    paths = write_audit(scores, data, out, k=args.top, synthetic=synthetic, choice=choice, sample=sample, marks=marks,
                        img_key=args.csv_img_key, caption_key=args.csv_caption_key, seed=args.seed)
    s = paths["summary"]
    top = scores.sort_values("miscaption_score", ascending=False).head(3)["index"].to_numpy()
    print(f"{len(pool)} pairs scored with {args.folds} folds ({name}, {args.epochs} epochs); at most "
          f"{s['wrong_upper_bound']} captions look wrong (an upper bound, bootstrap 95% interval "
          f"{s['wrong_upper_bound_low']}-{s['wrong_upper_bound_high']}); most suspect: pairs "
          f"{', '.join(str(int(i)) for i in np.atleast_1d(top))}")
    if "wrong_estimate" in s:
        print(f"from your marks on {s['n_reviewed']} random pairs: about {s['wrong_estimate']:.0f} wrong "
              f"(95% interval {s['wrong_low']:.0f}-{s['wrong_high']:.0f})")
    elif marks is not None:
        print(f"{s['n_marked']} pairs marked, none of them from a random sample (sample=random): no estimate of how many "
              "are wrong")
    print(f"scores: {paths['scores_csv']}\nreport: {paths['report_html']}\nsummary: {paths['summary_json']}")
    if "review_csv" in paths:
        print(f"review: {paths['review_csv']} ({len(sample)} random pairs: mark caption_ok yes or no, then --reviewed)")
    if drop is not None:
        if drop == "reviewed":
            gone_paths = marks.image[~marks.ok].to_numpy()
        else:
            ranked = scores.sort_values("miscaption_score", ascending=False)["index"].to_numpy()
            gone_paths = data.meta.filepath.to_numpy()[ranked[:drop]]
        n_rows = write_clean_csv(args.path, out / "clean.csv", gone_paths, img_key=args.csv_img_key, sep=args.csv_separator)
        print(f"clean: {out / 'clean.csv'} ({len(gone_paths)} pairs, {n_rows} rows left out)")
    return 0


def _drop_count(value):
    """--drop's value: None, "reviewed" or a count of pairs ≥ 0; "auto" is refused (it would delete on a guess)."""
    if value is None or value == "reviewed":
        return value
    if value == "auto":
        raise ValueError("--drop auto no longer guesses which captions are wrong (the audit only bounds how many); "
                         "mark a random sample (--review-sample N, then --reviewed FILE --drop reviewed) or drop the K "
                         "most suspect (--drop K)")
    if not value.isdigit():
        raise ValueError(f"--drop {value!r}: give a number of pairs or 'reviewed'")
    return int(value)


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _audit(args)
    except (ValueError, FileNotFoundError, KeyError) as e:  # bad input: one line, status 2; stored models stay
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"clipmem {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
