"""Sec. 4.4 and 4.6 machinery: image variants in Eq. 3, the setting summaries of Tables 1/3/8, the removal
strategies and curve reading of Fig. 6, and parallel sweeps."""
import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from clipmem_lib import experiment as ex
from clipmem_lib.clipmem import alignment_scores, candidate_summary
from clipmem_lib.removal import detection_counts, doubling_grid, peak_and_cutoff, removal_order, without
from clipmem_lib.scenes import SceneConfig, make_scenes
from clipmem_lib.splits import make_splits, plant_miscaptions
from clipmem_lib.store import RunStore
from clipmem_lib.train import TrainConfig


# ------------------------------------------------------------------------------------------ removal

def pool_frame(clipmem, sim, sim_f=None, planted=None):
    n = len(clipmem)
    return pd.DataFrame(dict(index=np.arange(100, 100 + n), clipmem=clipmem, sim_g=sim,
                             sim_f=sim if sim_f is None else sim_f,
                             is_miscaptioned=np.zeros(n, bool) if planted is None else planted))


def test_removal_orders():
    pool = pool_frame([0.1, 0.9, -0.2, 0.5], [0.3, 0.8, 0.1, 0.2], sim_f=[0.9, 0.1, 0.5, 0.7],
                      planted=np.array([False, False, True, True]))
    assert removal_order(pool, "clipmem").tolist() == [101, 103, 100, 102]
    assert removal_order(pool, "similarity").tolist() == [102, 103, 100, 101]  # under g, which never saw S_C
    assert removal_order(pool, "similarity_f").tolist() == [101, 102, 103, 100]
    assert sorted(removal_order(pool, "oracle", seed=1)[:2].tolist()) == [102, 103]
    rnd = removal_order(pool, "random", seed=3)
    assert sorted(rnd.tolist()) == [100, 101, 102, 103] and rnd.tolist() == removal_order(pool, "random", 3).tolist()
    assert rnd.tolist() != removal_order(pool, "random", 4).tolist() or rnd.tolist() != removal_order(pool, "random", 5).tolist()
    with pytest.raises(ValueError, match="unknown removal strategy 'loss'"):
        removal_order(pool, "loss")


def test_detection_counts_without_retraining():
    planted = np.array([True, False, True, False, False, False])
    pool = pool_frame([0.9, 0.1, 0.8, 0.2, 0.3, 0.0], [0.1, 0.5, 0.6, 0.2, 0.9, 0.8], planted=planted)
    counts = detection_counts(pool, [1, 2, 4], ["clipmem", "similarity", "oracle"])
    assert counts["clipmem"].tolist() == [1, 2, 2] and counts["oracle"].tolist() == [1, 2, 2]
    assert counts["similarity"].tolist() == [1, 1, 2]  # g-similarity order: 100, 103, 101, 102


def test_clipmem_removal_takes_planted_miscaptions_first():
    """Planted pairs scoring highest must be the first k CLIPMem removes; random removal finds ~k·share."""
    rng = np.random.default_rng(0)
    planted = np.zeros(200, bool)
    planted[rng.choice(200, 20, replace=False)] = True
    pool = pool_frame(np.where(planted, 0.6, 0.1) + rng.normal(0, 0.05, 200), rng.random(200))
    first = removal_order(pool, "clipmem")[:20] - 100
    assert planted[first].all()
    assert planted[removal_order(pool, "random", 0)[:20] - 100].sum() < 10


def test_doubling_grid_and_without():
    assert doubling_grid(200, [0.05, 0.1, 0.2, 0.4, 0.8]) == [10, 20, 40, 80, 160]
    assert doubling_grid(5000, [0.02, 0.04]) == [100, 200]
    assert doubling_grid(10, [0.01]) == [1]
    with pytest.raises(ValueError, match=r"removal fractions must lie in \(0, 1\]"):
        doubling_grid(200, [0.5, 1.5])
    assert without([5, 3, 9, 1, 7], [9, 5]).tolist() == [3, 1, 7]


def curve_frame(clip, rand, base=0.5):
    ks = [10, 20, 40, 80]
    rows = [dict(strategy=s, k=0, utility=base) for s in ("clipmem", "random")]
    rows += [dict(strategy="clipmem", k=k, utility=u) for k, u in zip(ks, clip)]
    rows += [dict(strategy="random", k=k, utility=u) for k, u in zip(ks, rand)]
    return pd.DataFrame(rows)


def test_peak_and_cutoff():
    out = peak_and_cutoff(curve_frame([0.52, 0.55, 0.49, 0.40], [0.50, 0.50, 0.50, 0.48]))
    assert out == dict(peak_k=20, peak_gain=pytest.approx(0.05), cutoff_k=40)
    assert peak_and_cutoff(curve_frame([0.6, 0.6, 0.6, 0.6], [0.5] * 4))["cutoff_k"] is None
    assert peak_and_cutoff(curve_frame([0.4, 0.45, 0.3, 0.3], [0.5] * 4))["cutoff_k"] == 10


# ------------------------------------------------------------------------------- setting summaries

def test_candidate_summary_against_hand_computation():
    cm = np.array([0.9, 0.1, 0.5, 0.3, 0.7, -0.2, 0.0, 0.2, 0.05, 0.4])
    df = pd.DataFrame(dict(subset=["S_C"] * 5 + ["S_S"] * 5, clipmem=cm, clipmem_raw=cm * 3))
    out = candidate_summary(df, top_k=2, top_fraction=0.4)
    assert out["clipmem"] == pytest.approx(0.5) and out["clipmem_raw"] == pytest.approx(1.5)
    assert out["top_k"] == pytest.approx(0.8) and out["top_fraction"] == pytest.approx(0.8)
    # AUC: share of (S_C, S_S) pairs ordered correctly
    pairs = [(c, s) for c in cm[:5] for s in cm[5:]]
    assert out["auc"] == pytest.approx(np.mean([c > s for c, s in pairs]))


def test_variants_average_in_eq3_like_a_loop_over_images():
    """With V image variants, Eq. 3's first term averages every variant's crops with the captions, and the
    test-caption term uses each variant: the view layout of model_embeddings must give exactly that."""
    g = torch.Generator().manual_seed(0)
    unit = lambda *s: F.normalize(torch.randn(*s, generator=g), dim=-1)  # noqa: E731
    P, V, K, C, d = 4, 3, 2, 2, 8
    per_variant = unit(P, V, 1 + K, d)  # view 0 un-augmented, then K crops, for each variant
    caps, timg, tcap = unit(P, C, d), unit(5, d), unit(5, C, d)
    plain = per_variant[:, :, 0].mean(1, keepdim=True)
    views = torch.cat([plain, per_variant[:, :, 1:].reshape(P, V * K, d)], 1)  # model_embeddings' layout
    got = alignment_scores(views, caps, timg, tcap)
    want = []
    for p in range(P):
        first = np.mean([float(per_variant[p, v, 1 + k] @ caps[p, c]) for v in range(V) for k in range(K) for c in range(C)])
        second = np.mean([float(per_variant[p, v, 0] @ t) for v in range(V) for m in range(5) for t in tcap[m]])
        third = np.mean([float(timg[m] @ caps[p, c]) for m in range(5) for c in range(C)])
        want.append(first - second - third)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_scene_variants_keep_the_original_and_the_cache_key():
    one, six = make_scenes(SceneConfig(n=20, n_variants=1)), make_scenes(SceneConfig(n=20, n_variants=3))
    assert one.images.fingerprint() == six.images.fingerprint()  # a model on variant 0 is the same model
    assert torch.equal(one.images.pixels[:, 0], six.images.pixels[:, 0]) and one.captions == six.captions
    assert not torch.equal(six.images.pixels[:, 0], six.images.pixels[:, 1])


# -------------------------------------------------------------------------------- sweeps (training)

@pytest.fixture(scope="module")
def small(scenes_of):
    data = scenes_of(320, seed=1, n_variants=3)
    return data, make_splits(len(data), 32, 32, seed=1)


@pytest.mark.slow
def test_fit_many_in_parallel_trains_each_missing_model_once(small, tmp_path):
    data, splits = small
    ctx = ex.Context(RunStore(tmp_path), device="cpu", progress=False, n_jobs=2)
    cfg = TrainConfig(epochs=2, batch_size=64)
    jobs = ex.fg_jobs(data, splits, "clipmem-tiny", cfg)
    models = ex.fit_many(jobs + jobs[:1], ctx)  # a duplicate job is trained once
    assert len(models) == 3 and models[0].key == models[2].key and len(list((tmp_path / "clip").iterdir())) == 2
    seq = ex.fit_clip(data, splits.f_indices, "clipmem-tiny", cfg, ctx=ctx.replace(n_jobs=1))
    assert seq.key == models[0].key  # same key as a sequential fit: loaded, not retrained
    bad = dataclasses.replace(cfg, image_variants=(5,))
    with pytest.raises(ValueError, match=r"image_variants=\(5,\) but the data has 3 variant"):
        ex.fit_many(ex.fg_jobs(data, splits, "clipmem-tiny", bad), ctx)


@pytest.mark.slow
def test_compare_settings_and_removal_curve_end_to_end(small, tmp_path):
    """Two settings and a removal curve on a tiny run: rows, keys and planted counts must be consistent."""
    data, splits = small
    ctx = ex.Context(RunStore(tmp_path), device="cpu", progress=False)
    base = TrainConfig(epochs=2, batch_size=64)
    probe = make_scenes(SceneConfig(n=90, seed=5, min_objects=1, max_objects=1))
    table = ex.compare_settings(data, splits, {"first": base, "variants": dataclasses.replace(base, image_variants=(1, 2))},
                                probe, n_crops=2, n_test=10, probe_seeds=(0, 1), ctx=ctx)
    assert table.setting.tolist() == ["first", "variants"] and table.f.nunique() == 2
    assert ((table.lp_acc > 0) & (table.lp_acc <= 1) & (table.auc >= 0) & (table.auc <= 1)).all()
    planted = plant_miscaptions(data, splits.candidates, 0.25, seed=1)
    f, g = ex.fit_f_and_g(planted, splits, "clipmem-tiny", base, ctx=ctx)
    curve = ex.removal_curve(f, g, planted, splits, probe, [0.25], n_crops=2, n_test=10, probe_seeds=(0,), ctx=ctx)
    assert sorted(curve.k.unique()) == [0, 8]
    assert (curve[curve.k == 0].model == f.key).all() and curve[curve.k > 0].model.nunique() == 3
    scores = ex.score_clipmem(f, g, planted, splits, n_crops=2, n_test=10, ctx=ctx)
    cand = scores[scores.subset == "S_C"].sort_values("clipmem", ascending=False, kind="stable")
    top = curve[(curve.strategy == "clipmem") & (curve.k == 8)].planted_removed.item()
    assert top == int(cand.head(8).is_miscaptioned.sum())


def test_removal_retrains_with_f_s_own_architecture(monkeypatch):
    """removal_curve retrains f with the architecture f was trained with (recorded in TrainedModel), not a
    default model name; checked without training by capturing the jobs it sends to fit_many."""
    from clipmem_lib import sweeps
    from clipmem_lib.fitting import TrainedModel

    data = make_scenes(SceneConfig(n=60, seed=7))
    splits = make_splits(len(data), 10, 10, seed=7)
    f = TrainedModel(None, "f", "clipmem-small", TrainConfig(epochs=1), [], None)
    g = TrainedModel(None, "g", "clipmem-small", TrainConfig(epochs=1), [], None)
    sent = []
    monkeypatch.setattr(sweeps, "score_clipmem", lambda *a, **k: pd.DataFrame(
        dict(index=splits.candidates, subset="S_C", clipmem=np.linspace(1, 0, 10))))
    monkeypatch.setattr(sweeps, "pair_similarity", lambda m, d, idx, **k: np.zeros(len(idx)))
    monkeypatch.setattr(sweeps, "fit_many", lambda jobs, ctx=None: sent.extend(jobs) or
                        [TrainedModel(None, f"m{i}", j.model_name, j.config, [], None) for i, j in enumerate(jobs)])
    monkeypatch.setattr(sweeps, "utility", lambda m, *a, **k: dict(lp_acc=0.5, lp_std=0.0, r_at_1=0.1))
    curve = sweeps.removal_curve(f, g, data, splits, data, [0.2])
    assert sent and {j.model_name for j in sent} == {"clipmem-small"} and len(curve) == 6


def test_grid_helpers_for_fixed_k():
    from clipmem_lib.removal import first_k_covering, nearest_k

    from clipmem_lib.removal import nearest

    assert nearest([0.0, 0.01, 0.05, 0.1, 0.15, 0.2, 1.0], 0.15) == 0.15 and nearest([0.0, 0.1, 0.5], 0.15) == 0.1
    assert nearest_k([20, 40, 80], 20) == 20 and nearest_k([20, 40, 80], 30) == 20 and nearest_k([20, 40, 80], 61) == 80
    assert first_k_covering([20, 40, 80], 25) == 40 and first_k_covering([20, 40, 80], 100) == 80


def test_stack_and_at_seed():
    from clipmem_lib.sweeps import at_seed, stack

    t = pd.DataFrame(dict(seed=[0, 1, 0], x=[1, 2, 3]))
    assert at_seed(t, 0).x.tolist() == [1, 3] and "seed" not in at_seed(t, 0)
    both = stack({"clean": t, "planted": t})
    assert both.data.tolist() == ["clean"] * 3 + ["planted"] * 3


def test_noise_settings_per_placement_share_the_no_noise_baseline():
    from clipmem_lib.sweeps import noise_settings

    base = TrainConfig(epochs=3)
    raw, unit = noise_settings(base, [0, 0.15], "raw"), noise_settings(base, [0, 0.15], "normalized")
    assert raw["std 0"] is base and unit["std 0"] is base  # one model (one store key) for both placements
    assert (raw["std 0.15"].text_noise_at, unit["std 0.15"].text_noise_at) == ("raw", "normalized")
    assert raw["std 0.15"].text_noise_std == unit["std 0.15"].text_noise_std == 0.15
    with pytest.raises(ValueError, match="noise_at='middle'"):
        noise_settings(base, [0, 0.15], "middle")
    with pytest.raises(ValueError, match="must include 0"):
        noise_settings(base, [0.15], "raw")


def test_noise_over_training_reads_the_norm_off_the_logged_ratio(monkeypatch):
    import math
    import types

    import pandas as pd
    from clipmem_lib import sweeps
    from clipmem_lib.train import TrainConfig

    f = types.SimpleNamespace(config=TrainConfig(text_noise_std=0.5),
                              history=[dict(epoch=0, noise_to_signal=0.8), dict(epoch=1, noise_to_signal=0.2)])
    base = types.SimpleNamespace(config=TrainConfig(), history=[dict(epoch=0, noise_to_signal=0.0)])
    monkeypatch.setattr(sweeps, "_settings_jobs", lambda *a: ([("std 0.5", 3), ("std 0", 3)], [f, None, base, None]))
    monkeypatch.setattr(sweeps, "stored_history", lambda job, ctx: job.history)
    h = sweeps.noise_over_training(None, None, {}, model_name="clipmem-tiny")
    assert list(h.setting) == ["std 0.5", "std 0.5"] and list(h.epoch) == [1, 2]  # std 0 has no ratio to invert
    np.testing.assert_allclose(h.feature_norm, [0.5 * 8 / 0.8, 0.5 * 8 / 0.2])  # σ·√64 / ratio
    growth = sweeps.feature_norm_growth(pd.concat([h, h.assign(seed=4, feature_norm=[1.0, 3.0])]))
    assert growth["std 0.5"] == pytest.approx((4.0 + 3.0) / 2)  # (20/5 + 3/1) / 2 seeds
    assert math.isclose(sweeps.model_config("clipmem-tiny")["embed_dim"], 64)


def test_utility_gap_against_hand_computation():
    from scipy import stats
    from clipmem_lib.removal import utility_gap

    clean = {0: dict(r_at_1=0.15, lp_acc=0.90), 1: dict(r_at_1=0.13, lp_acc=0.88), 2: dict(r_at_1=0.16, lp_acc=0.91)}
    planted = {0: dict(r_at_1=0.09, lp_acc=0.86), 1: dict(r_at_1=0.08, lp_acc=0.87), 2: dict(r_at_1=0.10, lp_acc=0.85)}
    gap = utility_gap(clean, planted)
    d = np.array([0.06, 0.05, 0.06])
    r = gap.loc["r_at_1"]
    assert r.gap == pytest.approx(d.mean()) and r.n_seeds == 3
    assert r.high == pytest.approx(d.mean() + stats.t.ppf(0.975, 2) * d.std(ddof=1) / np.sqrt(3))
    spread = (np.std([0.15, 0.13, 0.16], ddof=1) + np.std([0.09, 0.08, 0.10], ddof=1)) / 2
    assert r.seed_spread == pytest.approx(spread) and r.ratio == pytest.approx(d.mean() / spread)


def test_stored_history_reads_the_entry_without_the_weights(tmp_path, scenes_140):
    from clipmem_lib.fitting import ClipJob, stored_history
    from clipmem_lib.runtime import Context
    from clipmem_lib.store import RunStore

    job = ClipJob(scenes_140, np.arange(100))
    ctx = Context(store=RunStore(tmp_path), progress=False)
    hist = [dict(epoch=0, loss=2.0, noise_to_signal=0.3), dict(epoch=1, loss=1.5, noise_to_signal=0.2)]
    ctx.store.build(job.kind, job.key(), lambda out, _: pd.DataFrame(hist).to_csv(out / "history.csv", index=False))
    assert stored_history(job, ctx) == hist  # the entry has no model.pt: the weights are never read
