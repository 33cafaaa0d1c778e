"""The few-lines API, gathered from the modules that implement it (d2l style): notebooks and users
import this one module.

    data   = make_scenes(SceneConfig(n=2000))
    splits = make_splits(len(data), n_candidates=200, n_external=200)
    f, g   = fit_f_and_g(data, splits, "clipmem-tiny", TrainConfig(epochs=80))   # cached in runs/
    scores = score_clipmem(f, g, data, splits)        # one row per pair, Eq. 3–4 + A.2

Cached fitting (fitting.py), cached measurement (measure.py), sweeps (sweeps.py), a chapter's setup
(chapter.py) and the run context (runtime.py) live apart; this module only re-exports them.
"""
from .chapter import Setup, setup
from .fitting import ClipJob, TrainedModel, VisionJob, fg_jobs, fit, fit_clip, fit_f_and_g, fit_f_and_g_seeds, fit_many, fit_vision
from .measure import (caption_similarity, encoder_diagnostics, model_embeddings, pair_similarity, score_clipmem, score_sslmem,
                      training_losses, unitmem_during_training, unitmem_layers, unitmem_of_models, unitmem_treatments,
                      utility)
from .runtime import Context
from .sweeps import (at_seed, compare_settings, label_removal, noise_over_training, removal_curve, removal_pool,
                     removal_curve_seeds, stack, style_similarity)

__all__ = ["Setup", "setup", "Context", "TrainedModel", "ClipJob", "VisionJob", "fit", "fit_many", "fit_clip",
           "fit_vision", "fg_jobs", "fit_f_and_g", "fit_f_and_g_seeds", "model_embeddings", "score_clipmem", "pair_similarity",
           "score_sslmem", "utility", "unitmem_layers", "unitmem_of_models", "unitmem_treatments", "unitmem_during_training",
           "training_losses", "encoder_diagnostics", "compare_settings", "noise_over_training",
           "at_seed", "removal_pool", "removal_curve", "removal_curve_seeds", "label_removal", "stack", "caption_similarity",
           "style_similarity"]
