"""Sweeps on a CPU: ``fit_many`` with n_jobs=1 (one training at a time, all threads) vs n_jobs=2 (two
one-thread worker processes).  Prints the wall time of each and the speed-up.

Usage: python benchmarks/parallel_sweep.py [--models 4 --pairs 1000 --epochs 10]
"""
import argparse
import tempfile
import time

from clipmem_lib import experiment as ex
from clipmem_lib.scenes import make_scenes
from clipmem_lib.store import RunStore
from clipmem_lib.train import TrainConfig


def sweep(data, n_models, epochs, n_jobs, root):
    jobs = [ex.ClipJob(data, range(len(data)), config=TrainConfig(epochs=epochs, seed=s)) for s in range(n_models)]
    t0 = time.perf_counter()
    ex.fit_many(jobs, ex.Context(RunStore(root), device="cpu", progress=False, n_jobs=n_jobs))
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", type=int, default=4)
    ap.add_argument("--pairs", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=10)
    a = ap.parse_args()
    data = make_scenes(n=a.pairs)
    times = {}
    for n_jobs in (1, 2):
        with tempfile.TemporaryDirectory() as root:
            times[n_jobs] = sweep(data, a.models, a.epochs, n_jobs, root)
        print(f"n_jobs={n_jobs}: {a.models} models of {a.pairs} pairs x {a.epochs} epochs in {times[n_jobs]:.1f} s "
              f"({a.models * a.pairs * a.epochs / times[n_jobs]:.0f} samples/s)")
    print(f"speed-up of n_jobs=2: {times[1] / times[2]:.2f}x")


if __name__ == "__main__":
    main()
