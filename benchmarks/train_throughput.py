"""Training throughput: the library's trainer vs a bare open_clip loop on the same model and batches.

Prints samples/s for each and their ratio (trainer / bare; 1.0 = no overhead): the trainer eager and
compiled (``torch.compile`` of the forward, what a book-sized training uses: ClipJob.compile), its
compiled rate counted after the first epoch (the compile itself is printed apart), against the bare loop
eager; plus the effect of the trimmed vocabulary (CPU_SCALE.md measured 1.75×).  Each figure is the
median of ``--repeats`` runs, with the range.
Usage: python benchmarks/train_throughput.py [--steps 60 --repeats 3]
"""
import argparse
import math
import statistics
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


def trainer_rate(model, data, tokens, n, batch, device, compile):
    """(samples/s of the trainer over epochs 2 and 3, seconds the first epoch took beyond them: the compile)."""
    hist = train_clip(model, data.images, tokens, range(n), TrainConfig(epochs=3, batch_size=batch), device=device,
                      progress=False, compile=compile)
    rate = statistics.mean(h["samples_per_s"] for h in hist[1:])
    return rate, hist[0]["seconds"] - statistics.mean(h["seconds"] for h in hist[1:])


def spread(values) -> str:
    return f"{statistics.median(values):6.0f} (range {min(values):.0f}-{max(values):.0f})"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30, help="steps per epoch")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3, help="runs of each measurement (median and range printed)")
    ap.add_argument("--model", default="clipmem-tiny")
    ap.add_argument("--image-size", type=int, default=32, help="rendered size (resized to the model's input)")
    a = ap.parse_args()
    device = default_device()
    n = a.steps * a.batch
    data = make_scenes(SceneConfig(n=n + a.batch, image_size=a.image_size, seed=0))
    tok = tokenizer_for(a.model, data)
    tokens = tok.tokenize_pairs(data)
    bare_loop(model_for(a.model, tok), data.images, tokens, 3, a.batch, device)  # warm-up
    bare, eager, compiled, compile_s = [], [], [], []
    for _ in range(a.repeats):  # interleaved, so a slow spell of the machine hits all three alike
        bare.append(bare_loop(model_for(a.model, tok), data.images, tokens, a.steps, a.batch, device))
        eager.append(trainer_rate(model_for(a.model, tok), data, tokens, n, a.batch, device, False)[0])
        r, c = trainer_rate(model_for(a.model, tok), data, tokens, n, a.batch, device, True)
        compiled.append(r)
        compile_s.append(c)
    b = statistics.median(bare)
    print(f"bare open_clip loop, eager           {spread(bare)} samples/s")
    print(f"clipmem_lib trainer, eager           {spread(eager)} samples/s | ratio trainer/bare {statistics.median(eager) / b:.2f}")
    print(f"clipmem_lib trainer, torch.compile   {spread(compiled)} samples/s | ratio trainer/bare {statistics.median(compiled) / b:.2f}"
          f" | compile {spread(compile_s)} s")
    if tok.table is not None:
        full = tokenizer_for(a.model, data, trim=False)
        rate = trainer_rate(model_for(a.model, full), data, full.tokenize_pairs(data), n, a.batch, device, False)[0]
        print(f"trimmed / full vocabulary speed-up (trainer, eager): {statistics.median(eager) / rate:.2f}x")
    print(f"on {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else f'{torch.get_num_threads()} threads'}),"
          f" model {a.model}, batch {a.batch}, {a.steps} steps per epoch, {a.repeats} repeats")


if __name__ == "__main__":
    main()
