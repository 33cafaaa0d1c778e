"""Where fit_many trains what the store lacks (Context.executor): a failed submitit job is named with its
log while the others stay stored (local workers too), a bad executor or a missing submitit package is
one clear line, and the chapters' submitit_* parameters reach the executor.  That a smoke chapter gives
bit for bit the same models and table through submitit's local cluster, and that a re-run submits only
what is missing, is checked in test_notebooks.py against the smoke run of the book."""
import dataclasses
import json
import shutil
import sys
import types

import pytest

from clipmem_lib import chapter, fitting
from clipmem_lib.fitting import ClipJob, fit_many
from clipmem_lib.runtime import TIMINGS_ENV, Context, timer, worker
from clipmem_lib.schema import chapter_parameters
from clipmem_lib.store import OUTPUT_ENV, RunStore
from clipmem_lib.train import TrainConfig

@pytest.fixture(scope="module")
def sweep(scenes_of):
    """Three tiny trainings: two seeds on one subset and one on another (2 epochs on 96 pairs each)."""
    data, cfg = scenes_of(140, seed=2), TrainConfig(epochs=2, batch_size=48)
    return [ClipJob(data, range(96), config=cfg, desc="a"), ClipJob(data, range(96), config=TrainConfig(
        epochs=2, batch_size=48, seed=1), desc="b"), ClipJob(data, range(20, 116), config=cfg, desc="c")]


def _remote(root, folder, **options) -> Context:
    return Context(RunStore(root), device="cpu", progress=False, executor="submitit",
                   submitit=dict(cluster="local", folder=str(folder), timeout_min=10, **options))


@pytest.mark.slow
def test_a_failed_submitit_job_is_named_with_its_log_and_the_others_stay_stored(sweep, tmp_path, one_thread):
    bad = dataclasses.replace(sweep[2].config, image_variants=(5,))  # the data has 1 image per pair: train raises
    good, boom = sweep[0], ClipJob(sweep[2].data, sweep[2].indices, config=bad, desc="doomed")
    ctx = _remote(tmp_path / "runs", tmp_path / "logs")
    with pytest.raises(RuntimeError) as err:
        fit_many([good, boom], ctx)
    msg = str(err.value)
    assert msg.startswith("1 of 2 trainings failed") and len(msg.splitlines()) == 2
    key = ctx.store.key_of("clip", boom.key())
    assert f"clip {key} (doomed): ValueError: image_variants=(5,) but the data has 1 variant" in msg
    log = msg.rpartition("; log: ")[2]
    assert log.endswith(".err") and "image_variants=(5,) but the data has 1 variant" in open(log).read()
    assert ctx.store.entry("clip", good.key()) is not None and ctx.store.entry("clip", boom.key()) is None
    def submitted():
        return len(list((tmp_path / "logs").glob("*_submitted.pkl")))

    assert submitted() == 2
    fit_many([good], ctx)  # a re-run submits only what is missing: nothing here
    assert submitted() == 2
    shutil.rmtree(ctx.store.entry("clip", good.key()))
    fit_many([good, good], ctx)  # and one job for the one lost entry
    assert submitted() == 3 and ctx.store.entry("clip", good.key()) is not None


def test_bad_executor_and_missing_submitit_are_one_clear_line(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"^executor must be 'local' or 'submitit', got 'slurm'$"):
        Context(RunStore(tmp_path), executor="slurm")
    with pytest.raises(ValueError, match="^submitit must be a dict"):
        Context(RunStore(tmp_path), submitit=[("cluster", "local")])
    with pytest.raises(ValueError, match="needs a run store with a folder"):
        Context(RunStore(None), executor="submitit")
    assert Context(RunStore(tmp_path), executor="submitit").executor == "submitit"  # installed here
    monkeypatch.setitem(sys.modules, "submitit", None)  # as if it were not installed
    with pytest.raises(ValueError) as err:
        Context(RunStore(tmp_path), executor="submitit")
    assert str(err.value) == "executor 'submitit' needs the submitit package: pip install submitit==1.5.4"
    assert Context(RunStore(tmp_path)).executor == "local"  # the default needs no submitit


def test_submitit_options_reach_the_executor(tmp_path):
    """Defaults (12 h, this process's threads as CPUs, no GPU on the CPU) and given options override them."""
    ctx = Context(RunStore(tmp_path), device="cpu", executor="submitit", submitit=dict(cluster="local"))
    ex = fitting._submitit_executor(ctx, 3)
    assert ex.cluster == "local" and ex.folder == (tmp_path / ".submitit").absolute()
    assert ex.parameters["timeout_min"] == 720 and ex.parameters["cpus_per_task"] == 3 and "gpus_per_node" not in ex.parameters
    ex = fitting._submitit_executor(ctx.replace(submitit=dict(cluster="debug", folder=str(tmp_path / "f"),
                                                              timeout_min=5)), 3)
    assert ex.cluster == "debug" and ex.folder == tmp_path / "f" and ex.parameters["timeout_min"] == 5


@pytest.mark.slow
def test_a_failed_local_worker_raises_its_own_error_naming_each_failed_job(sweep, tmp_path):
    """The other branch (executor "local", n_jobs 2): the worker's ValueError, a note naming the job."""
    bad = dataclasses.replace(sweep[2].config, image_variants=(5,))
    good, boom = sweep[0], ClipJob(sweep[2].data, sweep[2].indices, config=bad, desc="doomed")
    ctx = Context(RunStore(tmp_path), device="cpu", progress=False, n_jobs=2)
    with pytest.raises(ValueError, match=r"image_variants=\(5,\) but the data has 1 variant") as err:
        fit_many([good, boom], ctx)
    (note,) = err.value.__notes__
    assert note.startswith("1 of 2 trainings failed") and f"clip {ctx.store.key_of('clip', boom.key())} (doomed)" in note
    assert ctx.store.entry("clip", good.key()) is not None and ctx.store.entry("clip", boom.key()) is None


def test_a_submitit_job_s_timings_count_as_a_worker_s(tmp_path, monkeypatch):
    log = tmp_path / "timings.jsonl"
    monkeypatch.setenv(TIMINGS_ENV, str(log))
    with worker(), timer("training"):
        pass
    with timer("training"):
        pass
    assert [json.loads(line)["category"] for line in log.read_text().splitlines()] == ["training (workers)", "training"]


def test_the_chapter_parameters_give_the_submitit_options(tmp_path, monkeypatch):
    monkeypatch.setenv(OUTPUT_ENV, str(tmp_path))
    P = {n: d.default for n, d in chapter_parameters("01_metric").items()}
    assert chapter._submitit_options(types.SimpleNamespace(**P)) == dict(timeout_min=720)  # the rest: defaults
    P.update(submitit_cluster="slurm", submitit_folder="logs", submitit_partition="gpu", submitit_gpus=0, submitit_cpus=4)
    assert chapter._submitit_options(types.SimpleNamespace(**P)) == dict(
        cluster="slurm", folder=str(tmp_path / "logs"), slurm_partition="gpu", timeout_min=720, gpus_per_node=0,
        cpus_per_task=4)
