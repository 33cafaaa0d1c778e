"""The run store: cache hits, atomic entries, forced rebuilds, code versions in the keys, typed tables,
damaged entries set aside and recomputed, one training per key across processes; fit_clip and fit_vision
train once per job."""
import json
import multiprocessing
import time

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

    used = set(re.findall(r'store\.(?:build|frame|load)\("(\w+)"', inspect.getsource(measure)))
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


def _two_files(out, _):
    (out / "a.bin").write_bytes(bytes(range(256)) * 8)
    (out / "sub").mkdir()
    (out / "sub" / "b.txt").write_text("second file")


@pytest.mark.parametrize("damage", ["truncate", "garble", "delete"])
def test_a_damaged_entry_is_named_set_aside_and_rebuilt(tmp_path, kind_k, capsys, damage):
    store = RunStore(tmp_path)
    path = store.build("k", dict(a=1), _two_files)
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["a.bin"][0] == 2048 and set(manifest) == {"a.bin", "sub/b.txt"}
    f = path / "a.bin"
    if damage == "truncate":
        f.write_bytes(f.read_bytes()[:1000])
    elif damage == "garble":  # same size, one byte changed: only the checksum sees it
        f.write_bytes(b"\xff" + f.read_bytes()[1:])
    else:
        f.unlink()
    fresh = RunStore(tmp_path)  # a new process: nothing verified yet
    assert fresh.entry("k", dict(a=1)) is None
    line = capsys.readouterr().err.strip()
    key = RunStore.key_of("k", dict(a=1))
    assert len(line.splitlines()) == 1 and f"k entry {key} at {path}" in line and "a.bin" in line
    assert "sub/b.txt" not in line  # the intact file is not blamed
    (aside,) = (tmp_path / ".corrupt").iterdir()
    assert aside.name.startswith(f"k-{key}-") and (aside / "sub" / "b.txt").exists()
    calls = []
    again = fresh.build("k", dict(a=1), lambda out, s: (calls.append(1), _two_files(out, s)))
    assert calls == [1] and again == path and (path / "a.bin").read_bytes() == bytes(range(256)) * 8
    assert fresh.entry("k", dict(a=1)) == path and capsys.readouterr().err == ""


def test_an_entry_that_fails_to_load_is_set_aside_and_rebuilt(tmp_path, kind_k, capsys):
    """An entry written before manifests existed has nothing to check against: a failed load tells."""
    store, calls = RunStore(tmp_path), []

    def builder(out, _):
        calls.append(1)
        (out / "v.json").write_text(json.dumps(len(calls)))

    path = store.build("k", dict(a=1), builder)
    (path / "manifest.json").unlink()
    (path / "v.json").write_text("{not json")
    assert store.load("k", dict(a=1), builder, lambda p: json.loads((p / "v.json").read_text())) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "failed to load: JSONDecodeError" in err and str(path) in err
    with pytest.raises(ValueError):  # a reader that always fails raises after one rebuild, not in a loop
        store.load("k", dict(a=1), builder, lambda p: int("x"))
    assert len(calls) == 3


def test_a_damaged_table_and_model_recompute_to_identical_results(tmp_path, scenes_140, one_thread):
    """What a chapter does (train f and g, score CLIPMem) after a model and a table were truncated."""
    from clipmem_lib.experiment import fit_f_and_g, score_clipmem
    from clipmem_lib.splits import make_splits

    data, splits = scenes_140, make_splits(140, n_candidates=10, n_external=20, seed=0)
    cfg = TrainConfig(epochs=2, batch_size=32)

    def chapter():
        ctx = Context(RunStore(tmp_path), device="cpu", progress=False)
        f, g = fit_f_and_g(data, splits, config=cfg, ctx=ctx)
        return f, score_clipmem(f, g, data, splits, n_crops=2, n_test=None, ctx=ctx)

    f1, t1 = chapter()
    (tmp_path / "clip" / f1.key / "model.pt").write_bytes(b"x" * 1000)
    (table,) = (tmp_path / "clipmem").glob("*/table.parquet")
    table.write_bytes(table.read_bytes()[:1000])
    f2, t2 = chapter()
    assert len(list((tmp_path / ".corrupt").iterdir())) == 2
    assert all(torch.equal(a, b) for a, b in zip(f1.model.state_dict().values(), f2.model.state_dict().values()))
    pd.testing.assert_frame_equal(t1, t2)


def _build_once(root, log):
    store_mod.VERSIONS["k"] = 1

    def slow(out, _):
        with open(log, "a") as fh:
            fh.write("trained\n")
        time.sleep(1.5)
        (out / "x.txt").write_text("done")

    path = RunStore(root).build("k", dict(a=1), slow)
    with open(log, "a") as fh:
        fh.write(f"read {(path / 'x.txt').read_text()}\n")


def test_two_processes_on_one_key_train_it_once(tmp_path):
    spawn = multiprocessing.get_context("spawn")
    log = tmp_path / "log.txt"
    procs = [spawn.Process(target=_build_once, args=(tmp_path / "runs", log)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    assert sorted(log.read_text().splitlines()) == ["read done", "read done", "trained"]


def test_the_book_runner_prints_each_healed_entry_once_on_its_terminal(tmp_path, kind_k, capsys):
    from clipmem_lib.book import _HealedLines

    store = RunStore(tmp_path)
    store.build("k", dict(a=1), _two_files)
    store.build("k", dict(a=2), _two_files)
    healed = _HealedLines([tmp_path])  # what the runner notes before the chapters start
    for a in (1, 2):
        path = store.entry("k", dict(a=a))
        (path / "a.bin").write_bytes(b"garbled")
        assert RunStore(tmp_path).entry("k", dict(a=a)) is None  # set aside, as a chapter's kernel would
    capsys.readouterr()
    healed.say("02_memorisation")
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all(line.startswith("[book] 02_memorisation: run store: k entry ") for line in lines)
    assert RunStore.key_of("k", dict(a=1)) in lines[0] and RunStore.key_of("k", dict(a=2)) in lines[1]
    healed.say("03_modalities")
    assert capsys.readouterr().out == ""  # once per entry
