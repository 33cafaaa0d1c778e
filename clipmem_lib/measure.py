"""Cached measurements of trained models: embeddings (Eq. 3's crops), CLIPMem (Eq. 3–4), SSLMem
(Eq. 1–2), utility (linear probe, R@1) and UnitMem (Sec. 4.5).  Each result is stored in the run store
under the keys of the models it measures, so a re-run of a chapter computes nothing twice."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch

from .clipmem import alignment_scores, clipmem_frame, sample_test_pairs, positions_in_test_set
from .data import PairData
from .embed import caption_similarity as _caption_similarity, embed_images, embed_texts
from .fitting import TrainedModel
from .probes import gallery_retrieval, probe_accuracy
from .runtime import Context
from .splits import Splits
from .sslmem import image_alignment_loss, sslmem, text_alignment_loss
from .unitmem import layer_unitmem, text_layer_unitmem, top_unit_layers

__all__ = ["model_embeddings", "score_clipmem", "pair_similarity", "caption_similarity", "score_sslmem", "utility", "unitmem_layers",
           "unitmem_during_training", "unitmem_of_models", "unitmem_treatments", "training_losses", "encoder_diagnostics"]


def model_embeddings(trained: TrainedModel, data: PairData, indices: Sequence[int], *, n_crops: int = 8,
                     crop_scale=(0.9, 1.0), caption_ids: Sequence[int] | None = None, variants: Sequence[int] = (0,),
                     seed: int = 0, ctx: Context | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Cached (image views (P, 1+V·n_crops, d), caption embeddings (P, C, d)) of ``data[indices]``;
    an image-only model (no tokenizer) has C = 0.

    With V > 1 image ``variants`` (Table 1's generated images) view 0 is the mean of the variants'
    un-augmented embeddings and the other views are all variants' crops, so Eq. 3's expectations
    (bilinear in the image embedding) average over every training image of the pair.
    """
    ctx = ctx or Context()
    idx = np.asarray(indices, dtype=np.int64)
    if trained.tokenizer is None:
        caption_ids = ()
    caption_ids = tuple(trained.config.caption_ids() if caption_ids is None else caption_ids)
    variants = tuple(int(v) for v in variants)
    cfg = dict(model=trained.key, images=data.images.fingerprint(), indices=idx, captions=data.caption_digest(idx),
               n_crops=n_crops, crop_scale=tuple(crop_scale), caption_ids=caption_ids, seed=seed, variants=variants)

    def build(out, _):
        views = [embed_images(trained.model, data.images, idx, n_crops=n_crops, crop_scale=crop_scale, variant=v,
                              seed=seed, device=ctx.device) for v in variants]
        plain = torch.stack([v[:, 0] for v in views]).mean(0, keepdim=True).transpose(0, 1)
        torch.save(torch.cat([plain] + [v[:, 1:] for v in views], 1).half(), out / "images.pt")
        texts = (embed_texts(trained.model, trained.tokenizer.tokenize_pairs(data), idx, caption_ids, device=ctx.device)
                 if caption_ids else torch.zeros(len(idx), 0, 1))
        torch.save(texts.half(), out / "texts.pt")

    return ctx.store.load("embeddings", cfg, build, lambda path: tuple(
        torch.load(path / name, weights_only=True).float() for name in ("images.pt", "texts.pt")))


def score_clipmem(f: TrainedModel, g: TrainedModel, data: PairData, splits: Splits, *, n_crops: int = 8,
                  n_test: int | None = 127, seed: int = 0, ctx: Context | None = None) -> pd.DataFrame:
    """CLIPMem (Eq. 3–4) of every pair in S_S, S_C, S_I and S_E, range-normalised over all of them (A.2).

    The first term of Eq. 3 averages ``n_crops`` crops × the captions f was trained on; the test
    terms use the same ``n_test`` random S_E pairs (the paper's N−1 = 127) for f and g, leaving a
    scored S_E pair out of its own test set.
    """
    if f.config.caption_ids() != g.config.caption_ids() or f.config.image_variants != g.config.image_variants:
        raise ValueError("f and g were trained on different caption or image-variant sets; CLIPMem compares like "
                         "with like")
    ctx = ctx or Context()
    variants = f.config.image_variants  # Table 1: every image the pair was trained with (test pairs too)
    subsets = splits.subsets()
    idx = np.concatenate(list(subsets.values()))
    names = np.concatenate([[k] * len(v) for k, v in subsets.items()])
    tst = sample_test_pairs(splits.external, n_test, seed)
    emb = dict(variants=variants, seed=seed, ctx=ctx)

    def compute():
        align = []
        for m in (f, g):
            img, txt = model_embeddings(m, data, idx, n_crops=n_crops, **emb)
            timg, ttxt = model_embeddings(m, data, tst, n_crops=0, **emb)
            align.append(alignment_scores(img, txt, timg[:, 0], ttxt, positions_in_test_set(idx, tst)))
        return clipmem_frame(idx, names, align[0], align[1], data.meta)

    cfg = dict(f=f.key, g=g.key, indices=idx, test=tst, captions=data.caption_digest(idx), n_crops=n_crops, seed=seed,
               variants=variants)
    return ctx.store.frame("clipmem", cfg, compute)


def pair_similarity(trained: TrainedModel, data: PairData, indices: Sequence[int], *,
                    ctx: Context | None = None) -> np.ndarray:
    """Cosine similarity of each pair's image and training captions under one CLIP (un-augmented image,
    mean over the captions it trained on): the "lowest CLIP similarity" baseline of Fig. 6."""
    img, txt = model_embeddings(trained, data, indices, n_crops=0, variants=trained.config.image_variants, ctx=ctx)
    return (img[:, 0] * txt.mean(1)).sum(-1).double().numpy()


def caption_similarity(trained: TrainedModel, data: PairData, indices: Sequence[int], *,
                       ctx: Context | None = None) -> np.ndarray:
    """Fig. 12: per pair of ``indices``, the mean pairwise cosine similarity of its captions under
    ``trained``'s text encoder and tokenizer (:func:`~clipmem_lib.embed.caption_similarity`)."""
    return _caption_similarity(trained.model, trained.tokenizer, [data.captions[i] for i in indices],
                               device=(ctx or Context()).device)


def score_sslmem(f: TrainedModel, g: TrainedModel, data: PairData, splits: Splits, *, n_crops: int = 5,
                 crop_scale=(0.5, 1.0), seed: int = 0, ctx: Context | None = None) -> pd.DataFrame:
    """SSLMem (Eq. 1–2) of CLIP's image encoder (``n_crops`` crops) and text encoder (all captions as
    augmentations) for S_S, S_C, S_I and S_E (Fig. 3), raw and range-normalised.  For image-only
    models (DINO, Sec. 4.5) only the image columns."""
    subsets = splits.subsets()
    idx = np.concatenate(list(subsets.values()))
    all_caps = tuple(range(data.n_captions)) if f.tokenizer is not None else ()
    loss = {}  # loss[model][encoder]
    for name, m in (("f", f), ("g", g)):
        img, txt = model_embeddings(m, data, idx, n_crops=n_crops, crop_scale=crop_scale, caption_ids=all_caps,
                                    seed=seed, ctx=ctx)
        loss[name] = {"image": image_alignment_loss(img)}
        if all_caps:
            loss[name]["text"] = text_alignment_loss(txt)
    df = pd.DataFrame(dict(index=idx, subset=np.concatenate([[k] * len(v) for k, v in subsets.items()])))
    for enc in loss["f"]:
        df[f"sslmem_{enc}_raw"] = sslmem(loss["f"][enc], loss["g"][enc], normalise=False)
        df[f"sslmem_{enc}"] = sslmem(loss["f"][enc], loss["g"][enc])
    return df


def utility(trained: TrainedModel, probe: PairData, heldout: PairData | None = None,
            heldout_indices: Sequence[int] | None = None, *, seeds=(0, 1, 2), gallery: int | None = None,
            ctx: Context | None = None) -> dict:
    """Linear-probe accuracy (mean ± std over ``seeds``) on ``probe``'s labels, and, if given, image→text
    retrieval on held-out pairs (first caption) in galleries of ``gallery`` pairs (None: one gallery of
    all): ``r_at_1`` and ``mean_rank`` (:func:`~clipmem_lib.probes.gallery_retrieval`)."""
    if probe.labels is None:
        raise ValueError(f"{probe.name} has no labels to probe")
    ctx = ctx or Context()
    seeds = tuple(int(s) for s in seeds)
    cfg = dict(model=trained.key, probe=probe.images.fingerprint(), labels=np.asarray(probe.labels), seeds=seeds)
    if heldout is not None:
        heldout_indices = np.asarray(heldout_indices, dtype=np.int64)
        cfg.update(heldout=heldout.images.fingerprint(), heldout_indices=heldout_indices,
                   captions=heldout.caption_digest(heldout_indices), gallery=gallery)

    def compute():
        feats, _ = model_embeddings(trained, probe, np.arange(len(probe)), n_crops=0, caption_ids=(0,), ctx=ctx)
        mean, std = probe_accuracy(feats[:, 0].numpy(), probe.labels, seeds=seeds)
        out = dict(lp_acc=mean, lp_std=std)
        if heldout is not None:
            img, txt = model_embeddings(trained, heldout, heldout_indices, n_crops=0, caption_ids=(0,), ctx=ctx)
            out["r_at_1"], out["mean_rank"] = gallery_retrieval(img[:, 0], txt[:, 0], gallery or len(img))
        return pd.DataFrame([out])

    return {k: float(v) for k, v in ctx.store.frame("utility", cfg, compute).iloc[0].items()}


def unitmem_layers(trained: TrainedModel, data: PairData, indices: Sequence[int], *, tower: str = "image",
                   n_aug: int = 10, crop_scale=(0.9, 1.0), reduce: str = "median", treatment: str = "clamp",
                   seed: int = 0, ctx: Context | None = None) -> pd.DataFrame:
    """Cached UnitMem of every MLP unit (Fig. 4) over the points ``indices``: of the image tower over
    ``n_aug`` crops, or (``tower="text"``, CLIP only) of the text tower over the pair's captions;
    ``treatment`` of negative GELU outputs as in :mod:`~clipmem_lib.unitmem`."""
    ctx = ctx or Context()
    idx = np.asarray(indices, dtype=np.int64)
    cfg = dict(model=trained.key, tower=tower, indices=idx, n_aug=n_aug, crop_scale=tuple(crop_scale),
               reduce=reduce, seed=seed, images=data.images.fingerprint(), captions=data.caption_digest(idx),
               **({} if treatment == "clamp" else dict(treatment=treatment)))  # the clamp's entries keep their keys
    kw = dict(reduce=reduce, treatment=treatment, device=ctx.device)

    def compute():
        if tower == "image":
            return layer_unitmem(trained.model, data.images, idx, n_aug=n_aug, crop_scale=crop_scale, seed=seed, **kw)
        if tower == "text" and trained.tokenizer is not None:
            return text_layer_unitmem(trained.model, trained.tokenizer.tokenize_pairs(data), idx,
                                      tuple(range(data.n_captions)), **kw)
        raise ValueError(f"tower must be 'image' or, for CLIP, 'text'; got {tower!r}")

    return ctx.store.frame("unitmem", cfg, compute)


def unitmem_of_models(towers: dict[str, tuple[TrainedModel, str]], data: PairData, indices: Sequence[int], *,
                      n_aug: int = 10, crop_scale=(0.9, 1.0), reduce: str = "median", treatment: str = "clamp",
                      seed: int = 0, ctx: Context | None = None) -> pd.DataFrame:
    """Fig. 4's input: :func:`unitmem_layers` of several towers (name -> (model, "image" or "text")) in
    one table with a ``model`` column."""
    return pd.concat([unitmem_layers(m, data, indices, tower=tower, n_aug=n_aug, crop_scale=crop_scale, reduce=reduce,
                                     treatment=treatment, seed=seed, ctx=ctx).assign(model=name)
                      for name, (m, tower) in towers.items()], ignore_index=True)


def unitmem_treatments(towers: dict[str, tuple[TrainedModel, str]], data: PairData, indices: Sequence[int], *,
                       treatments: Sequence[str], **kw) -> pd.DataFrame:
    """:func:`unitmem_of_models` under each treatment of negative GELU outputs, in one table with a
    ``treatment`` column (``kw`` as for :func:`unitmem_of_models`)."""
    return pd.concat([unitmem_of_models(towers, data, indices, treatment=t, **kw).assign(treatment=t) for t in treatments],
                     ignore_index=True)


def unitmem_during_training(trained: TrainedModel, data: PairData, indices: Sequence[int], *, n_aug: int = 10,
                            percents=(1, 3, 5), seed: int = 0, ctx: Context | None = None) -> pd.DataFrame:
    """Fig. 11: in which layers of the image tower the top 1/3/5% UnitMem units sit, at each epoch whose
    weights ``trained`` kept (a :class:`~clipmem_lib.fitting.ClipJob` with ``snapshot_every``), over the
    points ``indices``.  Cached; no model is trained again."""
    ctx = ctx or Context()
    epochs = trained.snapshot_epochs()
    if not epochs:
        raise ValueError(f"model {trained.key} kept no snapshots: fit it with ClipJob(..., snapshot_every=k)")
    idx = np.asarray(indices, dtype=np.int64)
    cfg = dict(model=trained.key, epochs=epochs, indices=idx, n_aug=n_aug, percents=tuple(percents), seed=seed,
               images=data.images.fingerprint(), ties="shared")  # top_unit_layers' tie rule

    def compute():
        return pd.concat([top_unit_layers(layer_unitmem(trained.snapshot(e), data.images, idx, n_aug=n_aug,
                                                        crop_scale=trained.config.crop_scale, seed=seed,
                                                        device=ctx.device), percents).assign(epoch=e)
                          for e in epochs], ignore_index=True)

    return ctx.store.frame("unitmem_tracking", cfg, compute)


def training_losses(models: dict[str, TrainedModel]) -> pd.DataFrame:
    """Loss in the first and the last epoch of each model (did every baseline train?)."""
    return pd.DataFrame({name: {"loss, first epoch": m.history[0]["loss"], "loss, last epoch": m.history[-1]["loss"]}
                         for name, m in models.items()}).T


def encoder_diagnostics(models: dict[str, TrainedModel], data: PairData, indices: Sequence[int],
                        probes: dict[str, PairData], *, n_crops: int = 5, crop_scale=(0.5, 1.0), seed: int = 0,
                        ctx: Context | None = None) -> pd.DataFrame:
    """What each image encoder learned (Sec. 4.5): its mean crop-alignment loss L_align (Eq. 1) on
    ``data[indices]`` (how far crops move an embedding) and its linear-probe accuracy on each of
    ``probes`` (name -> labelled set; column "<name> probe")."""
    rows = {}
    for name, m in models.items():
        views, _ = model_embeddings(m, data, indices, n_crops=n_crops, crop_scale=crop_scale, caption_ids=(), seed=seed,
                                    ctx=ctx)
        rows[name] = {"L_align (crops)": float(image_alignment_loss(views).mean()),
                      **{f"{p} probe": utility(m, probe, ctx=ctx)["lp_acc"] for p, probe in probes.items()}}
    return pd.DataFrame(rows).T
