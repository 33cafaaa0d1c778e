"""CLIPMem (Eq. 3–4) with the range normalisation of Appendix A.2, in vectorised O(N·d) form.

With unit-norm embeddings every expectation in Eq. 3 is bilinear, so
  E_{I',T'}[sim(f(I'), f(T'))]   = mean_crop(f(I')) · mean_caption(f(T'))   (crops ⟂ captions)
  E_{(_,t)∈T_test}[sim(f(I), f(t))] = f(I) · mean_t f(t)
  E_{(i,_)∈T_test}[sim(f(i), f(T))] = mean_i f(i) · f(T)
which is what :func:`alignment_scores` computes.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score

__all__ = ["alignment_terms", "alignment_scores", "clipmem", "range_normalise", "clipmem_frame", "subset_means",
           "sample_test_pairs", "candidate_summary"]


def alignment_terms(img_views: torch.Tensor, txt: torch.Tensor, test_img: torch.Tensor,
                    test_txt: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The three expectations of Eq. 3 for P pairs under one model: (pair term, test-caption term,
    test-image term); A_align is the first minus the other two.

    img_views: (P, 1+K, d) unit embeddings, view 0 un-augmented, views 1..K the crops Aug(I)
               (K = 0 uses the un-augmented image in the first term);
    txt:       (P, C, d) unit embeddings of the pair's C training captions (the text "augmentations");
    test_img:  (M, d) un-augmented images of the M = N−1 test pairs (from S_E);
    test_txt:  (M, C', d) their captions.
    """
    plain = img_views[:, 0]
    aug = img_views[:, 1:].mean(1) if img_views.shape[1] > 1 else plain
    cap = txt.mean(1)
    first = (aug * cap).sum(-1)
    second = plain @ test_txt.mean(1).mean(0)
    third = cap @ test_img.mean(0)
    return tuple(t.double().numpy() for t in (first, second, third))


def alignment_scores(img_views, txt, test_img, test_txt) -> np.ndarray:
    """A_align (Eq. 3) for P pairs under one model; arguments as in :func:`alignment_terms`."""
    first, second, third = alignment_terms(img_views, txt, test_img, test_txt)
    return first - second - third


def clipmem(align_f: np.ndarray, align_g: np.ndarray) -> np.ndarray:
    """CLIPMem(I, T) = A_align(f, I, T) − A_align(g, I, T) (Eq. 4), raw (not normalised)."""
    return np.asarray(align_f) - np.asarray(align_g)


def range_normalise(scores: np.ndarray) -> np.ndarray:
    """Divide by the range max − min over the evaluated points, no shift (Appendix A.2): values in [−1, 1]."""
    scores = np.asarray(scores, dtype=float)
    rng = scores.max() - scores.min()
    return scores / rng if rng > 0 else np.zeros_like(scores)


def sample_test_pairs(external: np.ndarray, n_test: int | None, seed: int = 0) -> np.ndarray:
    """T_test: ``n_test`` random pairs of S_E (the paper's N−1 for batch size N; None = all of S_E)."""
    external = np.asarray(external)
    if n_test is None:
        return external
    if not 1 <= n_test <= len(external):
        raise ValueError(f"n_test={n_test} test pairs requested but S_E has {len(external)} pairs")
    return np.sort(np.random.default_rng([seed, 7]).choice(external, size=n_test, replace=False))


def clipmem_frame(index: np.ndarray, subset: np.ndarray, align_f: np.ndarray, align_g: np.ndarray,
                  meta: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per-pair table: alignment under f and g, raw CLIPMem and range-normalised CLIPMem (+ ground truth)."""
    raw = clipmem(align_f, align_g)
    df = pd.DataFrame(dict(index=index, subset=subset, align_f=align_f, align_g=align_g,
                           clipmem_raw=raw, clipmem=range_normalise(raw)))
    if meta is not None:
        df = df.join(meta.reset_index(drop=True), on="index")
    return df


def subset_means(scores: pd.DataFrame, by: str = "subset", columns=("clipmem", "clipmem_raw")) -> pd.DataFrame:
    """Mean score per subset (how the paper reports S_S, S_C, S_I, S_E: Fig. 2)."""
    return scores.groupby(by, sort=False)[list(columns)].mean()


def candidate_summary(scores: pd.DataFrame, top_k: int = 10, top_fraction: float = 0.2) -> dict:
    """How much one f/g pair memorises S_C, as Tables 1, 3 and 8 report it: mean normalised and raw
    CLIPMem on S_C, the mean of its ``top_k`` highest and of its top ``top_fraction`` (Table 3), and
    the ROC AUC of CLIPMem separating S_C from S_S."""
    c = scores[scores.subset == "S_C"].clipmem.sort_values(ascending=False)
    part = scores[scores.subset.isin(["S_C", "S_S"])]
    return dict(clipmem=float(c.mean()), clipmem_raw=float(scores[scores.subset == "S_C"].clipmem_raw.mean()),
                top_k=float(c.head(top_k).mean()), top_fraction=float(c.head(max(1, round(top_fraction * len(c)))).mean()),
                auc=float(roc_auc_score(part.subset == "S_C", part.clipmem)))
