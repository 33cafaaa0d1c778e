"""The built-in dataset, splits and planted mis-captions."""
import json

import numpy as np
import pytest
import torch

from clipmem_lib.data import PairData, TensorImages
from clipmem_lib.scenes import COLOURS, PATTERNS, SceneConfig, make_probe_set, make_scenes
from clipmem_lib.splits import make_splits, plant_miscaptions


@pytest.fixture(scope="module")
def scenes(scenes_of):
    return scenes_of(300, seed=3, n_variants=3)


def test_scenes_are_deterministic_and_seed_dependent(scenes):
    again = make_scenes(SceneConfig(n=300, seed=3, n_variants=3))
    assert torch.equal(scenes.images.pixels, again.images.pixels) and scenes.captions == again.captions
    other = make_scenes(SceneConfig(n=300, seed=4, n_variants=3))
    assert not torch.equal(scenes.images.pixels, other.images.pixels)
    assert scenes.images.fingerprint() != other.images.fingerprint()


def test_scene_contents(scenes):
    assert scenes.images.pixels.shape == (300, 3, 3, 32, 32) and scenes.n_captions == 5
    m = scenes.meta
    for i in range(20):  # every caption names the scene's concept and its main object's colour
        assert all(m.concept_word[i] in c and m.colour[i] in c for c in scenes.captions[i])
    assert m.is_atypical.any() and not m.is_miscaptioned.any()
    assert (m.concept_count == m.concept.map(m.concept.value_counts())).all()
    assert m.concept_count.min() == 1  # a long tail: some concepts are seen exactly once
    # variants are re-renderings of the same description, not copies
    px = scenes.images.pixels.float()
    same_scene = (px[:, 0] - px[:, 1]).abs().mean()
    other_scene = (px[:, 0] - px.roll(1, 0)[:, 0]).abs().mean()
    assert 1 < same_scene < other_scene / 2
    assert scenes.labels.max() < 8 and len(np.unique(scenes.labels)) == 8


def test_probe_set_is_single_object_other_seed():
    p = make_probe_set(50, seed=99)
    assert (p.meta.n_objects == 1).all() and not p.meta.is_atypical.any() and p.labels is not None
    pattern = make_probe_set(50, seed=99, label="pattern")
    assert torch.equal(pattern.images.batch(range(50), [0] * 50, 32), p.images.batch(range(50), [0] * 50, 32))
    assert [PATTERNS[k] for k in pattern.labels] == [json.loads(d)["pattern"] for d in p.meta.description]
    assert [list(COLOURS)[k] for k in p.labels] == [json.loads(d)["objects"][0]["colour"] for d in p.meta.description]
    with pytest.raises(ValueError, match="unknown probe label 'size'"):
        make_probe_set(50, label="size")


def test_splits_disjoint_sizes_deterministic():
    s = make_splits(1000, n_candidates=100, n_external=50, seed=1)
    parts = [s.shared, s.candidates, s.independent, s.external]
    assert [len(p) for p in parts] == [750, 100, 100, 50]
    assert len(np.unique(np.concatenate(parts))) == 1000
    assert np.array_equal(make_splits(1000, 100, 50, seed=1).candidates, s.candidates)
    assert not np.array_equal(make_splits(1000, 100, 50, seed=2).candidates, s.candidates)
    assert np.array_equal(s.f_indices[750:], s.candidates) and np.array_equal(s.g_indices[750:], s.independent)
    assert len(make_splits(1000, 100, 50, n_shared=10).shared) == 10


@pytest.mark.parametrize("kw,msg", [(dict(n_candidates=400, n_external=300), "too large"),
                                    (dict(n_candidates=0, n_external=10), "n_candidates"),
                                    (dict(n_candidates=10, n_external=10, n_shared=990), "too large")])
def test_split_errors(kw, msg):
    with pytest.raises(ValueError, match=msg):
        make_splits(1000, **kw)


def test_plant_miscaptions(scenes):
    s = make_splits(len(scenes), n_candidates=50, n_external=20, seed=0)
    bad = plant_miscaptions(scenes, s.candidates, 0.2, seed=0)
    flagged = np.flatnonzero(bad.meta.is_miscaptioned)
    assert len(flagged) == 10 and set(flagged) <= set(s.candidates)
    for i in flagged:  # every flagged pair got another flagged pair's caption set
        assert bad.captions[i] != scenes.captions[i]
        assert bad.captions[i] in [scenes.captions[j] for j in flagged]
    untouched = np.setdiff1d(np.arange(len(scenes)), flagged)
    assert all(bad.captions[i] == scenes.captions[i] for i in untouched)
    assert not scenes.meta.is_miscaptioned.any()  # the original is not modified
    assert bad.caption_digest(s.shared) == scenes.caption_digest(s.shared)
    assert bad.caption_digest(s.candidates) != scenes.caption_digest(s.candidates)


def test_pairdata_errors():
    px = torch.zeros(2, 1, 3, 8, 8, dtype=torch.uint8)
    with pytest.raises(ValueError, match="2 images"):
        PairData([["a"]], TensorImages(px, "x"))
    with pytest.raises(ValueError, match="pair 1 has no caption"):
        PairData([["a"], []], TensorImages(px, "x"))
    with pytest.raises(ValueError, match="uint8"):
        TensorImages(px.float(), "x")
