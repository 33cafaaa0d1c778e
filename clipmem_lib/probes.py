"""Utility of a trained CLIP: linear-probe accuracy on frozen image features (the paper's LP acc,
Tables 1, 3, 5–8) and held-out image→text retrieval R@1 (CPU_SCALE.md: the more sensitive figure
at small scale).  Probes use scikit-learn's logistic regression.
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from .runtime import timed

__all__ = ["linear_probe", "probe_accuracy", "retrieval_at_1", "gallery_retrieval"]


def linear_probe(train_x, train_y, test_x, test_y, *, C: float = 1.0, max_iter: int = 2000) -> float:
    """Accuracy of a standardised multinomial logistic regression fit on (train_x, train_y)."""
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
    clf.fit(np.asarray(train_x), np.asarray(train_y))
    return float(clf.score(np.asarray(test_x), np.asarray(test_y)))


@timed("probing")
def probe_accuracy(features, labels, *, n_fit: float = 2 / 3, seeds=(0, 1, 2), C: float = 1.0) -> tuple[float, float]:
    """Mean ± std linear-probe accuracy over random fit/test splits, one per seed (the paper's ± columns)."""
    x, y = np.asarray(features), np.asarray(labels)
    k = int(round(n_fit * len(y)))
    if not 0 < k < len(y):
        raise ValueError(f"n_fit={n_fit} leaves no fit or no test points among {len(y)}")
    accs = []
    for s in seeds:
        p = np.random.default_rng(s).permutation(len(y))
        accs.append(linear_probe(x[p[:k]], y[p[:k]], x[p[k:]], y[p[k:]], C=C))
    return float(np.mean(accs)), float(np.std(accs))


def retrieval_at_1(image_emb: torch.Tensor, text_emb: torch.Tensor) -> float:
    """Image→text R@1: fraction of images whose own caption is the most similar text (chance 1/P): one
    gallery of all the pairs (:func:`gallery_retrieval`)."""
    return gallery_retrieval(image_emb, text_emb, len(image_emb))[0]


@timed("probing")
def gallery_retrieval(image_emb: torch.Tensor, text_emb: torch.Tensor, gallery: int) -> tuple[float, float]:
    """Image→text retrieval in consecutive galleries of ``gallery`` pairs (a last, smaller one is left
    out), so R@1 keeps one scale (chance 1/gallery) however many held-out pairs measure it: (mean R@1,
    mean rank of each image's own caption among its gallery's, 1 = first, chance (gallery + 1) / 2)."""
    img, txt = torch.as_tensor(image_emb).float(), torch.as_tensor(text_emb).float()
    n = len(img) // gallery * gallery
    if gallery < 2 or n == 0:
        raise ValueError(f"a gallery needs 2 to {len(img)} held-out pairs, got gallery={gallery}")
    sims = torch.einsum("gid,gjd->gij", img[:n].view(-1, gallery, img.shape[1]), txt[:n].view(-1, gallery, txt.shape[1]))
    own = sims.diagonal(dim1=1, dim2=2).unsqueeze(-1)
    rank = 1 + (sims > own).sum(-1)  # captions scored strictly above the image's own
    return float((rank == 1).float().mean()), float(rank.float().mean())
