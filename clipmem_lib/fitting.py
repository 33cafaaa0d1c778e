"""Cached training: every model of the book is a typed job whose store key is everything its weights
depend on, trained once and then loaded from the run store.

Verbs: ``train_*`` (train.py, vision.py) train a module in place and cache nothing; ``fit_*`` here
train through the run store, so a second call with the same job loads the stored model.

    f, g = fit_f_and_g(data, splits, "clipmem-tiny", TrainConfig(epochs=80), ctx=ctx)   # Eq. 4's f and g
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import copy
import dataclasses
import functools
import json
import multiprocessing
import os
import pathlib
import re
import shutil
from typing import ClassVar, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .data import PairData
from .models import CaptionTokenizer, model_config, model_for, tokenizer_for
from .runtime import Context, timer, worker
from .splits import Splits
from .store import RunStore, config_key
from .train import TrainConfig, train_clip
from .vision import (Classifier, Encoder, VisionConfig, first_level_targets, train_classifier, train_dino,
                     train_supervised, vision_tower)

__all__ = ["TrainedModel", "ClipJob", "VisionJob", "COMPILE_FROM", "compile_pays", "fit", "fit_many", "longest_first", "stored_history", "fit_clip", "fit_vision", "fg_jobs",
           "fit_f_and_g", "fit_f_and_g_seeds", "classifier_fg_jobs", "fit_classifier_f_and_g"]


@dataclasses.dataclass
class TrainedModel:
    """A trained model with what is needed to use it again: its store key, architecture (``model_name``),
    training config, history and (CLIP only) tokenizer."""

    model: torch.nn.Module
    key: str
    model_name: str
    config: TrainConfig | VisionConfig
    history: list[dict]
    tokenizer: CaptionTokenizer | None
    path: pathlib.Path | None = None  # its run-store entry

    def snapshot_epochs(self) -> list[int]:
        """Epochs whose weights were kept during training (a job with ``snapshot_every``)."""
        folder = self.path / "snapshots" if self.path else None
        return sorted(int(p.stem.removeprefix("epoch")) for p in folder.glob("epoch*.pt")) if folder and folder.is_dir() else []

    def snapshot(self, epoch: int) -> torch.nn.Module:
        """The model as it was at the end of ``epoch`` (1-based), in eval mode."""
        if epoch not in self.snapshot_epochs():
            raise ValueError(f"model {self.key} kept no snapshot of epoch {epoch}; kept {self.snapshot_epochs()}")
        m = copy.deepcopy(self.model)
        m.load_state_dict(torch.load(self.path / "snapshots" / f"epoch{epoch}.pt", map_location="cpu", weights_only=True))
        return m.eval()


def _save(module: torch.nn.Module, history: list[dict], out) -> None:
    torch.save(module.state_dict(), out / "model.pt")
    pd.DataFrame(history).to_csv(out / "history.csv", index=False)


def _history(path) -> list[dict]:
    return pd.read_csv(path / "history.csv").to_dict("records")


def _load(module: torch.nn.Module, path) -> tuple[torch.nn.Module, list[dict]]:
    module.load_state_dict(torch.load(path / "model.pt", map_location="cpu", weights_only=True))
    return module.eval(), _history(path)


@dataclasses.dataclass(frozen=True, eq=False)
class ClipJob:
    """One CLIP trained from scratch on ``data[indices]`` (in that order) with ``config``.

    ``init_seed`` (default ``config.seed``) seeds the initialisation; ``tokenizer`` defaults to
    :func:`~clipmem_lib.models.tokenizer_for` (trimmed vocabulary for the small CPU configs).  With
    ``snapshot_every`` = k the weights after every k-th epoch and the last are kept in the entry (Fig. 11
    reads them instead of training the model a second time); they do not change the weights, so they
    are not part of the key.  ``compile`` trains through ``torch.compile`` (default: where it pays,
    :func:`compile_pays`); its weights differ from eager ones by rounding, so a compiled model's key says so.
    """

    data: PairData
    indices: np.ndarray
    model_name: str = "clipmem-tiny"
    config: TrainConfig = TrainConfig()
    init_seed: int | None = None
    tokenizer: CaptionTokenizer | None = None
    desc: str = "train"
    snapshot_every: int = 0
    compile: bool | None = None
    kind: ClassVar[str] = "clip"

    def __post_init__(self):
        object.__setattr__(self, "indices", np.asarray(self.indices, dtype=np.int64))
        if self.compile is None:
            object.__setattr__(self, "compile", compile_pays(len(self.indices) * self.config.epochs, self.model_name))
        if self.init_seed is None:
            object.__setattr__(self, "init_seed", self.config.seed)
        if self.tokenizer is None:
            object.__setattr__(self, "tokenizer", tokenizer_for(self.model_name, self.data))

    def key(self) -> dict:
        """What the weights depend on: architecture, vocabulary, config, init seed, images, order, captions."""
        tok = self.tokenizer
        key = dict(model_name=self.model_name, vocab="full" if tok.table is None else config_key(tok.table.numpy()),
                   context=tok.context_length, train=self.config, init_seed=self.init_seed,
                   images=self.data.images.fingerprint(), indices=self.indices,
                   captions=self.data.caption_digest(self.indices))
        return {**key, "compiled": True} if self.compile else key  # an eager model keeps its key of before

    def new_model(self) -> torch.nn.Module:
        return model_for(self.model_name, self.tokenizer, seed=self.init_seed)

    def train(self, out, scratch, ctx: Context) -> None:
        m, shots = self.new_model(), scratch / "snapshots"

        def keep(epoch, net):  # in scratch, so a resumed run keeps the snapshots taken before the interruption
            if self.snapshot_every and ((epoch + 1) % self.snapshot_every == 0 or epoch + 1 == self.config.epochs):
                shots.mkdir(exist_ok=True)
                torch.save(net.state_dict(), shots / f"epoch{epoch + 1}.pt")

        hist = train_clip(m, self.data.images, self.tokenizer.tokenize_pairs(self.data), self.indices, self.config,
                          device=ctx.device, checkpoint=scratch / "last.pt", progress=ctx.progress, desc=self.desc,
                          num_workers=ctx.num_workers, on_epoch_end=keep, compile=self.compile)
        _save(m, hist, out)
        if shots.is_dir():
            shutil.copytree(shots, out / "snapshots")

    def missing_from(self, path) -> bool:
        """Whether a stored entry lacks what this job also asks for (its snapshots)."""
        return bool(self.snapshot_every) and not (path / "snapshots").is_dir()

    def load(self, path) -> TrainedModel:
        m, hist = _load(self.new_model(), path)
        return TrainedModel(m, path.name, self.model_name, self.config, hist, self.tokenizer, path)


@dataclasses.dataclass(frozen=True, eq=False)
class VisionJob:
    """A model on CLIP's image tower: ``kind`` "dino" (self-supervised, Sec. 4.5), "supervised" (Sec. 4.5:
    multi-label first-level labels: colours of the built-in scenes, COCO's supercategories) or
    "classifier" (Fig. 8: single-label softmax over ``labels``, the given labels of all N points with any
    flips, default ``data.labels``, and ``n_classes`` classes, default ``labels.max() + 1``).

    A classifier's key holds the labels of its training points only, so f's key changes with flips in
    S_C while g's (trained on S_S ∪ S_I) does not.
    """

    kind: str
    data: PairData
    indices: np.ndarray
    model_name: str = "clipmem-tiny"
    config: VisionConfig = VisionConfig()
    desc: str = ""
    labels: np.ndarray | None = None
    n_classes: int | None = None

    def __post_init__(self):
        if self.kind not in ("dino", "supervised", "classifier"):
            raise ValueError(f"kind must be 'dino', 'supervised' or 'classifier', got {self.kind!r}")
        object.__setattr__(self, "indices", np.asarray(self.indices, dtype=np.int64))
        if self.kind != "classifier":
            if self.labels is not None or self.n_classes is not None:
                raise ValueError(f"labels and n_classes are for kind 'classifier', not {self.kind!r}")
            return
        labels = self.data.labels if self.labels is None else self.labels
        if labels is None:
            raise ValueError(f"{self.data.name} has no labels: give the classifier labels=")
        labels = np.asarray(labels, dtype=np.int64)
        if labels.shape != (len(self.data),):
            raise ValueError(f"labels must give one class per point of the data, shape ({len(self.data)},); "
                             f"got {labels.shape}")
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "n_classes", int(labels.max()) + 1 if self.n_classes is None else int(self.n_classes))

    def key(self) -> dict:
        key = dict(model_name=self.model_name, train=self.config, images=self.data.images.fingerprint(),
                   indices=self.indices)
        if self.kind == "supervised" and "first_level" in self.data.meta:  # COCO's labels; built-in follow the images
            key["labels"] = config_key(list(self.data.meta["first_level"]))
        if self.kind == "classifier":
            key.update(labels=self.labels[self.indices], n_classes=self.n_classes)
        return key

    def train(self, out, scratch, ctx: Context) -> None:
        tower = model = vision_tower(self.model_name, seed=self.config.seed)
        kw = dict(device=ctx.device, checkpoint=scratch / "last.pt", progress=ctx.progress,
                  num_workers=ctx.num_workers, desc=self.desc or self.kind)
        if self.kind == "dino":
            hist = train_dino(tower, self.data.images, self.indices, self.config, **kw)
        elif self.kind == "supervised":
            hist = train_supervised(tower, self.data.images, self.indices, first_level_targets(self.data)[0],
                                    self.config, **kw)
        else:  # tower and head are kept: Fig. 8 needs P(y | x)
            model, hist = train_classifier(tower, self.data.images, self.indices, self.labels, self.config,
                                           n_classes=self.n_classes, **kw)
        _save(model, hist, out)

    def load(self, path) -> TrainedModel:
        """The stored model: a :class:`~clipmem_lib.vision.Classifier` for kind "classifier", else an
        :class:`~clipmem_lib.vision.Encoder`."""
        tower = vision_tower(self.model_name, seed=self.config.seed)
        if self.kind == "classifier":
            model, hist = _load(Classifier.untrained(tower, self.n_classes), path)
        else:
            tower, hist = _load(tower, path)
            model = Encoder(tower).eval()
        return TrainedModel(model, path.name, self.model_name, self.config, hist, None, path)

    def missing_from(self, path) -> bool:
        return False


Job = ClipJob | VisionJob

# torch.compile's forward trains about 20% faster here (benchmarks/train_throughput.py) after a compile of
# about 3 s with inductor's cache warm (34 s cold, once per machine), so it pays from about 40,000 samples:
# from 50,000 (a cpu-profile f is 144,000 samples) a warm compile is repaid, and a test's tiny training stays eager.
COMPILE_FROM = 50_000


def compile_pays(samples: int, model_name: str = "clipmem-tiny") -> bool:
    """Whether a training of ``samples`` (pairs × epochs) is long enough for ``torch.compile`` to pay
    (CLIP configs only: CoCa's decoder has not been measured compiled)."""
    return samples >= COMPILE_FROM and "multimodal_cfg" not in model_config(model_name)


def fit(job: Job, ctx: Context | None = None, *, force: bool = False) -> TrainedModel:
    """Train ``job`` into the run store, or load it if it is already there (``force`` retrains)."""
    ctx = ctx or Context()
    key = job.key()
    path = None if force else ctx.store.entry(job.kind, key)
    # stored before snapshots were asked for: train it once more, keeping them
    force = force or (path is not None and job.missing_from(path))
    trained = []

    def build(out, scratch):
        trained.append(True)
        job.train(out, scratch, ctx)

    model = ctx.store.load(job.kind, key, build, job.load, force)
    _record(job, model.key, bool(trained))
    return model


LEDGER_ENV = "CLIPMEM_TRAININGS"  # set by the book runner: where fit writes a line per training it is asked for


def _record(job: Job, key: str, trained: bool) -> None:
    """The book's ledger of trainings (``$CLIPMEM_TRAININGS``), which its cost plan (plan.py) is checked against."""
    path = os.environ.get(LEDGER_ENV)
    if path:
        with open(path, "a") as fh:
            fh.write(json.dumps(dict(kind=job.kind, model=job.model_name, n_train=len(job.indices),
                                     epochs=job.config.epochs, key=key, trained=trained)) + "\n")


def _fit_in_worker(threads: int, job: Job, ctx: Context, force: bool) -> None:
    """:func:`fit` of one job in a worker (a local spawn process or a submitit job), with ``threads`` threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with worker():
            fit(job, ctx, force=force)
    finally:
        torch.set_num_threads(before)  # submitit's "debug" cluster runs the job in the caller's process


def _submitit_executor(ctx: Context, threads: int):
    """submitit's AutoExecutor for ``ctx.submitit``: its ``cluster`` and ``folder`` (default
    ``<store>/.submitit``), then the other options over the defaults: 12 hours, ``threads`` CPUs, one GPU
    per job when ``ctx.device`` is CUDA."""
    import submitit

    opts = dict(ctx.submitit)
    cluster, folder = opts.pop("cluster", None) or None, opts.pop("folder", None) or ctx.store.root / ".submitit"
    cuda = ctx.device is not None and str(ctx.device).startswith("cuda")
    opts = {"name": "clipmem-fit", "timeout_min": 720, "cpus_per_task": threads, "gpus_per_node": int(cuda), **opts}
    if not opts["gpus_per_node"]:
        del opts["gpus_per_node"]  # SLURM would be asked for --gpus-per-node=0
    executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
    executor.update_parameters(**opts)
    return executor


def _gist(err: BaseException) -> str:
    """The line of a worker's error that says what went wrong (a submitit error holds the whole traceback)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    raised = [line for line in lines if re.match(r"[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b", line)]
    return raised[-1] if raised else f"{type(err).__name__}: {lines[0] if lines else ''}"


def longest_first(jobs: Sequence[Job], rates: dict[tuple[str, str], float]) -> list[Job]:
    """``jobs`` in order of expected training time, longest first, so a pool's last job is a short one
    (LPT scheduling): pairs × epochs at the measured samples/s of its (kind, model) (``rates``, as
    :meth:`~clipmem_lib.store.RunStore.throughput` gives), or at their median where it has none."""
    default = float(np.median(list(rates.values()))) if rates else 1.0
    seconds = [len(j.indices) * j.config.epochs / rates.get((j.kind, j.model_name), default) for j in jobs]
    return [jobs[i] for i in np.argsort(-np.asarray(seconds, dtype=float), kind="stable")]


def _train_elsewhere(jobs: list[Job], ctx: Context, force: bool) -> bool:
    """Train ``jobs`` into the run store outside this process: one submitit job each (executor "submitit")
    or ``ctx.n_jobs`` local spawn processes; False, with nothing done, where they train here instead
    (executor "local" with ``n_jobs`` 1, one job, or CUDA).  Every job runs to its end, then one error names
    each that failed (a local one raises its own error); the finished ones are in the store."""
    remote = ctx.executor == "submitit"
    cuda = ctx.device is not None and str(ctx.device).startswith("cuda")
    if not jobs or not remote and (len(jobs) < 2 or ctx.n_jobs < 2 or cuda):
        return False
    # a submitit job uses this process's thread count (or its cpus_per_task), so it matches a training here
    threads = (ctx.submitit.get("cpus_per_task") or torch.get_num_threads() if remote
               else max(1, (os.cpu_count() or 1) // ctx.n_jobs))
    store = RunStore(ctx.store.root.absolute()) if ctx.store.root is not None else ctx.store
    jobs = longest_first(jobs, store.throughput()) if len(jobs) > ctx.n_jobs else jobs
    work = functools.partial(_fit_in_worker, threads, ctx=ctx.replace(store=store, progress=False), force=force)
    with timer("training"), contextlib.ExitStack() as stack:
        if remote:
            handles, desc = _submitit_executor(ctx, threads).map_array(work, jobs), f"{len(jobs)} submitit jobs"
        else:
            pool = stack.enter_context(concurrent.futures.ProcessPoolExecutor(
                min(ctx.n_jobs, len(jobs)), mp_context=multiprocessing.get_context("spawn")))
            handles, desc = [pool.submit(work, j) for j in jobs], f"{len(jobs)} trainings, {ctx.n_jobs} at a time"
        errors = [h.exception() for h in tqdm(handles, disable=not ctx.progress, desc=desc)]  # waits for each
    failed = [(j, e, h) for j, e, h in zip(jobs, errors, handles) if e is not None]
    if failed:
        summary = f"{len(failed)} of {len(jobs)} trainings failed (the others are in the run store):" + "".join(
            f"\n  {j.kind} {ctx.store.key_of(j.kind, j.key())} ({j.desc or j.kind}): {_gist(e)}"
            + (f"; log: {h.paths.stderr}" if remote else "") for j, e, h in failed)
        if remote:
            raise RuntimeError(summary)
        failed[0][1].add_note(summary)
        raise failed[0][1]  # a local worker's own error (a ValueError stays one)
    return True


def fit_many(jobs: Sequence[Job], ctx: Context | None = None, *, force: bool = False) -> list[TrainedModel]:
    """Several trainings (the sweeps of Table 1, Fig. 5a, Table 3, Table 8 and Fig. 6; Sec. 4.5's models), in order.

    Stored models are loaded; the others train where ``ctx.executor`` says.  "local": in ``ctx.n_jobs``
    worker processes with ``cpu_count // n_jobs`` threads each (CUDA jobs and ``n_jobs=1`` train here,
    one after another).  "submitit": one submitit job per missing model (SLURM, or ``ctx.submitit``'s
    cluster), each training it into the shared run store with this process's thread count; a re-run
    submits only what is still missing.  Equal jobs train once.  Failed jobs raise one error naming each
    (with its log for submitit); the finished ones stay in the store.  Thread count changes float
    rounding, so a model trained in a local worker matches a sequential one to rounding.
    """
    ctx = ctx or Context()
    keys = [j.key() for j in jobs]  # hashes the indices and captions: once per job
    idents = [(j.kind, config_key(k)) for j, k in zip(jobs, keys)]
    todo = {}
    for j, k, i in zip(jobs, keys, idents):
        path = None if force else ctx.store.entry(j.kind, k)
        if i not in todo and (path is None or j.missing_from(path)):
            todo[i] = j
    if _train_elsewhere(list(todo.values()), ctx, force):
        force = False  # all of them are stored now
    done = {i: fit(j, ctx, force=force) for i, j in todo.items()}
    return [done.get(i) or fit(j, ctx) for j, i in zip(jobs, idents)]


def stored_history(job: Job, ctx: Context | None = None) -> list[dict]:
    """The per-epoch training history of ``job`` read from its run-store entry, without loading the
    weights (trained first if the store lacks it)."""
    ctx = ctx or Context()
    path = ctx.store.entry(job.kind, job.key())
    return _history(path) if path is not None else fit(job, ctx).history


def fit_clip(data: PairData, indices: Sequence[int], model_name: str = "clipmem-tiny",
             config: TrainConfig = TrainConfig(), *, init_seed: int | None = None,
             tokenizer: CaptionTokenizer | None = None, desc: str = "train", force: bool = False,
             ctx: Context | None = None) -> TrainedModel:
    """One CLIP on ``data[indices]`` from scratch, cached (:class:`ClipJob`)."""
    return fit(ClipJob(data, indices, model_name, config, init_seed, tokenizer, desc), ctx, force=force)


def fit_vision(kind: str, data: PairData, indices: Sequence[int], model_name: str = "clipmem-tiny",
               config: VisionConfig = VisionConfig(), *, desc: str = "", labels: np.ndarray | None = None,
               n_classes: int | None = None, force: bool = False, ctx: Context | None = None) -> TrainedModel:
    """A model on CLIP's image tower (:class:`VisionJob`), cached; its ``model`` is an
    :class:`~clipmem_lib.vision.Encoder` (a :class:`~clipmem_lib.vision.Classifier` for kind "classifier"),
    usable wherever a CLIP image side is."""
    return fit(VisionJob(kind, data, indices, model_name, config, desc, labels, n_classes), ctx, force=force)


def fg_jobs(data: PairData, splits: Splits, model_name: str = "clipmem-tiny", config: TrainConfig = TrainConfig(),
            *, coupled: bool = True) -> list[ClipJob]:
    """The two jobs of Eq. 4: f on S_S ∪ S_C and g on S_S ∪ S_I (Sec. 4.1).

    ``coupled=True`` makes them "otherwise identical": same initialisation, same batches, with S_C[i]
    in f's run where S_I[i] is in g's.  ``coupled=False`` gives g the next seed instead.
    """
    tok = tokenizer_for(model_name, data)
    gcfg = config if coupled else dataclasses.replace(config, seed=config.seed + 1)
    return [ClipJob(data, splits.f_indices, model_name, config, tokenizer=tok, desc="f (S_S+S_C)"),
            ClipJob(data, splits.g_indices, model_name, gcfg, tokenizer=tok, desc="g (S_S+S_I)")]


def classifier_fg_jobs(data: PairData, splits: Splits, labels: np.ndarray, model_name: str = "clipmem-tiny",
                       config: VisionConfig = VisionConfig(), *, n_classes: int | None = None) -> list[VisionJob]:
    """Fig. 8's f on S_S ∪ S_C and g on S_S ∪ S_I: classifiers on the given ``labels`` (flips included),
    otherwise identical (same initialisation and batches, S_I[i] in g's run where S_C[i] is in f's)."""
    return [VisionJob("classifier", data, splits.f_indices, model_name, config, "f (S_S+S_C)", labels, n_classes),
            VisionJob("classifier", data, splits.g_indices, model_name, config, "g (S_S+S_I)", labels, n_classes)]


def fit_classifier_f_and_g(data: PairData, splits: Splits, labels: np.ndarray, model_name: str = "clipmem-tiny",
                           config: VisionConfig = VisionConfig(), *, n_classes: int | None = None, force: bool = False,
                           ctx: Context | None = None) -> tuple[TrainedModel, TrainedModel]:
    """f and g of Fig. 8 (:func:`classifier_fg_jobs`), cached."""
    f, g = fit_many(classifier_fg_jobs(data, splits, labels, model_name, config, n_classes=n_classes), ctx, force=force)
    return f, g


def fit_f_and_g(data: PairData, splits: Splits, model_name: str = "clipmem-tiny", config: TrainConfig = TrainConfig(),
                *, coupled: bool = True, force: bool = False,
                ctx: Context | None = None) -> tuple[TrainedModel, TrainedModel]:
    """f and g of Eq. 4 (:func:`fg_jobs`), cached."""
    f, g = fit_many(fg_jobs(data, splits, model_name, config, coupled=coupled), ctx, force=force)
    return f, g


def fit_f_and_g_seeds(data: PairData, splits: Splits, model_name: str, configs: dict[int, TrainConfig], *,
                      ctx: Context | None = None) -> dict[int, tuple[TrainedModel, TrainedModel]]:
    """f and g of Eq. 4 once per training seed (``configs``: seed -> config, e.g. ``Setup.seeded()``), all
    trained in one :func:`fit_many` sweep."""
    models = fit_many([j for cfg in configs.values() for j in fg_jobs(data, splits, model_name, cfg)], ctx)
    return {s: (f, g) for s, f, g in zip(configs, models[::2], models[1::2])}
