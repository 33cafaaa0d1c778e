"""Label memorisation of a supervised classifier (Feldman, 2020): the comparison of Fig. 8 (appendix).

Feldman's memorisation of a labelled point (x, y) is how much more likely a model trained on it gives it
its label than a model trained without it:

    mem(x, y) = P_f(y | x) − P_g(y | x),

where y is the *given* label (a flipped one included), estimated with the protocol of CLIPMem (Sec. 4.1):
f trained on S_S ∪ S_C and g on S_S ∪ S_I, otherwise identical
(:func:`~clipmem_lib.fitting.fit_classifier_f_and_g`).  Fig. 8 flips 200 labels of S_C (a ViT on
CIFAR-10; here the built-in scenes' main-object colour, 8 classes), removes the most memorised points of
S_C first (against random removal), retrains and measures test accuracy (:func:`test_accuracy`): utility
peaks near the number of flipped labels removed.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch

from .augment import random_resized_crop
from .data import PairData
from .embed import image_batches
from .fitting import TrainedModel
from .models import image_size
from .runtime import Context, resolve_device, timed
from .splits import Splits

__all__ = ["flip_labels", "class_probabilities", "label_probabilities", "label_memorisation",
           "score_label_memorisation", "test_accuracy"]


def flip_labels(labels: np.ndarray, indices: Sequence[int], n_flip: int, n_classes: int,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Fig. 8's noisy labels: a copy of ``labels`` (N,) in which ``n_flip`` random points of ``indices``
    (S_C) get another class, uniform over the ``n_classes − 1`` others.  Returns (new labels, the flipped
    indices, sorted); deterministic given ``seed``."""
    labels, indices = np.asarray(labels, dtype=np.int64), np.asarray(indices, dtype=np.int64)
    if n_classes < 2 or labels.min() < 0 or labels.max() >= n_classes:
        raise ValueError(f"labels must lie in [0, n_classes) with n_classes ≥ 2; got range "
                         f"[{labels.min()}, {labels.max()}] and n_classes={n_classes}")
    if len(np.unique(indices)) != len(indices) or not 0 <= n_flip <= len(indices):
        raise ValueError(f"n_flip must be in [0, {len(indices)}] over distinct indices, got {n_flip}")
    rng = np.random.default_rng([seed, 8])
    flipped = np.sort(rng.choice(indices, size=n_flip, replace=False))
    new = labels.copy()
    new[flipped] = (labels[flipped] + rng.integers(1, n_classes, size=n_flip)) % n_classes
    return new, flipped


def _classifier(trained: TrainedModel) -> torch.nn.Module:
    if not hasattr(trained.model, "class_probs"):
        raise ValueError(f"model {trained.key} is not a classifier: fit a VisionJob of kind 'classifier' (Fig. 8)")
    return trained.model


@timed("embeddings")
@torch.no_grad()
def class_probabilities(trained: TrainedModel, data: PairData, indices: Sequence[int], *, n_crops: int = 1,
                        crop_scale=None, seed: int = 0, batch_size: int = 512, device=None) -> torch.Tensor:
    """(P, C) class probabilities P(· | x) of ``data[indices]`` under a classifier (Fig. 8): of the image
    itself (``n_crops`` = 1) or averaged over ``n_crops`` > 1 random resized crops (``crop_scale``, default
    the training augmentation's), drawn by :func:`~clipmem_lib.embed.image_batches` as for the embeddings,
    so f and g see the very same crops."""
    if n_crops < 1:
        raise ValueError(f"n_crops must be at least 1, got {n_crops}")
    model, device = _classifier(trained), resolve_device(device)
    model.to(device).eval()
    scale = trained.config.crop_scale if crop_scale is None else crop_scale
    out = []
    for x, gen in image_batches(data.images, indices, image_size(model), seed=seed, batch_size=batch_size,
                                device=device):
        views = [x] if n_crops == 1 else [random_resized_crop(x, gen, scale) for _ in range(n_crops)]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out.append(torch.stack([model.class_probs(v) for v in views]).mean(0).cpu())
    return torch.cat(out)


def label_probabilities(trained: TrainedModel, data: PairData, indices: Sequence[int], labels: np.ndarray, *,
                        n_crops: int = 1, crop_scale=None, seed: int = 0, batch_size: int = 512,
                        device=None) -> np.ndarray:
    """P(labels[i] | x_i) for each i of ``indices`` (``labels``: the given label of each of the N points,
    flips included), the model term of Fig. 8's memorisation; crops as in :func:`class_probabilities`."""
    idx = np.asarray(indices, dtype=np.int64)
    probs = class_probabilities(trained, data, idx, n_crops=n_crops, crop_scale=crop_scale, seed=seed,
                                batch_size=batch_size, device=device)
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64)[idx])
    return probs.gather(1, y[:, None])[:, 0].double().numpy()


def label_memorisation(p_f: np.ndarray, p_g: np.ndarray) -> np.ndarray:
    """Feldman's (2020) memorisation mem(x, y) = P_f(y | x) − P_g(y | x) (Fig. 8): f trained with the
    point, g without it; in [−1, 1], not normalised."""
    return np.asarray(p_f) - np.asarray(p_g)


def score_label_memorisation(f: TrainedModel, g: TrainedModel, data: PairData, splits: Splits, labels: np.ndarray, *,
                             n_crops: int = 1, crop_scale=None, seed: int = 0,
                             ctx: Context | None = None) -> pd.DataFrame:
    """Label memorisation (Fig. 8) of every point of S_S, S_C, S_I and S_E under classifiers f (S_S ∪ S_C)
    and g (S_S ∪ S_I) trained on the given ``labels`` (N,): one row per point with ``index``, ``subset``,
    ``label`` (given), ``true_label`` and ``is_flipped`` (where ``data.labels`` exist), ``p_f``, ``p_g`` and
    ``mem`` = p_f − p_g, joined with ``data.meta`` as :func:`~clipmem_lib.clipmem.clipmem_frame` does."""
    device = (ctx or Context()).device
    subsets = splits.subsets()
    idx = np.concatenate(list(subsets.values()))
    labels = np.asarray(labels, dtype=np.int64)
    kw = dict(n_crops=n_crops, crop_scale=crop_scale, seed=seed, device=device)
    p_f, p_g = (label_probabilities(m, data, idx, labels, **kw) for m in (f, g))
    df = pd.DataFrame(dict(index=idx, subset=np.concatenate([[k] * len(v) for k, v in subsets.items()]),
                           label=labels[idx]))
    if data.labels is not None:
        df["true_label"] = np.asarray(data.labels)[idx]
        df["is_flipped"] = df.label != df.true_label
    df = df.assign(p_f=p_f, p_g=p_g, mem=label_memorisation(p_f, p_g))
    return df.join(data.meta.reset_index(drop=True), on="index")


def test_accuracy(trained: TrainedModel, probe: PairData, *, batch_size: int = 512,
                  ctx: Context | None = None) -> float:
    """Accuracy of the classifier's most probable class on a clean labelled set (``probe.labels``): the
    utility of Fig. 8."""
    if probe.labels is None:
        raise ValueError(f"{probe.name} has no labels to test on")
    probs = class_probabilities(trained, probe, np.arange(len(probe)), batch_size=batch_size,
                                device=(ctx or Context()).device)
    return float((probs.argmax(1).numpy() == np.asarray(probe.labels)).mean())


test_accuracy.__test__ = False  # a library function, not a pytest test, when a test module imports it
