"""The design of the appendix experiments (chapter 08): their parameter checks, the built-in data they
need, the larger data set of Table 6 and the removal grid of Fig. 8.

Tables 5 and A.6 run on the chapter's data.  Table 6 (many more pairs), Fig. 8 (one label per image)
and Tables 4/7 (captions rewritten from each scene's description) need what only the built-in
generator has, so on real data they run on built-in scenes of the same size and say so.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .data import PairData
from .datasets import load_dataset
from .scenes import SceneConfig, make_scenes
from .models import model_config
from .splits import Splits, make_splits, plant_miscaptions

__all__ = ["check_parameters", "builtin_stand_in", "one_epoch_data", "scored_sample", "labelled_scenes", "removal_ks"]


def check_parameters(size_models, data_multiple: int, flip_fraction: float, second_model: str) -> None:
    """One clear error for an appendix parameter out of range or a model config that does not exist,
    before anything trains."""
    if len(size_models) != 2 or size_models[0] == size_models[1]:
        raise ValueError(f"size_models must name two different configs, a smaller and a larger: got {size_models}")
    for name in (*size_models, second_model):
        model_config(name)  # raises, listing the known configs
    if "multimodal_cfg" not in model_config(second_model):
        raise ValueError(f"second_model={second_model!r} is a plain CLIP config; App. A.6 wants another kind of "
                         "multimodal model, such as clipmem-coca")
    if data_multiple < 1:
        raise ValueError(f"data_multiple must be at least 1, got {data_multiple}")
    if not 0 < flip_fraction <= 1:
        raise ValueError(f"flip_fraction must be in (0, 1], got {flip_fraction}")


def builtin_stand_in(data: PairData, splits: Splits, *, n_pairs: int, image_size: int,
                     seed: int = 0) -> tuple[PairData, Splits, bool]:
    """``(data, splits, True)`` if ``data`` are built-in scenes; otherwise ``n_pairs`` built-in scenes with
    S_C, S_I and S_E a tenth each, and False (Table 6, Fig. 8 and Tables 4/7 need the generator's ground
    truth: many more pairs, one label per image, each scene's description)."""
    if "description" in data.meta:
        return data, splits, True
    scenes = load_dataset("builtin", n_pairs=n_pairs, image_size=image_size, seed=seed)
    return scenes, make_splits(n_pairs, n_pairs // 10, n_pairs // 10, seed=seed), False


def one_epoch_data(n_pairs: int, multiple: int, *, n_candidates: int, n_external: int, poison_fraction: float,
                   image_size: int = 32, seed: int = 0) -> tuple[PairData, Splits]:
    """Table 6's data: ``multiple`` × ``n_pairs`` built-in pairs, S_C, S_I and S_E of the usual sizes (so
    every other pair is shared), and a ``poison_fraction`` of S_C with shuffled captions (Fig. 9)."""
    data = load_dataset("builtin", n_pairs=n_pairs * multiple, image_size=image_size, seed=seed)
    splits = make_splits(len(data), n_candidates, n_external, seed=seed)
    return plant_miscaptions(data, splits.candidates, poison_fraction, seed=seed), splits


def scored_sample(splits: Splits, n_shared: int, seed: int = 0) -> Splits:
    """``splits`` with S_S cut to a random ``n_shared`` of its pairs, for scoring only: Table 6's S_S is
    tens of thousands of pairs, and its mean needs no more than the small set's S_S has."""
    if n_shared >= len(splits.shared):
        return splits
    keep = np.sort(np.random.default_rng([seed, 9]).choice(splits.shared, size=n_shared, replace=False))
    return dataclasses.replace(splits, shared=keep)


def labelled_scenes(n_pairs: int, n_candidates: int, n_external: int, *, image_size: int = 32,
                    seed: int = 0) -> tuple[PairData, Splits]:
    """Fig. 8's labelled set: built-in scenes of one object each, labelled by its colour (8 classes), as
    CIFAR-10 images hold one labelled object; with the usual splits.  (With several objects, "the main
    object's colour" is ambiguous, and a classifier cannot learn the clean labels well enough for the
    flipped ones to stand out.)"""
    data = make_scenes(SceneConfig(n=n_pairs, seed=seed, image_size=image_size, min_objects=1, max_objects=1))
    return data, make_splits(n_pairs, n_candidates, n_external, seed=seed)


def removal_ks(n_flipped: int, n_candidates: int) -> list[int]:
    """Fig. 8's removal grid, fixed from the number of flipped labels n alone: n/2, n and 2n, at most all
    of S_C (the paper's utility peaks near n)."""
    if n_flipped < 2:
        raise ValueError(f"flip_fraction flips {n_flipped} label(s) of S_C; Fig. 8 needs at least 2")
    return sorted({max(1, n_flipped // 2), n_flipped, min(2 * n_flipped, n_candidates)})
