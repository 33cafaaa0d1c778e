"""Frozen-model embeddings: the inputs of CLIPMem (Eq. 3), SSLMem (Eq. 1) and the probes.

All embeddings are L2-normalised, computed in eval mode with no noise (the Sec. 4.6 text noise
exists only inside training), and bf16 autocast on CUDA.  Crops are drawn from a generator seeded
independently of the model, so f and g are evaluated on the very same augmentations.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .augment import random_resized_crop, to_model_input
from .data import ImageSource
from .models import image_size
from .runtime import resolve_device, timed

__all__ = ["embed_images", "image_batches", "embed_texts", "caption_similarity"]


@timed("embeddings")
@torch.no_grad()
def embed_images(model, images: ImageSource, indices: Sequence[int], *, n_crops: int = 0, variant: int = 0,
                 crop_scale=(0.9, 1.0), seed: int = 0, batch_size: int = 512, device=None) -> torch.Tensor:
    """Image embeddings (P, 1 + n_crops, d): view 0 un-augmented, views 1.. random resized crops."""
    device = resolve_device(device)
    model.to(device).eval()
    out = []
    for x, gen in image_batches(images, indices, image_size(model), variant=variant, seed=seed,
                                batch_size=batch_size, device=device):
        views = [x] + [random_resized_crop(x, gen, crop_scale) for _ in range(n_crops)]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            emb = [model.encode_image(v, normalize=True).float() for v in views]
        out.append(torch.stack(emb, 1).cpu())
    return torch.cat(out)


def image_batches(images: ImageSource, indices: Sequence[int], size: int, *, variant: int = 0, seed: int = 0,
                  batch_size: int = 512, device=None):
    """Model-input batches of ``images[indices]`` with each batch's crop generator, seeded by (``seed``,
    batch number) alone: two models evaluated on the same indices see the very same crops (f and g, Eq. 3)."""
    idx = np.asarray(indices, dtype=np.int64)
    for b, start in enumerate(range(0, len(idx), batch_size)):
        chunk = idx[start:start + batch_size]
        x = to_model_input(images.batch(chunk, [variant] * len(chunk), size).to(device))
        yield x, torch.Generator().manual_seed(int(np.random.default_rng([seed, b]).integers(2**62)))


@timed("embeddings")
@torch.no_grad()
def embed_texts(model, tokens: torch.Tensor, indices: Sequence[int], caption_ids: Sequence[int] = (0,), *,
                batch_size: int = 1024, device=None) -> torch.Tensor:
    """Text embeddings (P, C, d) of captions ``caption_ids`` of pairs ``indices``; tokens are (N, K, ctx)."""
    device = resolve_device(device)
    model.to(device).eval()
    t = tokens[torch.tensor(np.asarray(indices, dtype=np.int64))][:, list(caption_ids)]
    p, c = t.shape[:2]
    flat, out = t.reshape(p * c, -1), []
    for start in range(0, len(flat), batch_size):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out.append(model.encode_text(flat[start:start + batch_size].to(device), normalize=True).float().cpu())
    return torch.cat(out).view(p, c, -1)


def caption_similarity(model, tokenizer, captions_per_pair: Sequence[Sequence[str]], *, device=None,
                       batch_size: int = 1024) -> np.ndarray:
    """Per pair, the mean cosine similarity between the text embeddings of its captions over all pairs
    i < j of them (the appendix's Fig. 12 histograms it: 0.798 for COCO's captions, 0.851 for GPT-3.5's).

    ``tokenizer`` is the one the model was trained with (a :class:`~clipmem_lib.models.CaptionTokenizer`):
    a tokenizer sized for other captions maps their unseen words to one id and cuts them at its context.
    Every pair needs at least two captions; returns float (N,).
    """
    counts = np.array([len(c) for c in captions_per_pair])
    if len(counts) == 0 or counts.min() < 2:
        raise ValueError("caption_similarity needs at least one pair and at least two captions per pair")
    tokens = tokenizer([c for cs in captions_per_pair for c in cs])
    emb = embed_texts(model, tokens[:, None], range(len(tokens)), batch_size=batch_size, device=device)[:, 0]
    emb = torch.nn.functional.normalize(emb.double(), dim=-1)  # exact unit norm: bf16 embeddings are only close
    starts, out = np.cumsum(counts) - counts, np.empty(len(counts))
    for k in map(int, np.unique(counts)):  # pairs with k captions at once: (P, k, d) @ (P, d, k)
        rows = np.flatnonzero(counts == k)
        e = emb[torch.from_numpy(starts[rows, None] + np.arange(k))]
        i, j = torch.triu_indices(k, k, 1)
        out[rows] = (e @ e.transpose(1, 2))[:, i, j].mean(1).numpy()
    return out
