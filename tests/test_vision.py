"""The Sec. 4.5 baselines on CLIP's image tower: multi-label targets, DINO's momentum schedule and a
training step through lightly, and a supervised model that learns its labels."""
import json

import numpy as np
import pytest
import torch


from clipmem_lib.vision import (Encoder, VisionConfig, first_level_targets, teacher_momentum, train_dino,
                                train_supervised, vision_tower)


@pytest.fixture(scope="module")
def scenes(scenes_of):
    return scenes_of(300, seed=3, n_variants=3)  # shared with test_data


def test_first_level_targets_are_the_colours_present(scenes):
    y, names = first_level_targets(scenes)
    for i in (0, 7, 42):
        present = {o["colour"] for o in json.loads(scenes.meta.description[i])["objects"]}
        assert {names[j] for j in np.flatnonzero(y[i])} == present
    assert y.shape == (300, len(names)) and (y.sum(1) >= 1).all()


def test_teacher_momentum_rises_from_base_to_one():
    assert teacher_momentum(0, 100) == pytest.approx(0.996)
    assert teacher_momentum(100, 100) == pytest.approx(1.0)
    assert teacher_momentum(25, 100) < teacher_momentum(50, 100) < teacher_momentum(75, 100)


def test_encoder_is_clip_shaped(scenes):
    enc = Encoder(vision_tower("clipmem-tiny"))
    z = enc.encode_image(torch.randn(3, 3, 32, 32), normalize=True)
    assert z.shape == (3, 64) and torch.allclose(z.norm(dim=-1), torch.ones(3), atol=1e-5)


def test_dino_views_in_one_batch_give_each_views_own_output():
    """train_dino sends all its crops through the student in one forward: right only while neither the
    tower nor lightly's head uses batch statistics (no BatchNorm, in train mode)."""
    from lightly.models.modules import DINOProjectionHead

    torch.manual_seed(0)
    tower = vision_tower("clipmem-tiny")
    student = torch.nn.Sequential(tower, DINOProjectionHead(64, 256, 64, 128)).train()
    views = [torch.randn(5, 3, 32, 32) for _ in range(4)]
    together = student(torch.cat(views)).chunk(4)
    for v, t in zip(views, together):
        torch.testing.assert_close(t, student(v), atol=1e-5, rtol=1e-4)


@pytest.mark.slow
def test_dino_trains_deterministically_and_changes_the_tower(scenes):
    cfg = VisionConfig(epochs=2, batch_size=64, n_local=2, out_dim=128)
    towers = [vision_tower("clipmem-tiny") for _ in range(2)]
    before = [p.clone() for p in towers[0].parameters()]
    hists = [train_dino(t, scenes.images, range(256), cfg, device="cpu", progress=False) for t in towers]
    timing = ("seconds", "samples_per_s")
    assert [{k: v for k, v in h.items() if k not in timing} for h in hists[0]] == \
        [{k: v for k, v in h.items() if k not in timing} for h in hists[1]]
    assert all(np.isfinite(h["loss"]) for h in hists[0])
    assert any(not torch.equal(a, b) for a, b in zip(before, towers[0].parameters()))
    assert all(torch.equal(a, b) for a, b in zip(towers[0].parameters(), towers[1].parameters()))


@pytest.mark.slow
def test_supervised_model_learns_its_multilabel_targets(scenes):
    y, _ = first_level_targets(scenes)
    tower = vision_tower("clipmem-tiny")
    hist = train_supervised(tower, scenes.images, range(256), y, VisionConfig(epochs=15, batch_size=64, lr=2e-3),
                            device="cpu", progress=False)
    assert hist[-1]["loss"] < 0.6 * hist[0]["loss"]
    with pytest.raises(ValueError, match="fewer than one batch"):
        train_supervised(tower, scenes.images, range(10), y, VisionConfig(batch_size=64), device="cpu", progress=False)


@pytest.mark.slow
def test_dino_resumes_from_its_checkpoint_exactly(scenes, tmp_path):
    """The shared epoch engine: an interrupted DINO run (student, EMA teacher and loss centre saved)
    resumes to the same weights as an uninterrupted one."""
    cfg = VisionConfig(epochs=2, batch_size=64, n_local=1, out_dim=64)
    whole = vision_tower("clipmem-tiny")
    train_dino(whole, scenes.images, range(128), cfg, device="cpu", progress=False)

    def stop(epoch):
        raise KeyboardInterrupt

    ckpt = tmp_path / "last.pt"
    with pytest.raises(KeyboardInterrupt):
        train_dino(vision_tower("clipmem-tiny"), scenes.images, range(128), cfg, device="cpu", progress=False,
                   checkpoint=ckpt, on_epoch_end=stop)
    resumed = vision_tower("clipmem-tiny")
    hist = train_dino(resumed, scenes.images, range(128), cfg, device="cpu", progress=False, checkpoint=ckpt)
    assert [h["epoch"] for h in hist] == [0, 1]
    assert all(torch.equal(a, b) for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()))


def test_no_weight_decay_on_gains_and_biases():
    from clipmem_lib.engine import decay_groups

    tower = vision_tower("clipmem-tiny")
    decay, no_decay = decay_groups(tower, 0.04)
    assert decay["weight_decay"] == 0.04 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decay["params"]) and all(p.ndim < 2 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(tower.parameters()))
