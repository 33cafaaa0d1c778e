"""SSLMem (Wang et al., ICLR 2024; paper Eq. 1–2) on CLIP's single encoders (Sec. 4.3, Fig. 3).

L_align(f, x) = E_{x', x'' ~ Aug(x)} ‖f(x') − f(x'')‖₂ on L2-normalised representations, and
SSLMem(x) = L_align(g, x) − L_align(f, x), range-normalised like CLIPMem.  For the image encoder
the reference code pairs the un-augmented view with each of the augmented views (5 repetitions);
for the text encoder the five captions are the augmentations, and all caption pairs are averaged.
"""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import torch

from .clipmem import range_normalise, top_count

__all__ = ["image_alignment_loss", "text_alignment_loss", "sslmem", "top_overlap"]


def image_alignment_loss(views: torch.Tensor) -> np.ndarray:
    """L_align per point from image views (P, 1+K, d): mean ‖view₀ − view_k‖ over the K crops."""
    if views.shape[1] < 2:
        raise ValueError("image SSLMem needs at least one augmented view besides the original")
    return (views[:, 1:] - views[:, :1]).norm(dim=-1).mean(1).double().numpy()


def text_alignment_loss(captions: torch.Tensor) -> np.ndarray:
    """L_align per point from caption embeddings (P, C, d): mean distance over all caption pairs."""
    c = captions.shape[1]
    if c < 2:
        raise ValueError("text SSLMem needs at least two captions per pair")
    pairs = list(itertools.combinations(range(c), 2))
    i, j = (list(t) for t in zip(*pairs))
    return (captions[:, i] - captions[:, j]).norm(dim=-1).mean(1).double().numpy()


def sslmem(loss_f: np.ndarray, loss_g: np.ndarray, normalise: bool = True) -> np.ndarray:
    """SSLMem = L_align(g) − L_align(f) (Eq. 2): positive where f aligns views of x better than g."""
    raw = np.asarray(loss_g) - np.asarray(loss_f)
    return range_normalise(raw) if normalise else raw


def top_overlap(scores: pd.DataFrame, col_a: str, col_b: str, fraction: float = 0.1,
                subset: str = "S_C") -> tuple[int, int]:
    """Sec. 4.5: how many of the top ``fraction`` of ``subset`` by ``col_a`` are also in its top by
    ``col_b`` (the paper: 47 of the top 500 of S_C by SSLMem agree between CLIP and DINO).  Returns
    (overlap, k); chance level is ``fraction`` · k."""
    part = scores[scores.subset == subset]
    k = top_count(len(part), fraction)
    return len(set(part.nlargest(k, col_a)["index"]) & set(part.nlargest(k, col_b)["index"])), k
