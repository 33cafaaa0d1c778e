"""Training throughput on image files (the paper-scale path): JPEG decoding in the main process vs in
DataLoader workers.  Writes COCO-sized JPEGs (640×480) and an OpenCLIP CSV to a temporary folder,
loads them with ``loaders.load_csv`` and trains one epoch per setting.  Prints samples/s and ratios.

    python benchmarks/data_loading.py --model ViT-B-32 --n 2048 --workers 0 4 8     # on a GPU
    python benchmarks/data_loading.py --n 512 --workers 0 2                         # CPU, tiny model
"""
import argparse
import os
import tempfile
import time

import numpy as np
import torch
from PIL import Image

from clipmem_lib.loaders import load_csv
from clipmem_lib.models import model_for, tokenizer_for
from clipmem_lib.runtime import default_device
from clipmem_lib.train import TrainConfig, train_clip


def write_jpegs(folder: str, n: int, seed: int = 0) -> str:
    """n smooth-gradient-plus-noise JPEGs (about the size of a COCO image file) and a CSV naming them."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:480, 0:640] / 640.0
    rows = ["filepath\ttitle"]
    for i in range(n):
        a = rng.uniform(0, 255, (3, 1, 1)) * xx + rng.uniform(0, 255, (3, 1, 1)) * yy
        img = np.clip(a.transpose(1, 2, 0) + rng.normal(0, 20, (480, 640, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(os.path.join(folder, f"{i:06d}.jpg"), quality=85)
        rows.append(f"{i:06d}.jpg\ta picture number {i % 97} with colour {i % 13}")
    path = os.path.join(folder, "pairs.csv")
    with open(path, "w") as f:
        f.write("\n".join(rows) + "\n")
    return path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="clipmem-tiny")
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    a = ap.parse_args()
    device = default_device()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        data = load_csv(write_jpegs(tmp, a.n))
        print(f"wrote and indexed {a.n} JPEGs (640x480) in {time.perf_counter() - t0:.1f} s")
        tok = tokenizer_for(a.model, data)
        tokens = tok.tokenize_pairs(data)
        rate = {}
        for w in a.workers:
            m = model_for(a.model, tok)
            hist = train_clip(m, data.images, tokens, range(len(data)), TrainConfig(epochs=2, batch_size=a.batch),
                              device=device, progress=False, num_workers=w)
            rate[w] = hist[-1]["samples_per_s"]  # the second epoch: workers and kernels warm
            print(f"num_workers={w:2d}: {rate[w]:7.0f} samples/s (epoch 2), ratio to num_workers={a.workers[0]}: "
                  f"{rate[w] / rate[a.workers[0]]:.2f}")
    print(f"on {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else f'{os.cpu_count()} CPUs'}), "
          f"model {a.model}, batch {a.batch}")


if __name__ == "__main__":
    main()
