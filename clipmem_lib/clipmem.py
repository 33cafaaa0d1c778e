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

__all__ = ["SUBSET_ORDER", "planar_example", "alignment_table", "score_range", "positions_in_test_set", "alignment_terms", "alignment_scores", "clipmem", "range_normalise", "clipmem_frame",
           "subset_means", "sample_test_pairs", "separation_auc", "candidate_summary", "metric_summary",
           "clean_vs_miscaptioned", "top_count", "top_enrichment", "setting_effects"]

SUBSET_ORDER = ["S_S", "S_C", "S_I", "S_E"]  # shared, candidates (f only), independent (g only), external


def alignment_terms(img_views: torch.Tensor, txt: torch.Tensor, test_img: torch.Tensor,
                    test_txt: torch.Tensor, in_test=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The three expectations of Eq. 3 for P pairs under one model: (pair term, test-caption term,
    test-image term); A_align is the first minus the other two.

    img_views: (P, 1+K, d) unit embeddings, view 0 un-augmented, views 1..K the crops Aug(I)
               (K = 0 uses the un-augmented image in the first term);
    txt:       (P, C, d) unit embeddings of the pair's C training captions (the text "augmentations");
    test_img:  (M, d) un-augmented images of the M = N−1 test pairs (from S_E);
    test_txt:  (M, C', d) their captions;
    in_test:   optional (P,) position of each scored pair in the test set, −1 if it is not there: a pair
               is never its own test pair, so its test terms average over the other M − 1.
    """
    plain = img_views[:, 0]
    aug = img_views[:, 1:].mean(1) if img_views.shape[1] > 1 else plain
    cap = txt.mean(1)
    m = len(test_img)
    mean_txt = test_txt.mean(1).mean(0).expand_as(plain).clone()
    mean_img = test_img.mean(0).expand_as(cap).clone()
    if in_test is not None:
        pos = torch.as_tensor(np.asarray(in_test), dtype=torch.long)
        own = pos >= 0
        if own.any() and m < 2:
            raise ValueError("a scored pair is the only test pair; Eq. 3 needs at least one other")
        mean_txt[own] = (m * mean_txt[own] - test_txt.mean(1)[pos[own]]) / (m - 1)
        mean_img[own] = (m * mean_img[own] - test_img[pos[own]]) / (m - 1)
    first = (aug * cap).sum(-1)
    second = (plain * mean_txt).sum(-1)
    third = (cap * mean_img).sum(-1)
    return tuple(t.double().numpy() for t in (first, second, third))


def alignment_scores(img_views, txt, test_img, test_txt, in_test=None) -> np.ndarray:
    """A_align (Eq. 3) for P pairs under one model; arguments as in :func:`alignment_terms`."""
    first, second, third = alignment_terms(img_views, txt, test_img, test_txt, in_test)
    return first - second - third


def positions_in_test_set(indices, test) -> np.ndarray:
    """Position of each of ``indices`` in the test set ``test`` (−1 where absent), for Eq. 3's ``in_test``."""
    where = {int(t): k for k, t in enumerate(np.asarray(test))}
    return np.array([where.get(int(i), -1) for i in np.asarray(indices)])


def clipmem(align_f: np.ndarray, align_g: np.ndarray) -> np.ndarray:
    """CLIPMem(I, T) = A_align(f, I, T) − A_align(g, I, T) (Eq. 4), raw (not normalised)."""
    return np.asarray(align_f) - np.asarray(align_g)


def range_normalise(scores: np.ndarray) -> np.ndarray:
    """Divide by the range max − min over the evaluated points, no shift (Appendix A.2).  The result
    spans exactly 1; it lies in [−1, 1] only when min ≤ 0 ≤ max (true for CLIPMem over all four
    subsets, where S_I is negative and S_C positive), otherwise it is shifted to one side of 0."""
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
    """Mean score per subset, in the order S_S, S_C, S_I, S_E (how the paper reports them: Fig. 2a)."""
    means = scores.groupby(by)[list(columns)].mean()
    return means.reindex([s for s in SUBSET_ORDER if s in means.index] + [s for s in means.index if s not in SUBSET_ORDER])


def separation_auc(scores: pd.DataFrame, column: str = "clipmem", positive: str = "S_C",
                   negative: str = "S_S") -> float:
    """ROC AUC of ``column`` separating subset ``positive`` from ``negative`` (Fig. 3, Tables 1/3/8): the
    share of (positive, negative) pairs the score orders correctly, ties counting one half."""
    part = scores[scores.subset.isin([positive, negative])]
    return float(roc_auc_score(part.subset == positive, part[column]))


def candidate_summary(scores: pd.DataFrame, top_k: int = 10, top_fraction: float = 0.2) -> dict:
    """How much one f/g pair memorises S_C, as Tables 1, 3 and 8 report it: mean normalised and raw
    CLIPMem on S_C, the mean of its ``top_k`` highest and of its top ``top_fraction`` (Table 3), and
    the ROC AUC of CLIPMem separating S_C from S_S (:func:`separation_auc`)."""
    c = scores[scores.subset == "S_C"].clipmem.sort_values(ascending=False)
    return dict(clipmem=float(c.mean()), clipmem_raw=float(scores[scores.subset == "S_C"].clipmem_raw.mean()),
                top_k=float(c.head(top_k).mean()), top_fraction=float(c.head(max(1, round(top_fraction * len(c)))).mean()),
                auc=separation_auc(scores))


def metric_summary(scores: pd.DataFrame, columns: dict[str, str]) -> pd.DataFrame:
    """Fig. 3 as a table: per score column (index; ``metric`` holds its label from ``columns``), the ROC
    AUC of S_C vs S_S, the maximum on S_C and the means on S_C and S_S."""
    c, s = scores[scores.subset == "S_C"], scores[scores.subset == "S_S"]
    rows = {col: {"metric": label, "ROC AUC S_C vs S_S": separation_auc(scores, col), "max on S_C": c[col].max(),
                  "mean on S_C": c[col].mean(), "mean on S_S": s[col].mean()} for col, label in columns.items()}
    return pd.DataFrame.from_dict(rows, orient="index")


def clean_vs_miscaptioned(scores_clean: pd.DataFrame, scores_poisoned: pd.DataFrame) -> tuple[pd.DataFrame, float]:
    """Fig. 2b: mean normalised and raw CLIPMem of the clean S_C pairs under the clean model, of the same
    pairs under the model trained with planted mis-captions, and of the mis-captioned pairs; plus the ROC
    AUC of the poisoned model's CLIPMem separating mis-captioned from clean S_C pairs.

    ``scores_poisoned`` needs a bool column ``is_miscaptioned``; returns a frame with ``model``,
    ``group``, ``clipmem`` and ``clipmem_raw`` (one row per bar) and the AUC.
    """
    cand_p = scores_poisoned[scores_poisoned.subset == "S_C"]
    mis = cand_p.is_miscaptioned.astype(bool)
    clean = scores_clean[(scores_clean.subset == "S_C") & scores_clean["index"].isin(cand_p["index"][~mis])]
    bars = [("clean model", "clean S_C", clean), ("poisoned model", "clean S_C", cand_p[~mis]),
            ("poisoned model", "mis-captioned S_C", cand_p[mis])]
    frame = pd.DataFrame([dict(model=m, group=grp, clipmem=part.clipmem.mean(), clipmem_raw=part.clipmem_raw.mean())
                          for m, grp, part in bars])
    return frame, float(roc_auc_score(mis, cand_p.clipmem))


def score_range(scores: pd.DataFrame, column: str = "clipmem_raw") -> float:
    """max − min of a score column: the divisor of the range normalisation (App. A.2)."""
    return float(scores[column].max() - scores[column].min())


def top_count(n: int, fraction: float) -> int:
    """How many of ``n`` ranked points make its top ``fraction`` (rounded down, at least one)."""
    return max(1, int(n * fraction + 1e-9))


def top_enrichment(scores: pd.DataFrame, columns, fraction: float = 0.1, subset: str = "S_C",
                   by: str = "clipmem") -> pd.DataFrame:
    """Fig. 1 with ground truth: mean of each of ``columns`` (those present, e.g. ``concept_count``,
    ``is_atypical``) over the top ``fraction`` of ``subset`` by ``by``, beside its mean over all of ``subset``."""
    part = scores[scores.subset == subset]
    cols = [c for c in columns if c in part]
    top = part.nlargest(top_count(len(part), fraction), by)
    return pd.DataFrame({f"top {fraction:.0%} of {subset}": top[cols].astype(float).mean(),
                         f"all of {subset}": part[cols].astype(float).mean()})


def setting_effects(table: pd.DataFrame, baseline: str, others: dict[str, str], label: str = "setting") -> pd.DataFrame:
    """Table 1's comparisons: for each name -> setting of ``others``, its numeric columns minus the
    ``baseline`` setting's (e.g. text side = "1 image, 5 captions" minus "1 image, 1 caption").  A
    setting missing from ``table`` (COCO without generated images) gives a row of NaN."""
    t = table.set_index(label).select_dtypes("number")
    return pd.DataFrame({name: t.reindex([setting]).iloc[0] - t.loc[baseline] for name, setting in others.items()}).T


def _unit(deg: float) -> torch.Tensor:
    a = np.deg2rad(deg)
    return torch.tensor([np.cos(a), np.sin(a)], dtype=torch.float32)


def planar_example(image_deg: float, caption_deg: float, crop_spread: float = 10.0, test_images=(150, -120),
                   test_captions=(170, -100)) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sec. 3's worked example: 2-D unit embeddings at the given angles (degrees), in the argument
    layout of :func:`alignment_terms`: the image and two crops ``crop_spread`` either side, one caption,
    and the test pairs' images and captions."""
    views = torch.stack([_unit(image_deg), _unit(image_deg - crop_spread), _unit(image_deg + crop_spread)])[None]
    return (views, _unit(caption_deg)[None, None], torch.stack([_unit(d) for d in test_images]),
            torch.stack([_unit(d) for d in test_captions])[:, None])


def alignment_table(models: dict[str, tuple]) -> pd.DataFrame:
    """Eq. 3 term by term for one pair under each model (``models``: name -> :func:`alignment_terms`
    arguments), with A_align = first − second − third in the last row."""
    rows = ["pair term (crops · captions)", "test captions term", "test images term"]
    table = pd.DataFrame({name: [float(t[0]) for t in alignment_terms(*args)] for name, args in models.items()},
                         index=rows)
    table.loc["A_align = first - second - third"] = table.iloc[0] - table.iloc[1] - table.iloc[2]
    return table
