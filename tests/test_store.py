"""The run store: cache hits, atomic entries, forced rebuilds; fit_clip trains once per config."""
import pytest
import torch

import clipmem_lib.experiment as ex
from clipmem_lib.scenes import SceneConfig, make_scenes
from clipmem_lib.store import RunStore, config_key
from clipmem_lib.train import TrainConfig


def test_config_key_is_stable_and_sensitive():
    assert config_key(dict(a=1, b=[1, 2])) == config_key(dict(b=[1, 2], a=1))
    assert config_key(TrainConfig()) != config_key(TrainConfig(epochs=81))


def test_cache_hit_atomic_and_force(tmp_path):
    store, calls = RunStore(tmp_path), []

    def builder(out, scratch):
        calls.append(1)
        (out / "x.txt").write_text(str(len(calls)))

    p1 = store.build("k", dict(a=1), builder)
    p2 = store.build("k", dict(a=1), builder)
    assert p1 == p2 and len(calls) == 1 and (p1 / "x.txt").read_text() == "1"
    store.build("k", dict(a=1), builder, force=True)
    assert len(calls) == 2 and (p1 / "x.txt").read_text() == "2"

    def crash(out, scratch):
        (out / "half.txt").write_text("partial")
        (scratch / "ckpt").write_text("resumable")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.build("k", dict(a=2), crash)
    assert store.entry("k", dict(a=2)) is None  # nothing half-written is visible
    assert not list((tmp_path / ".tmp").iterdir())
    assert (tmp_path / ".scratch" / f"k-{config_key(dict(a=2))}" / "ckpt").exists()  # resumable state kept
    store.build("k", dict(a=2), builder)
    assert store.entry("k", dict(a=2)) is not None
    assert not (tmp_path / ".scratch" / f"k-{config_key(dict(a=2))}").exists()  # cleaned on success


def test_fit_clip_cache_hit_does_not_retrain(tmp_path, monkeypatch):
    data = make_scenes(SceneConfig(n=140, seed=2))
    store, cfg, n = RunStore(tmp_path), TrainConfig(epochs=1, batch_size=64), []
    real = ex.train_clip
    monkeypatch.setattr(ex, "train_clip", lambda *a, **k: n.append(1) or real(*a, **k))
    a = ex.fit_clip(data, range(128), config=cfg, store=store, progress=False, device="cpu")
    b = ex.fit_clip(data, range(128), config=cfg, store=store, progress=False, device="cpu")
    assert len(n) == 1 and a.key == b.key
    assert all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))
    ex.fit_clip(data, range(1, 129), config=cfg, store=store, progress=False, device="cpu")  # other data: trains
    assert len(n) == 2
    ex.fit_clip(data, range(128), config=cfg, store=store, progress=False, device="cpu", force=True)
    assert len(n) == 3


def test_fit_vision_cache_hit_does_not_retrain(tmp_path, monkeypatch):
    from clipmem_lib.vision import VisionConfig

    data = make_scenes(SceneConfig(n=140, seed=2))
    store, cfg, n = RunStore(tmp_path), VisionConfig(epochs=1, batch_size=64, n_local=1, out_dim=64), []
    real = ex.train_supervised
    monkeypatch.setattr(ex, "train_supervised", lambda *a, **k: n.append(1) or real(*a, **k))
    a = ex.fit_vision("supervised", data, range(128), config=cfg, store=store, progress=False, device="cpu")
    b = ex.fit_vision("supervised", data, range(128), config=cfg, store=store, progress=False, device="cpu")
    assert len(n) == 1 and a.key == b.key and a.model.encode_image(torch.zeros(1, 3, 32, 32)).shape == (1, 64)
    assert all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))
    d = ex.fit_vision("dino", data, range(128), config=cfg, store=store, progress=False, device="cpu")
    assert d.key != a.key  # same data and config, another objective: another entry
    with pytest.raises(ValueError, match="kind must be"):
        ex.fit_vision("mae", data, range(128), config=cfg, store=store)
