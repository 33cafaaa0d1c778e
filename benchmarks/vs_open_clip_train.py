"""Training throughput: this project's trainer vs ``open_clip_train`` (OpenCLIP's reference training script).

Both train the same model config (clipmem-tiny, from scratch) on the same OpenCLIP CSV of built-in
scenes (32-px PNG files, one caption each), batch 128, AdamW lr 1.2e-3 wd 0.1, 5 % warm-up, fp32 on
CPU, with the same torch thread count.  Epoch 0 is warm-up for both (it decodes every PNG; epochs 1..
hit the trainer's decoded-pixel cache when --workers 0); samples/s is the median over epochs 1..E-1.  The trainer
uses its defaults, so also its trimmed vocabulary and context (``tokenizer_for``); ``--full-vocab``
gives it open_clip's full one, as ``open_clip_train`` has.  Nothing is downloaded.

Usage: python benchmarks/vs_open_clip_train.py [--pairs 1600] [--epochs 6] [--workers 0]
       python benchmarks/vs_open_clip_train.py --model ViT-B-32 --device cuda --image-size 224   # a GPU: bf16 for both
"""
import argparse
import contextlib
import csv
import io
import logging
import os
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # belt and braces: no pretrained weights, tokenizer ships with open_clip

import numpy as np
import torch
from PIL import Image

from clipmem_lib.loaders import load_csv
from clipmem_lib.models import model_for, tokenizer_for  # registers clipmem-tiny with open_clip
from clipmem_lib.scenes import SceneConfig, make_scenes
from clipmem_lib.train import TrainConfig, train_clip

def write_csv(folder, n, size=32):
    """``n`` scenes as PNG files plus a tab-separated OpenCLIP CSV (filepath, title)."""
    data = make_scenes(SceneConfig(n=n, image_size=size, seed=0))
    rows = []
    for i in range(n):
        path = os.path.join(folder, f"{i:06d}.png")
        Image.fromarray(data.images.load(i, 0, size).permute(1, 2, 0).numpy()).save(path)
        rows.append((path, data.captions[i][0]))
    csv_path = os.path.join(folder, "train.csv")
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f, delimiter="\t")
        w.writerow(["filepath", "title"])
        w.writerows(rows)
    return csv_path


def stub_webdataset_imports():
    """open_clip_train.data imports braceexpand and webdataset at the top, but its CSV path uses neither;
    where they are not installed, empty stand-ins let it import (nothing is installed or downloaded)."""
    import importlib.util
    import sys
    import types

    for top, names in (("braceexpand", ["braceexpand"]),
                       ("webdataset", ["webdataset", "webdataset.filters", "webdataset.tariterators"])):
        if top in sys.modules or importlib.util.find_spec(top) is not None:
            continue
        for name in names:
            mod = types.ModuleType(name)
            mod.__getattr__ = lambda attr, _n=name: type(attr, (), {"__module__": _n})  # any name: a dummy class
            sys.modules[name] = mod


def run_open_clip_train(csv_path, logs, a, warmup_steps):
    """``open_clip_train.main.main`` in-process; returns per-epoch (seconds, samples)."""
    stub_webdataset_imports()
    import open_clip_train.main as oct_main

    epochs, real = [], oct_main.train_one_epoch

    def timed(model, data, *args, **kw):
        t0 = time.perf_counter()
        real(model, data, *args, **kw)
        epochs.append((time.perf_counter() - t0, data["train"].dataloader.num_batches * a.batch))

    argv = ["--train-data", csv_path, "--dataset-type", "csv", "--csv-img-key", "filepath",
            "--csv-caption-key", "title", "--csv-separator", "\t", "--model", a.model, "--batch-size", str(a.batch),
            "--epochs", str(a.epochs), "--lr", "1.2e-3", "--wd", "0.1", "--warmup", str(warmup_steps),
            "--workers", str(a.workers), "--device", a.device, "--precision", precision(a), "--logs", logs,
            "--name", "bench", "--save-frequency", "0", "--report-to", "", "--seed", "0", "--log-every-n-steps", "100"]
    handlers, log = list(logging.root.handlers), io.StringIO()
    levels = {n: lg.level for n, lg in logging.root.manager.loggerDict.items() if isinstance(lg, logging.Logger)}
    levels[None] = logging.root.level
    oct_main.train_one_epoch = timed
    try:
        with contextlib.redirect_stderr(log):  # its logging handler writes to this stderr
            rc = oct_main.main(argv)
    except BaseException:
        print(log.getvalue()[-4000:])
        raise
    finally:
        oct_main.train_one_epoch = real
        logging.root.handlers[:] = handlers  # undo its setup_logging (it sets every logger to INFO)
        for n, lg in logging.root.manager.loggerDict.items():
            if isinstance(lg, logging.Logger):
                lg.setLevel(levels.get(n, logging.NOTSET))
        logging.root.setLevel(levels[None])
    if a.verbose:
        print(log.getvalue())
    if rc not in (None, 0) or len(epochs) != a.epochs:
        raise RuntimeError(f"open_clip_train returned {rc} after {len(epochs)} epochs:\n{log.getvalue()[-4000:]}")
    return epochs


def run_trainer(csv_path, a):
    data = load_csv(csv_path)
    if a.cache_bytes is not None:
        data.images.cache_bytes = a.cache_bytes
    tok = tokenizer_for(a.model, data, trim=False if a.full_vocab else None)
    tokens = tok.tokenize_pairs(data)
    model = model_for(a.model, tok)
    hist = train_clip(model, data.images, tokens, np.arange(len(data)), TrainConfig(epochs=a.epochs, batch_size=a.batch),
                      device=a.device, progress=False, num_workers=a.workers)
    return [(h["seconds"], h["samples_per_s"] * h["seconds"]) for h in hist], tok


def data_cache(a):
    from clipmem_lib.data import DEFAULT_CACHE_BYTES
    b = DEFAULT_CACHE_BYTES if a.cache_bytes is None else a.cache_bytes
    return f"{b / 2**20:g} MiB" if b else "off"


def precision(a) -> str:
    """What both train in: the trainer's bf16 autocast on CUDA, fp32 on the CPU."""
    return "amp_bf16" if a.device.startswith("cuda") else "fp32"


def rate(epochs):
    """Median samples/s of epochs 1.. (epoch 0 is warm-up; the median shrugs off a burst of other work)."""
    return float(np.median([n / t for t, n in epochs[1:]]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=1600)
    ap.add_argument("--epochs", type=int, default=6, help="≥ 2; epoch 0 is warm-up")
    ap.add_argument("--workers", type=int, default=0, help="DataLoader workers, for both")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads, for both")
    ap.add_argument("--full-vocab", action="store_true", help="the trainer uses open_clip's full vocabulary and context")
    ap.add_argument("--cache-bytes", type=int, default=None, help="the trainer's decoded-pixel cache (default: "
                    "the library's, 1 GiB; 0 disables)")
    ap.add_argument("--verbose", action="store_true", help="show open_clip_train's log")
    ap.add_argument("--model", default="clipmem-tiny", help="open_clip config for both (default: clipmem-tiny)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (then bf16 autocast for both)")
    ap.add_argument("--image-size", type=int, default=32, help="side of the scenes written to the CSV")
    a = ap.parse_args()
    if a.epochs < 2 or a.pairs < a.batch:
        ap.error("need --epochs ≥ 2 and --pairs ≥ --batch")
    torch.set_num_threads(a.threads)
    steps = a.pairs // a.batch * a.epochs
    with tempfile.TemporaryDirectory() as tmp:
        csv_path = write_csv(tmp, a.pairs, a.image_size)
        oct_epochs = run_open_clip_train(csv_path, os.path.join(tmp, "logs"), a, round(0.05 * steps))
        ours_epochs, tok = run_trainer(csv_path, a)
    theirs, ours = rate(oct_epochs), rate(ours_epochs)
    vocab = "full vocab" if tok.table is None else f"trimmed vocab {tok.vocab_size}, context {tok.context_length}"
    print(f"{a.pairs} pairs, {a.epochs} epochs (epoch 0 = warm-up; median of epochs 1..), batch {a.batch}, workers {a.workers}, "
          f"{torch.get_num_threads()} threads, model {a.model}, {a.device} {precision(a)}")
    print(f"open_clip_train      {theirs:8.0f} samples/s  (epoch seconds {', '.join(f'{t:.2f}' for t, _ in oct_epochs)})")
    print(f"clipmem_lib trainer  {ours:8.0f} samples/s  (epoch seconds {', '.join(f'{t:.2f}' for t, _ in ours_epochs)}; "
          f"{vocab}, pixel cache {data_cache(a)})")
    print(f"ratio trainer/open_clip_train {ours / theirs:.2f}")


if __name__ == "__main__":
    main()
