"""UnitMem on activations with known answers, and the streaming statistics against a direct computation."""
import numpy as np
import pytest
import torch

from clipmem_lib.models import create_model
from clipmem_lib.unitmem import UnitActivations, gelu_blocks, unitmem


def test_known_answers():
    mu = torch.zeros(6, 4)
    mu[2, 0] = 3.0                     # unit 0 fires for exactly one point -> 1
    mu[:, 1] = 0.7                     # unit 1 fires uniformly -> 0
    mu[:, 2] = torch.tensor([1.0, 1, 1, 1, 1, 3])  # max 3, others 1 -> (3-1)/(3+1) = 0.5
    mu[:, 3] = -0.1                    # GELU's negative dip only: clamped to 0 -> 0, no division by zero
    u = unitmem(mu)
    np.testing.assert_allclose(u, [1.0, 0.0, 0.5, 0.0])


def test_mean_vs_median_and_negative_handling():
    mu = torch.tensor([[4.0], [2.0], [0.0], [0.0], [-0.15]])
    # others = [2, 0, 0, 0 (clamped)]: median 0 -> 1; mean 0.5 -> 3.5/4.5
    assert unitmem(mu, "median")[0] == pytest.approx(1.0)
    assert unitmem(mu, "mean")[0] == pytest.approx(3.5 / 4.5)
    with pytest.raises(ValueError, match="reduce"):
        unitmem(mu, "max")


def test_streaming_equals_direct():
    torch.manual_seed(0)
    model = create_model("clipmem-tiny", vocab_size=64, seed=0).eval()
    images = torch.randn(10, 3, 32, 32)
    mods = gelu_blocks(model.visual)
    acts = UnitActivations(mods, n_points=10)
    captured = {i: [] for i in range(len(mods))}
    hooks = [m.register_forward_hook(lambda mod, i, o, k=k: captured[k].append(o.detach().mean(1)))
             for k, m in enumerate(mods)]
    n_aug = 3
    with torch.no_grad():
        for a in range(n_aug):
            noisy = images + 0.1 * torch.randn_like(images)
            for pos in (torch.arange(0, 6), torch.arange(6, 10)):  # two batches per augmentation
                with acts.recording(pos):
                    model.encode_image(noisy[pos])
    for h in hooks:
        h.remove()
    acts.remove()
    mu = acts.means()
    assert len(mu) == 2 and mu[0].shape == (10, 4 * 64)  # 2 blocks, MLP width 4 x 64
    for k in range(2):
        per_aug = torch.stack([torch.cat(captured[k][2 * a:2 * a + 2]) for a in range(n_aug)])  # (aug, points, units)
        torch.testing.assert_close(mu[k].float(), per_aug.mean(0), rtol=1e-5, atol=1e-6)
    # the accumulator holds points x units, not augmentations
    assert all(s.shape == (10, 256) for s in acts.sums)


def test_unrecorded_points_are_an_error():
    model = create_model("clipmem-tiny", vocab_size=64).eval()
    acts = UnitActivations(gelu_blocks(model.visual), n_points=3)
    with torch.no_grad(), acts.recording([0, 1]):
        model.encode_image(torch.randn(2, 3, 32, 32))
    with pytest.raises(ValueError, match="1 points were never recorded"):
        acts.means()


def test_layer_unitmem_matches_per_augmentation_brute_force():
    """layer_unitmem = UnitMem of activations averaged over tokens and the same n_aug crops, per layer."""
    from clipmem_lib.augment import random_resized_crop, to_model_input
    from clipmem_lib.scenes import SceneConfig, make_scenes
    from clipmem_lib.unitmem import layer_unitmem

    data = make_scenes(SceneConfig(n=12, seed=3))
    model = create_model("clipmem-tiny", vocab_size=64, seed=1).eval()
    got = layer_unitmem(model, data.images, range(12), n_aug=3, crop_scale=(0.5, 1.0), seed=7, batch_size=5,
                        device="cpu")
    mods = gelu_blocks(model.visual)
    per_layer = {k: torch.zeros(12, 4 * 64) for k in range(len(mods))}
    x = to_model_input(data.images.batch(range(12), [0] * 12, 32))
    for k, m in enumerate(mods):
        for a in range(3):
            gen = torch.Generator().manual_seed(int(np.random.default_rng([7, a]).integers(2**62)))
            rows = []
            for start in range(0, 12, 5):  # the same generator draws, batch by batch
                out = []
                h = m.register_forward_hook(lambda mod, i, o: out.append(o.detach().mean(1)))
                with torch.no_grad():
                    model.encode_image(random_resized_crop(x[start:start + 5], gen, (0.5, 1.0)))
                h.remove()
                rows.append(out[0])
            per_layer[k] += torch.cat(rows) / 3
        want = unitmem(per_layer[k])
        np.testing.assert_allclose(got[got.layer == k].unitmem.to_numpy(), want, atol=1e-5)
    assert len(got) == len(mods) * 4 * 64 and not any(m._forward_hooks for m in mods)  # hooks removed


@pytest.mark.slow
def test_tracking_reads_the_snapshots_of_the_one_training(tmp_path, scenes_140, monkeypatch):
    """Fig. 11 from the snapshots fit_clip kept: the model is trained once, and the last record is the
    top-unit layout of the final model."""
    import clipmem_lib.experiment as ex
    import clipmem_lib.fitting as fitting
    from clipmem_lib.store import RunStore
    from clipmem_lib.train import TrainConfig
    from clipmem_lib.unitmem import top_unit_layers

    data, ctx = scenes_140, ex.Context(RunStore(tmp_path), device="cpu", progress=False)
    cfg, runs = TrainConfig(epochs=3, batch_size=64), []
    real = fitting.train_clip
    monkeypatch.setattr(fitting, "train_clip", lambda *a, **k: runs.append(1) or real(*a, **k))
    plain = ex.fit_clip(data, range(128), config=cfg, ctx=ctx)
    with pytest.raises(ValueError, match="snapshot_every"):
        ex.unitmem_during_training(plain, data, range(128), n_aug=2, ctx=ctx)
    f = ex.fit(ex.ClipJob(data, range(128), config=cfg, snapshot_every=2), ctx)  # stored without snapshots: once more
    again = ex.fit(ex.ClipJob(data, range(128), config=cfg, snapshot_every=2), ctx)
    assert len(runs) == 2 and f.key == plain.key == again.key and f.snapshot_epochs() == [2, 3]
    track = ex.unitmem_during_training(f, data, range(128), n_aug=2, ctx=ctx)
    assert sorted(track.epoch.unique()) == [2, 3] and len(runs) == 2
    assert np.allclose(track.groupby(["epoch", "top_percent"]).share.sum(), 1.0)
    final = top_unit_layers(ex.unitmem_layers(f, data, range(128), n_aug=2, crop_scale=cfg.crop_scale, ctx=ctx))
    last = track[track.epoch == 3].drop(columns="epoch").reset_index(drop=True)
    np.testing.assert_allclose(last.share, final.share, atol=1e-9)
    text = ex.unitmem_layers(f, data, range(128), tower="text", ctx=ctx)
    assert sorted(text.layer.unique()) == [0, 1] and text.unitmem.between(0, 1).all()


def test_top_unit_layers_shares_ties_and_counts_exactly():
    import pandas as pd

    from clipmem_lib.unitmem import top_unit_layers

    # 200 units: layer 0 holds 100 at 0.5; layer 1 holds 1 at 0.9 and 99 at 0.4; layers 2/3 tie at 1.0 (2 each)
    table = pd.DataFrame({"layer": [0] * 100 + [1] * 100 + [2, 2, 3, 3],
                          "unitmem": [0.5] * 100 + [0.9] + [0.4] * 99 + [1.0] * 4})
    out = top_unit_layers(table, percents=(1, 3)).set_index(["top_percent", "layer"]).share
    # top 1% of 204 units = 2 places, 4 units tied at 1.0: each gets half a place, whatever the order
    assert out[1].tolist() == pytest.approx([0, 0, 0.5, 0.5])
    # top 3% = 6 places: the four 1.0s, the 0.9, then one place shared by the hundred 0.5s of layer 0
    assert out[3].tolist() == pytest.approx([1 / 6, 1 / 6, 2 / 6, 2 / 6])
    shuffled = table.sample(frac=1, random_state=0)
    assert top_unit_layers(shuffled, (1, 3)).share.tolist() == pytest.approx(
        top_unit_layers(table, (1, 3)).share.tolist())


def test_median_of_the_other_points_is_numpys_median():
    """mu_-max with the median is numpy's median of the other points (the mean of the two middle values
    for an even count), checked with N = 7 points against the reference formula."""
    mu = np.random.default_rng(3).random((7, 40))
    med = np.median(np.sort(mu, 0)[:-1], 0)  # the other six points of each unit
    ref = (mu.max(0) - med) / (mu.max(0) + med)
    np.testing.assert_allclose(unitmem(mu, "median"), ref, atol=1e-12)


@pytest.mark.parametrize("treatment", ["relu", "shift"])
def test_gelu_treatments_transform_each_token_before_the_mean(treatment):
    """ReLU per token and the shift by GELU's minimum, against hooks that apply them by hand."""
    from clipmem_lib.unitmem import GELU_MIN

    model = create_model("clipmem-tiny", vocab_size=64, seed=2).eval()
    images = torch.randn(6, 3, 32, 32)
    mods = gelu_blocks(model.visual)
    acts = UnitActivations(mods, n_points=6, treatment=treatment)
    fn = (lambda o: o.clamp(min=0)) if treatment == "relu" else (lambda o: o - GELU_MIN)
    captured = []
    h = mods[1].register_forward_hook(lambda mod, i, o: captured.append(fn(o.detach()).mean(1)))
    with torch.no_grad(), acts.recording(torch.arange(6)):
        model.encode_image(images)
    h.remove()
    acts.remove()
    mu = acts.means()[1]
    torch.testing.assert_close(mu.float(), captured[0], rtol=1e-5, atol=1e-6)
    assert (mu >= 0).all() and (mu > 0).float().mean() > 0.5  # non-negative, and more than the clamp's zeros
    clamp = UnitActivations(mods, n_points=6)
    with torch.no_grad(), clamp.recording(torch.arange(6)):
        model.encode_image(images)
    clamp.remove()
    assert not torch.allclose(clamp.means()[1], mu)  # a different statistic from the clamp of the mean
    with pytest.raises(ValueError, match="treatment must be one of"):
        UnitActivations(mods, n_points=6, treatment="abs")


def test_gelu_min_is_the_minimum_of_gelu():
    from clipmem_lib.unitmem import GELU_MIN

    x = torch.linspace(-3, 1, 400001, dtype=torch.float64)
    assert float(torch.nn.functional.gelu(x).min()) == pytest.approx(GELU_MIN, abs=1e-5)


def test_saturation_by_layer_counts_units_at_one():
    import pandas as pd
    from clipmem_lib.unitmem import saturation_by_layer

    t = pd.DataFrame(dict(model=["a"] * 6, layer=[0, 0, 0, 1, 1, 1], unitmem=[1.0, 0.5, 1.0, 0.2, 0.9995, 0.3]))
    s = saturation_by_layer(t)
    assert s.loc["a", 0] == pytest.approx(2 / 3) and s.loc["a", 1] == pytest.approx(1 / 3)
