"""DINO training throughput (Sec. 4.5's self-supervised baseline): each step's 2 + n_local crops sent
through the student one view at a time (what train_dino did before) or all in one batched forward (what
it does now, and the teacher's 2 global views likewise), in a bare loop over the same tower, head, loss
and crops, beside the library's ``train_dino``.  Prints samples/s (median of ``--repeats`` interleaved
runs, with the range) and the ratios.
Usage: python benchmarks/dino_throughput.py [--steps 12 --repeats 3 --model clipmem-tiny]
"""
import argparse
import copy
import statistics
import time

import torch
from lightly.loss import DINOLoss
from lightly.models.modules import DINOProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum

from clipmem_lib.augment import random_resized_crop, to_model_input
from clipmem_lib.models import image_size
from clipmem_lib.scenes import SceneConfig, make_scenes
from clipmem_lib.vision import VisionConfig, teacher_momentum, train_dino, vision_tower
from train_throughput import spread  # benchmarks/ is on the path when this script runs


def bare_dino(model, images, steps, batch, cfg, batched):
    """DINO steps with AdamW: per-view forwards (``batched`` False) or one forward per network."""
    tower = vision_tower(model)
    dim = tower.output_dim
    head, t_head = (DINOProjectionHead(dim, 4 * dim, min(256, dim), cfg.out_dim) for _ in range(2))
    t_head.load_state_dict(head.state_dict())  # built fresh, as in train_dino: deepcopy fails on its weight norm
    student = torch.nn.Sequential(tower, head).train()
    teacher = torch.nn.Sequential(copy.deepcopy(tower), t_head).train()
    deactivate_requires_grad(teacher)
    loss_fn, opt = DINOLoss(cfg.out_dim, warmup_teacher_temp_epochs=0), torch.optim.AdamW(student.parameters(), lr=cfg.lr)
    gen, size = torch.Generator().manual_seed(0), image_size(tower)
    t0 = time.perf_counter()
    for s in range(steps):
        idx = torch.arange(s * batch, (s + 1) * batch) % len(images)
        x = to_model_input(images.batch(idx, [0] * len(idx), size))
        update_momentum(student, teacher, teacher_momentum(s, steps, cfg.momentum))
        glob = [random_resized_crop(x, gen, cfg.global_scale) for _ in range(2)]
        local = [random_resized_crop(x, gen, cfg.local_scale) for _ in range(cfg.n_local)]
        with torch.no_grad():
            t_out = list(teacher(torch.cat(glob)).chunk(2)) if batched else [teacher(v) for v in glob]
        views = glob + local
        s_out = list(student(torch.cat(views)).chunk(len(views))) if batched else [student(v) for v in views]
        loss = loss_fn(t_out, s_out, epoch=0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return steps * batch / (time.perf_counter() - t0)


def library_rate(model, data, n, cfg):
    """samples/s of ``train_dino`` over its epochs after the first."""
    hist = train_dino(vision_tower(model), data.images, range(n), cfg, device="cpu", progress=False)
    return statistics.mean(h["samples_per_s"] for h in hist[1:])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=12, help="steps per measurement (and per epoch of train_dino)")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model", default="clipmem-tiny")
    a = ap.parse_args()
    cfg = VisionConfig(epochs=3, batch_size=a.batch)
    n = a.steps * a.batch
    data = make_scenes(SceneConfig(n=n, seed=0))
    bare_dino(a.model, data.images, 2, a.batch, cfg, True)  # warm-up
    per_view, batched, lib = [], [], []
    for _ in range(a.repeats):  # interleaved, so a slow spell of the machine hits all three alike
        per_view.append(bare_dino(a.model, data.images, a.steps, a.batch, cfg, False))
        batched.append(bare_dino(a.model, data.images, a.steps, a.batch, cfg, True))
        lib.append(library_rate(a.model, data, n, cfg))
    p = statistics.median(per_view)
    print(f"bare DINO loop, one forward per view   {spread(per_view)} samples/s")
    print(f"bare DINO loop, views batched          {spread(batched)} samples/s | batched/per-view {statistics.median(batched) / p:.2f}")
    print(f"clipmem_lib train_dino (batched)       {spread(lib)} samples/s | library/per-view bare {statistics.median(lib) / p:.2f}")
    print(f"on cpu ({torch.get_num_threads()} threads), model {a.model}, batch {a.batch}, {2 + cfg.n_local} views, "
          f"{a.steps} steps, {a.repeats} repeats")


if __name__ == "__main__":
    main()
