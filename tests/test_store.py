"""The run store: cache hits, atomic entries, forced rebuilds, code versions in the keys, typed tables;
fit_clip and fit_vision train once per job."""
import pandas as pd
import pytest
import torch

import clipmem_lib.fitting as fitting
from clipmem_lib import store as store_mod
from clipmem_lib.experiment import Context, fit_clip, fit_vision
from clipmem_lib.store import RunStore, config_key, output_path
from clipmem_lib.train import TrainConfig


@pytest.fixture
def kind_k(monkeypatch):
    monkeypatch.setitem(store_mod.VERSIONS, "k", 1)


def test_config_key_is_stable_and_sensitive():
    assert config_key(dict(a=1, b=[1, 2])) == config_key(dict(b=[1, 2], a=1))
    assert config_key(TrainConfig()) != config_key(TrainConfig(epochs=81))


def test_cache_hit_atomic_and_force(tmp_path, kind_k):
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

    key2 = RunStore.key_of("k", dict(a=2))
    with pytest.raises(KeyboardInterrupt):
        store.build("k", dict(a=2), crash)
    assert store.entry("k", dict(a=2)) is None  # nothing half-written is visible
    assert not list((tmp_path / ".tmp").iterdir())
    assert (tmp_path / ".scratch" / f"k-{key2}" / "ckpt").exists()  # resumable state kept
    store.build("k", dict(a=2), builder)
    assert store.entry("k", dict(a=2)) is not None
    assert not (tmp_path / ".scratch" / f"k-{key2}").exists()  # cleaned on success


def test_a_version_bump_hides_entries_of_the_old_code(tmp_path, kind_k, monkeypatch):
    store, calls = RunStore(tmp_path), []
    build = lambda out, _: calls.append(1)  # noqa: E731
    old = store.build("k", dict(a=1), build)
    monkeypatch.setitem(store_mod.VERSIONS, "k", 2)
    assert store.entry("k", dict(a=1)) is None  # the old entry is not reused...
    new = store.build("k", dict(a=1), build)
    assert len(calls) == 2 and new != old and old.exists()  # ...but it is kept, not overwritten
    with pytest.raises(KeyError, match="store.VERSIONS"):
        store.build("unregistered", dict(a=1), build)


def test_every_kind_the_library_stores_has_a_version():
    import inspect
    import re

    from clipmem_lib import fitting as fm, measure

    used = set(re.findall(r'store\.(?:build|frame)\("(\w+)"', inspect.getsource(measure)))
    used |= {"clip", "dino", "supervised"}  # job kinds (fitting.fit builds under job.kind)
    assert "kind: ClassVar[str] = \"clip\"" in inspect.getsource(fm)
    assert used <= set(store_mod.VERSIONS), used - set(store_mod.VERSIONS)


def test_frames_come_back_typed(tmp_path, monkeypatch):
    monkeypatch.setitem(store_mod.VERSIONS, "t", 1)
    df = pd.DataFrame(dict(i=[1, 2], flag=[True, False], name=["", "a"], x=[0.5, float("nan")]))
    out = RunStore(tmp_path).frame("t", dict(a=1), lambda: df)
    out = RunStore(tmp_path).frame("t", dict(a=1), lambda: 1 / 0)  # second call: read back, not computed
    assert out.flag.dtype == bool and out.flag.tolist() == [True, False] and out.i.dtype.kind == "i"
    assert out.name.tolist() == ["", "a"] and out.x.isna().tolist() == [False, True]


def test_a_store_without_root_keeps_nothing(kind_k):
    calls = []
    for _ in range(2):
        RunStore(None).build("k", dict(a=1), lambda out, _: calls.append(1))
    assert len(calls) == 2 and RunStore(None).entry("k", dict(a=1)) is None


def test_output_path_follows_the_env(tmp_path, monkeypatch):
    monkeypatch.setenv(store_mod.OUTPUT_ENV, str(tmp_path))
    assert output_path("runs") == tmp_path / "runs"
    assert output_path("/abs/runs") == type(tmp_path)("/abs/runs")


@pytest.mark.slow
def test_fit_clip_cache_hit_does_not_retrain(tmp_path, monkeypatch, scenes_140):
    data, ctx = scenes_140, Context(RunStore(tmp_path), device="cpu", progress=False)
    cfg, n = TrainConfig(epochs=1, batch_size=64), []
    real = fitting.train_clip
    monkeypatch.setattr(fitting, "train_clip", lambda *a, **k: n.append(1) or real(*a, **k))
    a = fit_clip(data, range(128), config=cfg, ctx=ctx)
    b = fit_clip(data, range(128), config=cfg, ctx=ctx)
    assert len(n) == 1 and a.key == b.key and a.model_name == "clipmem-tiny"
    assert all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))
    fit_clip(data, range(1, 129), config=cfg, ctx=ctx)  # other data: trains
    assert len(n) == 2
    fit_clip(data, range(128), config=cfg, ctx=ctx, force=True)
    assert len(n) == 3


@pytest.mark.slow
def test_fit_vision_cache_hit_does_not_retrain(tmp_path, monkeypatch, scenes_140):
    from clipmem_lib.vision import VisionConfig

    data, ctx = scenes_140, Context(RunStore(tmp_path), device="cpu", progress=False)
    cfg, n = VisionConfig(epochs=1, batch_size=64, n_local=1, out_dim=64), []
    real = fitting.train_supervised
    monkeypatch.setattr(fitting, "train_supervised", lambda *a, **k: n.append(1) or real(*a, **k))
    a = fit_vision("supervised", data, range(128), config=cfg, ctx=ctx)
    b = fit_vision("supervised", data, range(128), config=cfg, ctx=ctx)
    assert len(n) == 1 and a.key == b.key and a.model.encode_image(torch.zeros(1, 3, 32, 32)).shape == (1, 64)
    assert all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))
    d = fit_vision("dino", data, range(128), config=cfg, ctx=ctx)
    assert d.key != a.key  # same data and config, another objective: another entry
    with pytest.raises(ValueError, match="kind must be"):
        fit_vision("mae", data, range(128), config=cfg, ctx=ctx)


def test_timings_count_each_call_once(tmp_path, monkeypatch):
    """A nested timed call's seconds are its own, not also its caller's (benchmarks/book_profile.py)."""
    import json
    import time

    from clipmem_lib.runtime import CHAPTER_ENV, TIMINGS_ENV, timed

    log = tmp_path / "t.jsonl"
    monkeypatch.setenv(TIMINGS_ENV, str(log))
    monkeypatch.setenv(CHAPTER_ENV, "x")
    inner = timed("embeddings")(lambda: time.sleep(0.05))
    timed("training")(lambda: (time.sleep(0.05), inner()))()
    rows = {r["category"]: r["seconds"] for r in map(json.loads, log.read_text().splitlines())}
    assert 0.05 <= rows["embeddings"] < 0.09 and 0.05 <= rows["training"] < 0.09
