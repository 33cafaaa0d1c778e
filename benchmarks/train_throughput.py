"""Training throughput: the library's trainer vs a bare open_clip loop on the same model and batches.

Prints samples/s for each and their ratio (trainer / bare; 1.0 = no overhead), plus the effect of
the trimmed vocabulary (CPU_SCALE.md measured 1.75×).  Usage: python benchmarks/train_throughput.py [--steps 30]
"""
import argparse
import math
import time

import torch
from open_clip.loss import ClipLoss

from clipmem_lib.augment import to_model_input
from clipmem_lib.models import image_size, model_for, tokenizer_for
from clipmem_lib.scenes import SceneConfig, make_scenes
from clipmem_lib.runtime import default_device
from clipmem_lib.train import TrainConfig, train_clip


def bare_loop(model, images, tokens, steps, batch, device):
    """The minimal open_clip loop: forward (bf16 autocast on CUDA, as the trainer), ClipLoss, AdamW step,
    logit-scale clamp; no augmentation."""
    model.to(device).train()
    opt, loss_fn = torch.optim.AdamW(model.parameters(), lr=1.2e-3), ClipLoss()
    size = image_size(model)
    t0 = time.perf_counter()
    for s in range(steps):
        idx = torch.arange(s * batch, (s + 1) * batch) % len(images)
        pixels = images.batch(idx, [0] * len(idx), size)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            img_f, txt_f, scale = model(to_model_input(pixels.to(device)), tokens[idx, 0].to(device))
            loss = loss_fn(img_f, txt_f, scale)
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--model", default="clipmem-tiny")
    ap.add_argument("--image-size", type=int, default=32, help="rendered size (resized to the model's input)")
    a = ap.parse_args()
    device = default_device()
    data = make_scenes(SceneConfig(n=a.steps * a.batch // 2 + a.batch, image_size=a.image_size, seed=0))
    n = a.steps * a.batch // 2  # two epochs of `steps / 2` steps each for the trainer
    tok = tokenizer_for(a.model, data)
    full = tokenizer_for(a.model, data, trim=False)
    rows = {}
    tokenizers = (("trimmed vocab", tok), ("full vocab", full)) if tok.table is not None else (("full vocab", full),)
    for name, t in tokenizers:
        tokens = t.tokenize_pairs(data)
        bare_loop(model_for(a.model, t), data.images, tokens, 3, a.batch, device)  # warm-up
        bare = bare_loop(model_for(a.model, t), data.images, tokens, a.steps, a.batch, device)
        m = model_for(a.model, t)
        t0 = time.perf_counter()
        train_clip(m, data.images, tokens, range(n), TrainConfig(epochs=2, batch_size=a.batch), device=device,
                   progress=False)
        ours = a.steps * a.batch / (time.perf_counter() - t0)
        rows[name] = (bare, ours)
        print(f"{name:14s} bare open_clip loop {bare:8.0f} samples/s | clipmem_lib trainer {ours:8.0f} samples/s "
              f"| ratio trainer/bare {ours / bare:.2f}")
    if "trimmed vocab" in rows:
        print(f"trimmed / full vocabulary speed-up (trainer): {rows['trimmed vocab'][1] / rows['full vocab'][1]:.2f}x")
    print(f"on {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else f'{torch.get_num_threads()} threads'}),"
          f" model {a.model}, batch {a.batch}")


if __name__ == "__main__":
    main()
