"""Sweeps over training settings: one f/g pair per setting (Tables 1, 3 and 8, Fig. 5a) and removal
with retraining (Fig. 6 and 7).  Every training goes through :func:`~clipmem_lib.fitting.fit_many`, so a
sweep point already in the run store is loaded, not retrained."""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np
import pandas as pd

from .clipmem import candidate_summary
from .data import PairData
from .fitting import ClipJob, TrainedModel, VisionJob, classifier_fg_jobs, fg_jobs, fit_many, stored_history
from .labelmem import score_label_memorisation, test_accuracy
from .measure import caption_similarity, pair_similarity, score_clipmem, utility
from .models import model_config
from .removal import STRATEGIES, doubling_grid, removal_order, without
from .runtime import Context
from .splits import Splits
from .train import NOISE_PLACEMENTS, TrainConfig
from .vision import VisionConfig

__all__ = ["table1_settings", "caption_settings", "sampling_settings", "noise_settings", "compare_settings", "noise_over_training", "feature_norm_growth",
           "at_seed", "removal_pool", "removal_curve", "removal_curve_seeds", "label_removal", "style_similarity", "stack"]

TABLE1 = ("1 image, 1 caption", "1 generated image, 1 caption", "5 generated images, 1 caption", "1 image, 5 captions",
          "5 generated images, 5 captions")


def table1_settings(base: TrainConfig, n_variants: int) -> dict[str, TrainConfig]:
    """Table 1's five cases: augmenting the image side (generated images), the text side (5 captions) or
    both.  With fewer than 5 generated images per pair (COCO without ``generated_path``) only the
    real-image cases are returned."""
    gen = tuple(range(1, n_variants))[:5]  # variant 0 is the original
    if len(gen) < 5:  # (a config with no generated image would not even validate)
        return {TABLE1[0]: base, TABLE1[3]: dataclasses.replace(base, caption_mode="balanced")}
    return dict(zip(TABLE1, [base, dataclasses.replace(base, image_variants=gen[:1]),
                             dataclasses.replace(base, image_variants=gen, variant_mode="balanced"),
                             dataclasses.replace(base, caption_mode="balanced"),
                             dataclasses.replace(base, image_variants=gen, variant_mode="balanced",
                                                 caption_mode="balanced")]))


def caption_settings(base: TrainConfig, counts: Sequence[int], available: int) -> dict[str, TrainConfig]:
    """Fig. 5a: training with the first n captions of each image, balanced (one caption: the baseline)."""
    if not counts or min(counts) < 1 or max(counts) > available:
        raise ValueError(f"caption_counts={list(counts)}: the data has 1 to {available} captions per image")
    return {f"{n} captions": base if n == 1 else dataclasses.replace(base, caption_mode="balanced", n_captions=n)
            for n in counts}


def sampling_settings(base: TrainConfig) -> dict[str, TrainConfig]:
    """Table 3: the first caption only, a random one of 5 per step, or all 5 equally often (balanced)."""
    return {"first caption only (baseline)": base, "random caption of 5": dataclasses.replace(base, caption_mode="random"),
            "balanced over 5": dataclasses.replace(base, caption_mode="balanced")}


def noise_settings(base: TrainConfig, stds: Sequence[float], at: str = "raw") -> dict[str, TrainConfig]:
    """Fig. 5b / Table 8: Gaussian noise of each std on the text embeddings during training (0: baseline)."""
    if 0 not in stds:
        raise ValueError(f"noise_stds={list(stds)} must include 0 (the no-noise baseline)")
    if at not in NOISE_PLACEMENTS:  # std 0 is the base config, so an all-zero grid would not check it
        raise ValueError(f"noise_at={at!r}: the noise goes on the 'raw' text features or the 'normalized' embedding")
    return {f"std {s:g}": dataclasses.replace(base, text_noise_std=float(s), text_noise_at=at) if s else base
            for s in stds}


def _plan(configs: dict[str, TrainConfig], seeds: Sequence[int], repeat: Sequence[str] | None):
    """(label, seed) of every f/g pair a sweep trains: ``repeat`` settings at every seed, the others at the first."""
    return [(label, s) for label in configs for s in (seeds or [configs[label].seed])
            if repeat is None or label in repeat or s == (seeds or [configs[label].seed])[0]]


def _settings_jobs(data, splits, configs, seeds, repeat, model_name):
    """The plan of :func:`_plan` and its f and g jobs, f first for each (label, seed)."""
    plan = _plan(configs, seeds, repeat)
    cfgs = [dataclasses.replace(configs[label], seed=s) for label, s in plan]
    return plan, [j for cfg in cfgs for j in fg_jobs(data, splits, model_name, cfg)]


def compare_settings(data: PairData, splits: Splits, configs: dict[str, TrainConfig], probe: PairData, *,
                     seeds: Sequence[int] = (), repeat: Sequence[str] | None = None,
                     model_name: str = "clipmem-tiny", n_crops: int = 8, n_test: int | None = 127,
                     probe_seeds=(0, 1, 2), heldout: tuple[PairData, np.ndarray] | None = None,
                     gallery: int | None = None, seed: int = 0, ctx: Context | None = None) -> pd.DataFrame:
    """One row per training setting and training seed (Table 1, Fig. 5a, Table 3, Table 8): an f/g pair
    trained with it, its memorisation of S_C (:func:`~clipmem_lib.clipmem.candidate_summary`), f's utility
    (linear probe on ``probe``; retrieval on ``heldout`` = (data, indices), default S_E, in galleries of
    ``gallery``: :func:`~clipmem_lib.measure.utility`) and, with text noise, f's final noise-to-signal ratio.

    ``seeds``: the training seeds (paired: the same seed gives every setting the same initialisation and
    batch order); empty means each config's own.  Settings named in ``repeat`` (default: all) run at every
    seed, the others at the first only.  ``seed`` fixes the evaluation (crops, test pairs)."""
    plan, jobs = _settings_jobs(data, splits, configs, seeds, repeat, model_name)
    models = fit_many(jobs, ctx)
    rows = []
    for (label, s), f, g in zip(plan, models[::2], models[1::2]):
        scores = score_clipmem(f, g, data, splits, n_crops=n_crops, n_test=n_test, seed=seed, ctx=ctx)
        use = utility(f, probe, *(heldout or (data, splits.external)), seeds=probe_seeds, gallery=gallery, ctx=ctx)
        rows.append(dict(setting=label, seed=s, **candidate_summary(scores), **use,
                         noise_to_signal=f.history[-1].get("noise_to_signal", 0.0), f=f.key, g=g.key))
    return pd.DataFrame(rows)


def noise_over_training(data: PairData, splits: Splits, configs: dict[str, TrainConfig], *, seeds: Sequence[int] = (),
                        repeat: Sequence[str] | None = None, model_name: str = "clipmem-tiny",
                        ctx: Context | None = None) -> pd.DataFrame:
    """Table 8's f models per epoch (from their training history; nothing is trained that
    :func:`compare_settings` did not): the noise-to-signal ratio σ·√d/‖z‖ and the mean norm ‖z‖ of the
    features the noise is added to, ‖z‖ = σ·√d / ratio (settings with σ > 0)."""
    plan, jobs = _settings_jobs(data, splits, configs, seeds, repeat, model_name)
    dim = model_config(model_name)["embed_dim"]
    rows = [dict(setting=label, seed=s, std=f.config.text_noise_std, epoch=h["epoch"] + 1,
                 noise_to_signal=h["noise_to_signal"],
                 feature_norm=f.config.text_noise_std * math.sqrt(dim) / h["noise_to_signal"])
            for (label, s), f in zip(plan, jobs[::2]) if f.config.text_noise_std > 0 for h in stored_history(f, ctx)]
    return pd.DataFrame(rows)


def feature_norm_growth(history: pd.DataFrame) -> pd.Series:
    """Per setting of :func:`noise_over_training`'s table: the feature norm at the last epoch over the norm
    at the first, averaged over training seeds (above 1: the model grew its features against the noise)."""
    ends = history.sort_values("epoch").groupby(["setting", "seed"]).feature_norm.agg(["first", "last"])
    return (ends["last"] / ends["first"]).groupby(level="setting").mean()


def at_seed(table: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The rows of one training seed (what a chapter's figures show), without the ``seed`` column."""
    return table[table.seed == seed].drop(columns="seed").reset_index(drop=True)


def removal_pool(f: TrainedModel, g: TrainedModel, data: PairData, splits: Splits, *, n_crops: int = 8,
                 n_test: int | None = 127, seed: int = 0, ctx: Context | None = None) -> pd.DataFrame:
    """Fig. 6's pool: the S_C rows of f and g's CLIPMem table, with each pair's image–caption similarity
    under g (``sim_g``, the baseline: g never saw S_C) and under f (``sim_f``)."""
    scores = score_clipmem(f, g, data, splits, n_crops=n_crops, n_test=n_test, seed=seed, ctx=ctx)
    pool = scores[scores.subset == "S_C"].reset_index(drop=True)
    return pool.assign(sim_g=pair_similarity(g, data, pool["index"], ctx=ctx),
                       sim_f=pair_similarity(f, data, pool["index"], ctx=ctx))


def removal_curve(f: TrainedModel, g: TrainedModel, data: PairData, splits: Splits, probe: PairData,
                  fractions=(0.05, 0.1, 0.2, 0.4), *, strategies=STRATEGIES, n_crops: int = 8,
                  n_test: int | None = 127, probe_seeds=(0, 1, 2), heldout: tuple[PairData, np.ndarray] | None = None,
                  gallery: int | None = None, seed: int = 0, ctx: Context | None = None) -> pd.DataFrame:
    """Fig. 6 / 7: remove the first k pairs of S_C by each strategy (highest CLIPMem, random, lowest
    image–caption similarity under g; see :func:`~clipmem_lib.removal.removal_order`) from f's training
    set, retrain f with its own architecture and config, and measure utility.

    k runs over ``fractions`` of |S_C|; k = 0 is f itself.  Returns one row per (strategy, k) with
    ``lp_acc``, ``lp_std``, ``r_at_1``, ``mean_rank`` (utility as in :func:`compare_settings`) and
    ``planted_removed`` (pairs with ``is_miscaptioned``).
    """
    pool = removal_pool(f, g, data, splits, n_crops=n_crops, n_test=n_test, seed=seed, ctx=ctx)
    ks = doubling_grid(len(pool), fractions)
    orders = {s: removal_order(pool, s, f.config.seed) for s in strategies}  # random: a new draw per training seed
    plan = [(s, k, orders[s][:k]) for s in strategies for k in ks]
    jobs = [ClipJob(data, without(splits.f_indices, gone), f.model_name, f.config, tokenizer=f.tokenizer,
                    desc=f"f without {k} ({s})") for s, k, gone in plan]
    retrained = fit_many(jobs, ctx)
    planted = data.meta["is_miscaptioned"].to_numpy()
    rows = [dict(strategy=s, k=0, planted_removed=0, model=f.key) for s in strategies]
    rows += [dict(strategy=s, k=k, planted_removed=int(planted[gone].sum()), model=m.key)
             for (s, k, gone), m in zip(plan, retrained)]
    use = {m.key: utility(m, probe, *(heldout or (data, splits.external)), seeds=probe_seeds, gallery=gallery, ctx=ctx)
           for m in [f, *retrained]}
    return pd.DataFrame([{**r, **use[r["model"]]} for r in rows])


def removal_curve_seeds(runs: dict, data: PairData, splits: Splits, probe: PairData, fractions=(0.05, 0.1, 0.2, 0.4), *,
                        later_fractions=None, later_strategies=("clipmem", "random"), strategies=STRATEGIES,
                        ctx: Context | None = None, **kw) -> pd.DataFrame:
    """:func:`removal_curve` for each seed's f and g (``runs``: seed -> (f, g)), with a ``seed`` column.
    The first seed runs the whole grid; the later seeds only ``later_fractions`` (default: all) and
    ``later_strategies``: the points a verdict compares, which keeps the retrainings down."""
    seeds = list(runs)
    return pd.concat([removal_curve(*runs[s], data, splits, probe, fractions if s == seeds[0] else
                                    (later_fractions or fractions),
                                    strategies=strategies if s == seeds[0] else later_strategies, ctx=ctx, **kw)
                      .assign(seed=s) for s in seeds], ignore_index=True)


def label_removal(data: PairData, splits: Splits, labels, probe: PairData, ks: Sequence[int], *, seeds: Sequence[int],
                  model_name: str = "clipmem-tiny", config: VisionConfig = VisionConfig(),
                  strategies=("memorisation", "random"), ctx: Context | None = None) -> tuple[dict, pd.DataFrame]:
    """Fig. 8, per training seed: classifiers f and g on the given ``labels`` (flips included), the label
    memorisation of every point (:func:`~clipmem_lib.labelmem.score_label_memorisation`), and f retrained
    without the first k of S_C for each k of ``ks`` by each strategy ("memorisation": highest first;
    "random"), with its test accuracy on ``probe``.  Returns (seed -> memorisation table, curve with
    ``strategy``, ``k`` (0: f itself), ``seed``, ``accuracy`` and ``flipped_removed``)."""
    labels = np.asarray(labels)
    flipped = labels != np.asarray(data.labels)
    cfgs = [dataclasses.replace(config, seed=s) for s in seeds]
    fg = fit_many([j for c in cfgs for j in classifier_fg_jobs(data, splits, labels, model_name, c)], ctx)
    scores, plan = {}, []
    for s, f, g in zip(seeds, fg[::2], fg[1::2]):
        scores[s] = score_label_memorisation(f, g, data, splits, labels, ctx=ctx)
        pool = scores[s][scores[s].subset == "S_C"].rename(columns={"mem": "clipmem"}).reset_index(drop=True)
        orders = {st: removal_order(pool, "clipmem" if st == "memorisation" else st, s) for st in strategies}
        plan += [(s, st, k, orders[st][:k], f) for st in strategies for k in ks]
    jobs = [VisionJob("classifier", data, without(splits.f_indices, gone), model_name, f.config,
                      f"f without {k} ({st})", labels) for s, st, k, gone, f in plan]
    retrained = fit_many(jobs, ctx)
    before = {s: test_accuracy(f, probe, ctx=ctx) for s, f in zip(seeds, fg[::2])}  # k = 0: f itself
    rows = [dict(strategy=st, k=0, seed=s, flipped_removed=0, accuracy=before[s]) for s in seeds for st in strategies]
    rows += [dict(strategy=st, k=k, seed=s, flipped_removed=int(flipped[gone].sum()),
                  accuracy=test_accuracy(m, probe, ctx=ctx)) for (s, st, k, gone, _), m in zip(plan, retrained)]
    return scores, pd.DataFrame(rows)


def style_similarity(encoders: dict, datasets: dict[str, PairData], indices: Sequence[int], *,
                     ctx: Context | None = None) -> pd.DataFrame:
    """Fig. 12: one row per caption style, training seed and pair of ``indices`` with the mean pairwise
    similarity of the pair's captions under the model trained on that style (``encoders``: style -> seed
    -> model; ``datasets``: style -> data): an encoder maps another style's unseen words to one token."""
    return pd.DataFrame([dict(style=st, seed=s, index=i, similarity=v) for st, models in encoders.items()
                         for s, m in models.items()
                         for i, v in zip(indices, caption_similarity(m, datasets[st], indices, ctx=ctx))])


def stack(frames: dict[str, pd.DataFrame], name: str = "data") -> pd.DataFrame:
    """One table from several (e.g. the clean and the planted removal curves), keyed by a ``name`` column."""
    return pd.concat([t.assign(**{name: key}) for key, t in frames.items()], ignore_index=True)
