"""Training CLIP from scratch with the paper's recipe (Sec. 4.1, Table 2), resumable and repeatable.

AdamW, lr 1.2e-3, linear warm-up (in steps) then cosine decay, batch 128, open_clip's ``ClipLoss``
and random-resized-crop augmentation, ``logit_scale`` clamped to [0, ln 100] after every step, and
no weight decay on gains, biases and ``logit_scale`` (as open_clip_train does).  Options for the
later experiments: caption choice per step (first / random / balanced, Table 3; ``n_captions``,
Fig. 5a), image-variant choice (Table 1) and Gaussian noise on the text embeddings during training
only (Sec. 4.6, Table 8).  An ``open_clip.CoCa`` (App. A.6's second multimodal model) trains with the
same protocol on ``ClipLoss`` plus its captioning loss, weighted as open_clip_train's defaults.

Every random draw of epoch ``e`` comes from generators seeded by ``(seed, e)`` and indexed by
*position* in the training list, so (i) a resumed run equals an uninterrupted one, and (ii) f and g
trained on ``S_S + S_C`` and ``S_S + S_I`` see identical batches except that ``S_C[i]`` takes the
slot of ``S_I[i]`` (the "otherwise identical" of Eq. 4, CPU_SCALE.md finding 3).
"""
from __future__ import annotations

import dataclasses
import logging
import math
import os
from typing import Callable, Sequence

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from open_clip.loss import ClipLoss

from .augment import random_resized_crop, to_model_input
from .data import ImageSource
from .engine import fit_epochs
from .models import image_size, is_coca
from .runtime import resolve_device, timed

__all__ = ["TrainConfig", "train_clip", "choose_views", "noisy_text_features", "caption_loss", "COCA_LOSS_WEIGHTS",
           "NOISE_PLACEMENTS"]

NOISE_PLACEMENTS = ("raw", "normalized")  # where Table 8's text noise goes: raw features or the unit embedding

COCA_LOSS_WEIGHTS = dict(contrastive=1.0, caption=2.0)  # open_clip_train's --coca-{contrastive,caption}-loss-weight


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that changes what a trained model is (and so keys the run store)."""

    epochs: int = 80
    batch_size: int = 128
    lr: float = 1.2e-3
    weight_decay: float = 0.1
    warmup: float = 0.05                   # fraction of all steps (paper: 5 of 100 epochs)
    caption_mode: str = "first"            # "first" | "random" | "balanced"  (Table 3)
    n_captions: int = 5                    # captions available per image (Fig. 5a); first only uses 1
    image_variants: tuple[int, ...] = (0,)  # image variants drawn from (Table 1); 0 = original
    variant_mode: str = "random"           # "random" | "balanced"
    crop_scale: tuple[float, float] = (0.9, 1.0)
    text_noise_std: float = 0.0            # Gaussian noise on text embeddings, training only (Table 8)
    text_noise_at: str = "raw"             # "raw" features or the "normalized" embedding (renormalised)
    seed: int = 0

    def __post_init__(self):
        checks = {
            "epochs": self.epochs >= 1, "batch_size": self.batch_size >= 2, "lr": self.lr > 0,
            "warmup": 0 <= self.warmup < 1, "caption_mode": self.caption_mode in ("first", "random", "balanced"),
            "variant_mode": self.variant_mode in ("random", "balanced"), "n_captions": self.n_captions >= 1,
            "image_variants": len(self.image_variants) >= 1 and min(self.image_variants) >= 0,
            "crop_scale": 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1,
            "text_noise_std": self.text_noise_std >= 0, "text_noise_at": self.text_noise_at in NOISE_PLACEMENTS,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid TrainConfig value(s) for {bad}: " + ", ".join(f"{k}={getattr(self, k)!r}" for k in bad))

    def caption_ids(self) -> tuple[int, ...]:
        """The captions this run trains on (and that CLIPMem's first term averages over)."""
        return (0,) if self.caption_mode == "first" else tuple(range(self.n_captions))


def choose_views(n_pos: int, choices: Sequence[int], mode: str, epoch: int, seed: int, salt: int) -> np.ndarray:
    """Which caption (or image variant) each training position uses in ``epoch``.

    "first": ``choices[0]``; "random": uniform per step; "balanced": each position walks its own
    fixed permutation of ``choices``, so over ``len(choices)·m`` epochs every choice is used
    exactly ``m`` times (Table 3's balanced sampling).
    """
    choices = np.asarray(choices)
    if mode == "first" or len(choices) == 1:
        return np.full(n_pos, choices[0])
    if mode == "random":
        return choices[np.random.default_rng([seed, salt, epoch]).integers(0, len(choices), n_pos)]
    perm = np.random.default_rng([seed, salt]).permuted(np.tile(np.arange(len(choices)), (n_pos, 1)), axis=1)
    return choices[perm[:, epoch % len(choices)]]


def noisy_text_features(raw: torch.Tensor, std: float, at: str, generator: torch.Generator | None) -> torch.Tensor:
    """L2-normalised text embeddings with N(0, std²) noise added (Sec. 4.6); training only.

    ``at="raw"`` adds it to open_clip's raw text features, ``"normalized"`` to the unit embedding;
    either way the result is renormalised before the similarity.
    """
    if std == 0:
        return F.normalize(raw, dim=-1)
    x = raw if at == "raw" else F.normalize(raw, dim=-1)
    noise = torch.randn(x.shape, generator=generator, dtype=torch.float32).to(x.device, x.dtype) * std
    return F.normalize(x + noise, dim=-1)


def caption_loss(logits: torch.Tensor, labels: torch.Tensor, pad_id: int = 0) -> torch.Tensor:
    """CoCa's captioning loss (open_clip's ``CoCaLoss``, unweighted): mean cross-entropy of the decoder's
    next-token ``logits`` (B, L, V) against ``labels`` (B, L) over the tokens that are not padding."""
    return F.cross_entropy(logits.permute(0, 2, 1), labels, ignore_index=pad_id)


class _Forward(torch.nn.Module):
    """Image embeddings (normalised), raw text features, logit scale and the caption loss (CoCa, whose
    forward returns its text features normalised; None for CLIP) in one forward, so DDP can wrap it."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, image, text):
        m = self.model
        if not is_coca(m):
            return m.encode_image(image, normalize=True), m.encode_text(text), m.logit_scale.exp(), None
        out = m(image, text)  # teacher forcing: decoder logits from tokens [:-1], labels text[:, 1:]
        cap = caption_loss(out["logits"], out["labels"], m.pad_id)
        return out["image_features"], out["text_features"], out["logit_scale"], cap


@timed("training")
def train_clip(model, images: ImageSource, tokens: torch.Tensor, indices: Sequence[int], cfg: TrainConfig, *,
               device: torch.device | str | None = None, checkpoint: str | os.PathLike | None = None,
               progress: bool = True, num_workers: int = 0, desc: str = "train",
               on_epoch_end: Callable[[int, torch.nn.Module], None] | None = None, compile: bool = False) -> list[dict]:
    """Train ``model`` in place on pairs ``indices`` (in this order: position i ↔ indices[i]); not cached
    (:func:`~clipmem_lib.fitting.fit_clip` is the cached call).

    ``tokens`` is (N, K, context) from :meth:`CaptionTokenizer.tokenize_pairs`.  With ``checkpoint``
    a state file is written atomically after every epoch and a run restarts from it.  Returns the
    per-epoch history (loss, lr, logit scale, noise-to-signal norm ratio, samples/s; for CoCa also the
    unweighted ``contrastive_loss`` and ``caption_loss``, "loss" being their weighted sum).  ``compile``
    runs the forward through ``torch.compile`` (its weights then differ from eager ones by rounding).
    """
    device = resolve_device(device)
    indices = np.asarray(indices, dtype=np.int64)
    if max(cfg.caption_ids()) >= tokens.shape[1]:
        raise ValueError(f"caption_mode={cfg.caption_mode!r} with n_captions={cfg.n_captions} needs that many captions "
                         f"per pair, but the data has {tokens.shape[1]}")
    if max(cfg.image_variants) >= images.n_variants:
        raise ValueError(f"image_variants={cfg.image_variants} but the data has {images.n_variants} variant(s) per pair")
    if is_coca(model) and cfg.text_noise_std > 0:
        raise ValueError(f"text_noise_std={cfg.text_noise_std} (Sec. 4.6) is not supported for CoCa models; "
                         f"train them with text_noise_std=0")
    world, rank = (dist.get_world_size(), dist.get_rank()) if dist.is_initialized() else (1, 0)
    model.to(device).train()
    fwd = _Forward(model)
    if world > 1:
        fwd = torch.nn.parallel.DistributedDataParallel(fwd, device_ids=[device.index] if device.type == "cuda" else None)
    if compile:  # inductor's kernels round differently from eager ones: the store key says so (ClipJob.compile)
        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # "No CUDA runtime is found" on a CPU
        fwd = torch.compile(fwd, dynamic=False)
    loss_fn = ClipLoss(local_loss=world > 1, gather_with_grad=world > 1, rank=rank, world_size=world)
    size = image_size(model)

    def epoch_specs(epoch, order):
        caps = choose_views(len(indices), cfg.caption_ids(), cfg.caption_mode, epoch, cfg.seed, 1)
        vars_ = choose_views(len(indices), cfg.image_variants, cfg.variant_mode, epoch, cfg.seed, 2)
        specs = []
        for s in range(len(indices) // cfg.batch_size):
            pos = order[s * cfg.batch_size:(s + 1) * cfg.batch_size][rank::world]
            specs.append((indices[pos], vars_[pos], caps[pos]))
        return specs

    def load(spec):
        idx, var, cap = spec
        return images.batch(idx, var, size), tokens[torch.as_tensor(idx), torch.as_tensor(cap)]

    def step(batch, gen, _epoch, _step, _total):
        img, txt = batch
        img = random_resized_crop(to_model_input(img.to(device, non_blocking=True)), gen, cfg.crop_scale)
        img_f, raw_txt, scale, cap = fwd(img, txt.to(device, non_blocking=True))
        txt_f = noisy_text_features(raw_txt.float(), cfg.text_noise_std, cfg.text_noise_at, gen)
        ref = raw_txt if cfg.text_noise_at == "raw" else F.normalize(raw_txt, dim=-1)
        ratio = cfg.text_noise_std * math.sqrt(ref.shape[-1]) / ref.float().norm(dim=-1).mean().item()  # σ·√d/‖z‖
        logs = dict(logit_scale=float(scale.detach()), noise_to_signal=ratio)
        loss = loss_fn(img_f.float(), txt_f, scale.float())
        if cap is None:
            return loss, logs
        logs.update(contrastive_loss=float(loss.detach()), caption_loss=float(cap.detach()))
        return COCA_LOSS_WEIGHTS["contrastive"] * loss + COCA_LOSS_WEIGHTS["caption"] * cap, logs

    def clamp_scale():
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))

    # inductor's CPU kernels accumulate the embedding gradient in thread order unless asked for determinism
    deterministic, before = compile and device.type == "cpu", torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(before or deterministic)
    try:
        history = fit_epochs({"model": model}, model, cfg, len(indices), epoch_specs, load, step, device=device,
                             checkpoint=checkpoint, progress=progress, num_workers=num_workers, desc=desc,
                             after_step=clamp_scale,
                             on_epoch_end=(lambda e: on_epoch_end(e, model)) if on_epoch_end else None)
    finally:
        torch.use_deterministic_algorithms(before)
    model.eval()
    return history
