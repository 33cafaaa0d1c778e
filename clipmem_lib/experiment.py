"""The few-lines API: train f and g through the run store and score them.

    data   = make_scenes(SceneConfig(n=2000))
    splits = make_splits(len(data), n_candidates=200, n_external=200)
    f, g   = train_pair(data, splits, "clipmem-tiny", TrainConfig(epochs=80))
    scores = score_clipmem(f, g, data, splits)        # one row per pair, Eq. 3–4 + A.2
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import multiprocessing
import os
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .clipmem import alignment_scores, candidate_summary, clipmem_frame, sample_test_pairs
from .probes import probe_accuracy, retrieval_at_1
from .removal import STRATEGIES, doubling_grid, removal_order, without
from .sslmem import image_alignment_loss, sslmem, text_alignment_loss
from .data import PairData
from .embed import embed_images, embed_texts
from .models import CaptionTokenizer, create_model, tokenizer_for
from .splits import Splits
from .store import RunStore, config_key, project_path
from .datasets import load_dataset
from .splits import make_splits
from .train import TrainConfig, train_clip
from .unitmem import layer_unitmem, text_layer_unitmem, top_unit_layers
from .vision import Encoder, VisionConfig, first_level_targets, train_dino, train_supervised, vision_tower

__all__ = ["Setup", "setup", "TrainedModel", "fit_clip", "fit_many", "fit_vision", "train_pair", "pair_jobs",
           "model_embeddings", "score_clipmem", "pair_similarity", "compare_settings", "removal_curve", "score_sslmem", "utility", "unitmem_layers",
           "unitmem_during_training"]


@dataclasses.dataclass
class Setup:
    """What every notebook derives from its parameters: data, splits, store, training config, device."""

    data: PairData
    splits: Splits
    store: RunStore
    train: TrainConfig
    device: str


def setup(P) -> Setup:
    """Build the :class:`Setup` from a notebook's checked parameters ``P`` (see notebooks/)."""
    data = load_dataset(P.data_source, P.data_path, n_pairs=P.n_pairs, image_size=P.image_size,
                        n_variants=getattr(P, "n_variants", 1), generated_path=getattr(P, "generated_path", ""),
                        seed=P.seed)
    splits = make_splits(len(data), P.n_candidates, P.n_external, None if P.n_shared < 0 else P.n_shared, seed=P.seed)
    if P.device not in ("cpu", "cuda") and not P.device.startswith("cuda:"):
        raise ValueError(f"device must be 'cpu' or 'cuda[:k]', got {P.device!r}")
    if P.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={P.device!r} but no CUDA GPU is visible; use -p device cpu")
    cfg = TrainConfig(epochs=P.epochs, batch_size=P.batch_size, lr=P.lr, warmup=P.warmup, seed=P.seed)
    return Setup(data, splits, RunStore(project_path(P.runs_dir)), cfg, P.device)


@dataclasses.dataclass
class TrainedModel:
    """A trained model with what is needed to use it again: its store key, history and (CLIP only) tokenizer."""

    model: torch.nn.Module
    key: str
    config: TrainConfig | VisionConfig
    history: list[dict]
    tokenizer: CaptionTokenizer | None


def _tok_digest(tok: CaptionTokenizer) -> str:
    return "full" if tok.table is None else config_key(tok.table.numpy())


def _clip_key(data: PairData, idx: np.ndarray, model: str, config: TrainConfig, init_seed: int,
              tok: CaptionTokenizer) -> dict:
    """What a CLIP's weights depend on (its run-store key)."""
    return dict(model=model, vocab=_tok_digest(tok), train=config, init_seed=init_seed,
                images=data.images.fingerprint(), indices=idx, captions=data.caption_digest(idx))


def fit_clip(data: PairData, indices: Sequence[int], model: str = "clipmem-tiny", config: TrainConfig = TrainConfig(),
             *, init_seed: int | None = None, tokenizer: CaptionTokenizer | None = None, store: RunStore | None = None,
             force: bool = False, device=None, progress: bool = True, desc: str = "train",
             num_workers: int = 0) -> TrainedModel:
    """Train one CLIP on ``data[indices]`` from scratch, or load it from ``store`` if already trained.

    The store key covers everything the weights depend on: model config, vocabulary, ``config``,
    init seed, the image source, the ordered training indices and their captions.
    """
    store = store if store is not None else RunStore("runs")
    tok = tokenizer or tokenizer_for(model, data)
    init_seed = config.seed if init_seed is None else init_seed
    idx = np.asarray(indices, dtype=np.int64)
    key_cfg = _clip_key(data, idx, model, config, init_seed, tok)

    def build(out, scratch):
        m = create_model(model, tok.vocab_size, seed=init_seed)
        tokens = tok.tokenize_pairs(data)
        hist = train_clip(m, data.images, tokens, idx, config, device=device, checkpoint=scratch / "last.pt",
                          progress=progress, desc=desc, num_workers=num_workers)
        torch.save(m.state_dict(), out / "model.pt")
        pd.DataFrame(hist).to_csv(out / "history.csv", index=False)

    path = store.build("clip", key_cfg, build, force=force)
    m = create_model(model, tok.vocab_size, seed=init_seed)
    m.load_state_dict(torch.load(path / "model.pt", map_location="cpu", weights_only=True))
    m.eval()
    hist = pd.read_csv(path / "history.csv").to_dict("records")
    return TrainedModel(m, path.name, config, hist, tok)


def _fit(job: dict) -> TrainedModel:
    """One job of :func:`fit_many`: a CLIP (no ``kind``, or "clip") or a Sec. 4.5 baseline."""
    job = dict(job)
    kind = job.pop("kind", "clip")
    return fit_clip(**job) if kind == "clip" else fit_vision(kind, **job)


def _entry_key(job: dict) -> tuple[str, dict]:
    """(store kind, key config) of a job, computed without training."""
    kind, model, idx = job.get("kind", "clip"), job.get("model", "clipmem-tiny"), np.asarray(job["indices"], dtype=np.int64)
    if kind == "clip":
        cfg = job.get("config", TrainConfig())
        return kind, _clip_key(job["data"], idx, model, cfg, cfg.seed if job.get("init_seed") is None else job["init_seed"],
                               job["tokenizer"])
    return kind, _vision_key(kind, job["data"], idx, model, job.get("config", VisionConfig()))


def _fit_in_worker(threads: int, job: dict) -> None:
    torch.set_num_threads(threads)
    _fit(job)


def fit_many(jobs: Sequence[dict], *, n_jobs: int = 1, progress: bool = True) -> list[TrainedModel]:
    """Several trainings (the sweeps of Table 1, Fig. 5a, Table 3, Table 8 and Fig. 6; Sec. 4.5's models), in order.

    A job is a dict of :func:`fit_clip`'s arguments, or, with ``kind`` "dino" or "supervised", of
    :func:`fit_vision`'s.  Models already in the store are loaded; the others train in ``n_jobs`` worker
    processes with ``cpu_count // n_jobs`` threads each (on 2 cores, two 70-s trainings took about 110 s side
    by side instead of 140 s; for short ones worker start-up eats the gain: benchmarks/parallel_sweep.py).  CUDA jobs and ``n_jobs=1`` train
    here, one after another.  Thread count changes float rounding, so a model trained in a worker matches a
    sequential one to rounding, not bit for bit.
    """
    jobs = [dict(j) for j in jobs]
    missing, seen = [], set()
    for j in jobs:
        j["store"] = j.get("store") or RunStore("runs")
        if j.get("kind", "clip") == "clip":
            j["tokenizer"] = j.get("tokenizer") or tokenizer_for(j.get("model", "clipmem-tiny"), j["data"])
        kind, key = _entry_key(j)
        if (j.get("force") or j["store"].entry(kind, key) is None) and (kind, config_key(key)) not in seen:
            seen.add((kind, config_key(key)))
            missing.append(j)
    cuda = any(str(j.get("device") or "").startswith("cuda") for j in missing)
    if missing and n_jobs > 1 and not cuda:
        threads = max(1, (os.cpu_count() or 1) // n_jobs)
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(min(n_jobs, len(missing)), mp_context=ctx) as pool:
            futures = [pool.submit(_fit_in_worker, threads, {**j, "progress": False}) for j in missing]
            for fut in tqdm(concurrent.futures.as_completed(futures), total=len(futures), disable=not progress,
                            desc=f"{len(missing)} trainings, {n_jobs} at a time"):
                fut.result()  # a failed job raises here; the finished ones stay in the store
        jobs = [{**j, "force": False} for j in jobs]
    return [_fit(j) for j in jobs]


def _vision_key(kind: str, data: PairData, idx: np.ndarray, model: str, config: VisionConfig) -> dict:
    """What a Sec. 4.5 baseline's weights depend on (its run-store key)."""
    key = dict(kind=kind, model=model, train=config, images=data.images.fingerprint(), indices=idx)
    if kind == "supervised" and "first_level" in data.meta:  # COCO's labels (built-in ones follow from the images)
        key["labels"] = config_key(list(data.meta["first_level"]))
    return key


def fit_vision(kind: str, data: PairData, indices: Sequence[int], model: str = "clipmem-tiny",
               config: VisionConfig = VisionConfig(), *, store: RunStore | None = None, force: bool = False,
               device=None, progress: bool = True, desc: str | None = None) -> TrainedModel:
    """A Sec. 4.5 baseline on CLIP's image tower, trained or loaded from ``store``: ``kind`` is "dino"
    (self-supervised) or "supervised" (multi-label colours of the built-in scenes).  The returned
    ``model`` is a :class:`~clipmem_lib.vision.Encoder`, usable wherever a CLIP image side is."""
    if kind not in ("dino", "supervised"):
        raise ValueError(f"kind must be 'dino' or 'supervised', got {kind!r}")
    store = store if store is not None else RunStore("runs")
    idx = np.asarray(indices, dtype=np.int64)
    key_cfg = _vision_key(kind, data, idx, model, config)

    def build(out, _):
        tower = vision_tower(model, seed=config.seed)
        if kind == "dino":
            hist = train_dino(tower, data.images, idx, config, device=device, progress=progress, desc=desc or kind)
        else:
            hist = train_supervised(tower, data.images, idx, first_level_targets(data)[0], config, device=device,
                                    progress=progress, desc=desc or kind)
        torch.save(tower.state_dict(), out / "model.pt")
        pd.DataFrame(hist).to_csv(out / "history.csv", index=False)

    path = store.build(kind, key_cfg, build, force=force)
    tower = vision_tower(model, seed=config.seed)
    tower.load_state_dict(torch.load(path / "model.pt", map_location="cpu", weights_only=True))
    enc = Encoder(tower).eval()
    return TrainedModel(enc, path.name, config, pd.read_csv(path / "history.csv").to_dict("records"), None)


def train_pair(data: PairData, splits: Splits, model: str = "clipmem-tiny", config: TrainConfig = TrainConfig(),
               *, coupled: bool = True, store: RunStore | None = None, force: bool = False, device=None,
               progress: bool = True, num_workers: int = 0, n_jobs: int = 1) -> tuple[TrainedModel, TrainedModel]:
    """f on S_S ∪ S_C and g on S_S ∪ S_I (Eq. 4, Sec. 4.1).

    ``coupled=True`` makes them "otherwise identical": same initialisation, same batches, with
    S_C[i] in f's run where S_I[i] is in g's.  ``coupled=False`` gives g the next seed instead.
    """
    return tuple(fit_many(pair_jobs(data, splits, model, config, coupled=coupled, store=store, force=force,
                                     device=device, progress=progress, num_workers=num_workers),
                           n_jobs=n_jobs, progress=progress))


def pair_jobs(data: PairData, splits: Splits, model: str = "clipmem-tiny", config: TrainConfig = TrainConfig(), *,
              coupled: bool = True, **kw) -> list[dict]:
    """The two :func:`fit_clip` jobs of :func:`train_pair` (f, then g), for a :func:`fit_many` sweep."""
    tok = tokenizer_for(model, data)
    gcfg = config if coupled else dataclasses.replace(config, seed=config.seed + 1)
    return [dict(data=data, indices=splits.f_indices, model=model, config=config, tokenizer=tok, desc="f (S_S+S_C)", **kw),
            dict(data=data, indices=splits.g_indices, model=model, config=gcfg, tokenizer=tok, desc="g (S_S+S_I)", **kw)]


def model_embeddings(trained: TrainedModel, data: PairData, indices: Sequence[int], *, n_crops: int = 8,
                     crop_scale=(0.9, 1.0), caption_ids: Sequence[int] | None = None, variants: Sequence[int] = (0,),
                     seed: int = 0, store: RunStore | None = None, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Cached (image views (P, 1+V·n_crops, d), caption embeddings (P, C, d)) of ``data[indices]``;
    an image-only model (no tokenizer) has C = 0.

    With V > 1 image ``variants`` (Table 1's generated images) view 0 is the mean of the variants'
    un-augmented embeddings and the other views are all variants' crops, so Eq. 3's expectations
    (bilinear in the image embedding) average over every training image of the pair.
    """
    store = store if store is not None else RunStore("runs")
    idx = np.asarray(indices, dtype=np.int64)
    if trained.tokenizer is None:
        caption_ids = ()
    caption_ids = tuple(trained.config.caption_ids() if caption_ids is None else caption_ids)
    variants = tuple(int(v) for v in variants)
    cfg = dict(model=trained.key, images=data.images.fingerprint(), indices=idx, captions=data.caption_digest(idx),
               n_crops=n_crops, crop_scale=tuple(crop_scale), caption_ids=caption_ids, seed=seed)
    if variants != (0,):
        cfg["variants"] = variants

    def build(out, _):
        tokens = trained.tokenizer.tokenize_pairs(data) if caption_ids else None
        views = [embed_images(trained.model, data.images, idx, n_crops=n_crops, crop_scale=crop_scale, variant=v,
                              seed=seed, device=device) for v in variants]
        plain = torch.stack([v[:, 0] for v in views]).mean(0, keepdim=True).transpose(0, 1)
        torch.save(torch.cat([plain] + [v[:, 1:] for v in views], 1).half(), out / "images.pt")
        texts = (embed_texts(trained.model, tokens, idx, caption_ids, device=device) if caption_ids
                 else torch.zeros(len(idx), 0, 1))
        torch.save(texts.half(), out / "texts.pt")

    path = store.build("embeddings", cfg, build)
    load = lambda name: torch.load(path / name, weights_only=True).float()  # noqa: E731
    return load("images.pt"), load("texts.pt")


def score_clipmem(f: TrainedModel, g: TrainedModel, data: PairData, splits: Splits, *, n_crops: int = 8,
                  n_test: int | None = 127, seed: int = 0, store: RunStore | None = None, device=None) -> pd.DataFrame:
    """CLIPMem (Eq. 3–4) of every pair in S_S, S_C, S_I and S_E, range-normalised over all of them (A.2).

    The first term of Eq. 3 averages ``n_crops`` crops × the captions f was trained on; the test
    terms use the same ``n_test`` random S_E pairs (the paper's N−1 = 127) for f and g.
    """
    if f.config.caption_ids() != g.config.caption_ids() or f.config.image_variants != g.config.image_variants:
        raise ValueError("f and g were trained on different caption or image-variant sets; CLIPMem compares like "
                         "with like")
    variants = f.config.image_variants  # Table 1: every image the pair was trained with (test pairs too)
    subsets = splits.subsets()
    idx = np.concatenate(list(subsets.values()))
    names = np.concatenate([[k] * len(v) for k, v in subsets.items()])
    tst = sample_test_pairs(splits.external, n_test, seed)
    store = store if store is not None else RunStore("runs")

    def compute():
        align = []
        for m in (f, g):
            img, txt = model_embeddings(m, data, idx, n_crops=n_crops, variants=variants, seed=seed, store=store,
                                        device=device)
            timg, ttxt = model_embeddings(m, data, tst, n_crops=0, variants=variants, seed=seed, store=store,
                                          device=device)
            align.append(alignment_scores(img, txt, timg[:, 0], ttxt))
        return clipmem_frame(idx, names, align[0], align[1], data.meta)

    cfg = dict(f=f.key, g=g.key, indices=idx, test=tst, captions=data.caption_digest(idx), n_crops=n_crops, seed=seed)
    if variants != (0,):
        cfg["variants"] = variants
    return store.frame("clipmem", cfg, compute)


def pair_similarity(trained: TrainedModel, data: PairData, indices: Sequence[int], *, store: RunStore | None = None,
                    device=None) -> np.ndarray:
    """Cosine similarity of each pair's image and training captions under one CLIP (un-augmented image,
    mean over the captions it trained on): the "lowest CLIP similarity" baseline of Fig. 6."""
    img, txt = model_embeddings(trained, data, indices, n_crops=0, variants=trained.config.image_variants,
                                store=store, device=device)
    return (img[:, 0] * txt.mean(1)).sum(-1).double().numpy()


def compare_settings(data: PairData, splits: Splits, configs: dict[str, TrainConfig], probe: PairData, *,
                     model: str = "clipmem-tiny", n_crops: int = 8, n_test: int | None = 127, probe_seeds=(0, 1, 2),
                     seed: int = 0, n_jobs: int = 1, store: RunStore | None = None, device=None,
                     progress: bool = True, num_workers: int = 0) -> pd.DataFrame:
    """One row per training setting (Table 1, Fig. 5a, Table 3, Table 8): an f/g pair trained with it
    (:func:`fit_many`), its memorisation of S_C (:func:`~clipmem_lib.clipmem.candidate_summary`), f's
    utility (linear probe on ``probe``, R@1 on S_E) and, with text noise, f's final noise-to-signal ratio."""
    jobs = [j for cfg in configs.values() for j in pair_jobs(data, splits, model, cfg, store=store, device=device,
                                                            num_workers=num_workers)]
    models = fit_many(jobs, n_jobs=n_jobs, progress=progress)
    rows = []
    for (label, cfg), f, g in zip(configs.items(), models[::2], models[1::2]):
        scores = score_clipmem(f, g, data, splits, n_crops=n_crops, n_test=n_test, seed=seed, store=store, device=device)
        use = utility(f, probe, data, splits.external, seeds=probe_seeds, store=store, device=device)
        rows.append(dict(setting=label, **candidate_summary(scores), **use,
                         noise_to_signal=f.history[-1].get("noise_to_signal", 0.0), f=f.key, g=g.key))
    return pd.DataFrame(rows)


def removal_curve(f: TrainedModel, g: TrainedModel, data: PairData, splits: Splits, probe: PairData,
                  fractions=(0.05, 0.1, 0.2, 0.4), *, model: str = "clipmem-tiny", strategies=STRATEGIES,
                  n_crops: int = 8, n_test: int | None = 127, probe_seeds=(0, 1, 2), seed: int = 0, n_jobs: int = 1,
                  store: RunStore | None = None, device=None, progress: bool = True,
                  num_workers: int = 0) -> pd.DataFrame:
    """Fig. 6 / 7: remove the first k pairs of S_C by each strategy (highest CLIPMem, random, lowest
    f-similarity) from f's training set, retrain f with its own config, and measure utility.

    k runs over ``fractions`` of |S_C|; k = 0 is f itself.  Returns one row per (strategy, k) with
    ``lp_acc``, ``lp_std``, ``r_at_1`` and ``planted_removed`` (pairs with ``is_miscaptioned``).
    """
    scores = score_clipmem(f, g, data, splits, n_crops=n_crops, n_test=n_test, seed=seed, store=store, device=device)
    pool = scores[scores.subset == "S_C"].reset_index(drop=True)
    pool["sim_f"] = pair_similarity(f, data, pool["index"], store=store, device=device)
    ks = doubling_grid(len(pool), fractions)
    orders = {s: removal_order(pool, s, seed) for s in strategies}
    plan = [(s, k, orders[s][:k]) for s in strategies for k in ks]
    jobs = [dict(data=data, indices=without(splits.f_indices, gone), model=model, config=f.config, tokenizer=f.tokenizer,
                 store=store, device=device, num_workers=num_workers, desc=f"f without {k} ({s})")
            for s, k, gone in plan]
    retrained = fit_many(jobs, n_jobs=n_jobs, progress=progress)
    planted = data.meta["is_miscaptioned"].to_numpy()
    rows = [dict(strategy=s, k=0, planted_removed=0, model=f.key) for s in strategies]
    rows += [dict(strategy=s, k=k, planted_removed=int(planted[gone].sum()), model=m.key)
             for (s, k, gone), m in zip(plan, retrained)]
    use = {m.key: utility(m, probe, data, splits.external, seeds=probe_seeds, store=store, device=device)
           for m in [f, *retrained]}
    return pd.DataFrame([{**r, **use[r["model"]]} for r in rows])


def score_sslmem(f: TrainedModel, g: TrainedModel, data: PairData, splits: Splits, *, n_crops: int = 5,
                 crop_scale=(0.5, 1.0), seed: int = 0, store: RunStore | None = None, device=None) -> pd.DataFrame:
    """SSLMem (Eq. 1–2) of CLIP's image encoder (``n_crops`` crops) and text encoder (all captions as
    augmentations) for S_S, S_C, S_I and S_E (Fig. 3), raw and range-normalised.  For image-only
    models (DINO, Sec. 4.5) only the image columns."""
    subsets = splits.subsets()
    idx = np.concatenate(list(subsets.values()))
    all_caps = tuple(range(data.n_captions)) if f.tokenizer is not None else ()
    loss = {}  # loss[model][encoder]
    for name, m in (("f", f), ("g", g)):
        img, txt = model_embeddings(m, data, idx, n_crops=n_crops, crop_scale=crop_scale, caption_ids=all_caps,
                                    seed=seed, store=store, device=device)
        loss[name] = {"image": image_alignment_loss(img)}
        if all_caps:
            loss[name]["text"] = text_alignment_loss(txt)
    df = pd.DataFrame(dict(index=idx, subset=np.concatenate([[k] * len(v) for k, v in subsets.items()])))
    for enc in loss["f"]:
        df[f"sslmem_{enc}_raw"] = sslmem(loss["f"][enc], loss["g"][enc], normalise=False)
        df[f"sslmem_{enc}"] = sslmem(loss["f"][enc], loss["g"][enc])
    return df


def utility(trained: TrainedModel, probe: PairData, heldout: PairData | None = None,
            heldout_indices: Sequence[int] | None = None, *, seeds=(0, 1, 2), store: RunStore | None = None,
            device=None) -> dict:
    """Linear-probe accuracy (mean ± std over ``seeds``) on ``probe``'s labels, and, if given,
    image→text R@1 on held-out pairs (first caption)."""
    if probe.labels is None:
        raise ValueError(f"{probe.name} has no labels to probe")
    feats, _ = model_embeddings(trained, probe, np.arange(len(probe)), n_crops=0, caption_ids=(0,), store=store,
                                device=device)
    mean, std = probe_accuracy(feats[:, 0].numpy(), probe.labels, seeds=seeds)
    out = dict(lp_acc=mean, lp_std=std)
    if heldout is not None:
        img, txt = model_embeddings(trained, heldout, heldout_indices, n_crops=0, caption_ids=(0,), store=store,
                                    device=device)
        out["r_at_1"] = retrieval_at_1(img[:, 0], txt[:, 0])
    return out


def unitmem_layers(trained: TrainedModel, data: PairData, indices: Sequence[int], *, tower: str = "image",
                   n_aug: int = 10, crop_scale=(0.9, 1.0), reduce: str = "median", seed: int = 0,
                   store: RunStore | None = None, device=None) -> pd.DataFrame:
    """Cached UnitMem of every MLP unit (Fig. 4) over the points ``indices``: of the image tower over
    ``n_aug`` crops, or (``tower="text"``, CLIP only) of the text tower over the pair's captions."""
    store = store if store is not None else RunStore("runs")
    idx = np.asarray(indices, dtype=np.int64)
    cfg = dict(model=trained.key, tower=tower, indices=idx, n_aug=n_aug, crop_scale=tuple(crop_scale),
               reduce=reduce, seed=seed, images=data.images.fingerprint(), captions=data.caption_digest(idx))

    def compute():
        if tower == "image":
            return layer_unitmem(trained.model, data.images, idx, n_aug=n_aug, crop_scale=crop_scale, reduce=reduce,
                                 seed=seed, device=device)
        if tower == "text" and trained.tokenizer is not None:
            return text_layer_unitmem(trained.model, trained.tokenizer.tokenize_pairs(data), idx,
                                      tuple(range(data.n_captions)), reduce=reduce, device=device)
        raise ValueError(f"tower must be 'image' or, for CLIP, 'text'; got {tower!r}")

    return store.frame("unitmem", cfg, compute)


def unitmem_during_training(data: PairData, indices: Sequence[int], model: str = "clipmem-tiny",
                            config: TrainConfig = TrainConfig(), *, every: int = 10, n_aug: int = 10,
                            percents=(1, 3, 5), store: RunStore | None = None, device=None,
                            progress: bool = True) -> pd.DataFrame:
    """Fig. 11: train CLIP on ``data[indices]`` and, every ``every`` epochs (and at the end), record in
    which layers of the image tower the top 1/3/5% UnitMem units sit.  Cached; the model trained here is
    the same as :func:`fit_clip`'s (same seeds), recomputed because its checkpoints are not kept."""
    store = store if store is not None else RunStore("runs")
    idx = np.asarray(indices, dtype=np.int64)
    tok = tokenizer_for(model, data)
    cfg = dict(_clip_key(data, idx, model, config, config.seed, tok), every=every, n_aug=n_aug,
               percents=tuple(percents), ties="shared")  # top_unit_layers' tie rule

    def compute():
        m, rows = create_model(model, tok.vocab_size, seed=config.seed), []

        def record(epoch, net):
            if (epoch + 1) % every and epoch + 1 != config.epochs:
                return
            table = layer_unitmem(net, data.images, idx, n_aug=n_aug, crop_scale=config.crop_scale, device=device)
            net.train()
            rows.append(top_unit_layers(table, percents).assign(epoch=epoch + 1))

        train_clip(m, data.images, tok.tokenize_pairs(data), idx, config, device=device, progress=progress,
                   desc="f, tracking UnitMem", on_epoch_end=record)
        return pd.concat(rows, ignore_index=True)

    return store.frame("unitmem_tracking", cfg, compute)
