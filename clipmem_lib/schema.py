"""The one schema of the book's parameters: every parameter of every chapter, declared once.

Papermill needs a literal ``parameters`` cell in each notebook, so those cells are generated from this
schema (``python -m clipmem_lib.book params``) and a test checks that they agree.  :func:`chapter.setup`
reads the :data:`RUN` parameters, which every experiment chapter declares with the same defaults, so
the models one chapter trains are the ones the next chapter loads from the run store.
"""
from __future__ import annotations

from .params import Declared, parse_declarations

__all__ = ["PARAMETERS", "RUN", "CHAPTERS", "chapter_parameters", "parameters_cell"]

PARAMETERS: dict[str, Declared] = parse_declarations('''\
data_source: str = "builtin"  # "builtin", "coco", "csv" or "webdataset"
data_path: str = ""  # COCO root, CSV file or shard pattern (real data only)
n_pairs: int = 2000  # size of the built-in dataset
image_size: int = 32  # built-in image side in pixels
n_variants: int = 1  # images per pair: the original and n_variants - 1 generated ones (Table 1)
generated_path: str = ""  # COCO only: folder of generated images named <stem>_<k>.jpg, k 1 to 5
n_candidates: int = 200  # size of S_C, and of S_I (paper: 5000)
n_external: int = 200  # size of S_E (paper: 5000)
n_shared: int = -1  # size of S_S, or -1 for all remaining pairs (paper: 65000)
model: str = "clipmem-tiny"  # open_clip config: clipmem-tiny, clipmem-small, ViT-B-32, ViT-B-16, ViT-L-14
epochs: int = 80  # training epochs (paper: 100)
batch_size: int = 128  # training batch size (paper: 128)
lr: float = 0.0012  # peak learning rate (paper: 1.2e-3)
warmup: float = 0.05  # warm-up fraction of the steps (paper: 5 of 100 epochs)
n_crops: int = 8  # crops averaged in Eq. 3's first term
n_test: int = 127  # test pairs from S_E in Eq. 3 (paper: N-1, i.e. 127)
seed: int = 0  # seed of the data and the split, and the first training seed
seeds: int = 1  # training seeds per setting, paired across settings (cpu profile: 3); verdicts need at least 2
device: str = "cpu"  # "cpu" or "cuda"
num_workers: int = 0  # DataLoader workers decoding image files while training (paper profile: 8)
n_jobs: int = 2  # CPU trainings of a sweep run side by side in one-thread worker processes (GPU runs go one at a time)
executor: str = "local"  # where a sweep's missing trainings run: "local" (this machine) or "submitit" (SLURM jobs through submitit; submitit_* below)
submitit_cluster: str = ""  # submitit's cluster: empty for SLURM where available, else local processes; "local" or "debug" run here
submitit_folder: str = ""  # submitit's job logs (relative to the project root); empty for <runs_dir>/.submitit
submitit_partition: str = ""  # SLURM partition of the jobs (empty: the cluster's default)
submitit_timeout_min: int = 720  # time limit of each training job, in minutes
submitit_gpus: int = -1  # GPUs per job; -1 means one when device is "cuda", else none
submitit_cpus: int = 0  # CPUs per job, also its torch threads; 0 means this process's threads (the same rounding as a run here)
runs_dir: str = "runs"  # run store (relative to the project root)
results_dir: str = "book/generated/results"  # where paper-vs-run tables are saved for the summary
profile: str = ""  # the profile the book runner ran with ("" outside it): the run's scale, named in each chapter
progress: bool = False  # show tqdm progress bars while training
poison_fraction: float = 0.1  # fraction of S_C whose captions are shuffled (paper: 500 of 5000)
gallery_k: int = 5  # pairs per row in the gallery (Fig. 1)
ssl_crops: int = 5  # augmented views per image for image SSLMem (reference code: 5)
ssl_crop_scale: list = [0.5, 1.0]  # area range of the SSLMem crops
probe_seeds: int = 5  # fit/test splits of the linear probe, for its mean and std (the paper's ± columns)
probe_size: int = 15000  # images of the built-in probe set, from a seed no model trains on (was 1,500)
heldout_pairs: int = 2000  # built-in held-out scenes for R@1 and mean rank, from a seed no model trains on
gallery_size: int = 200  # pairs per retrieval gallery: R@1 is the mean over galleries of this size (chance 1/200)
dino_local_crops: int = 2  # DINO local crops besides the 2 global ones (DINO: 8; 2 keeps the CPU cost down)
unitmem_augs: int = 10  # training augmentations averaged per point in UnitMem (paper: 10)
unitmem_reduce: str = "median"  # mu_-max over the other points: "median" (reference code) or "mean" (paper text)
track_every: int = 10  # epochs between UnitMem snapshots during training (Fig. 11)
unitmem_model: str = ""  # model for Fig. 4 and 11; "" means model, or clipmem-deep (4 blocks) when model is clipmem-tiny
caption_counts: list = [1, 3, 5]  # captions per image for Fig. 5a (balanced sampling from 2 on; 1 and the largest at every seed)
noise_stds: list = [0.0, 0.15, 0.5]  # text-noise std grid: none, the paper's sweet spot, its destructive end
noise_at: list = ["raw", "normalized"]  # placements, each swept over noise_stds: "raw" text features or the "normalized" embedding
noise_seeds: int = 0  # training seeds of Table 8's noise grid, one pooled design (0: seeds); the profiles set it from the power plan
removal_fractions: list = [0.1, 0.2, 0.4]  # k as shares of S_C, doubling (paper profile: 100 to 3200 of 5000)
removal_pool: str = "all"  # what removal draws from: "all" of f's pairs (S_S empty, S_C and S_I halve what S_E leaves) or the paper's "S_C"
removal_captions: str = "first"  # captions of f and its retrainings: "first" (Fig. 6) or "balanced" over 5 (Fig. 7)
size_models: list = ["clipmem-tiny", "clipmem-deep"]  # Table 5: a smaller and a larger config, trained on the same pairs and seeds
data_multiple: int = 30  # Table 6: pairs of the one-epoch run as a multiple of n_pairs (equal to epochs: the same compute)
flip_fraction: float = 0.5  # Fig. 8: share of S_C whose labels are flipped (paper: 200 flipped CIFAR-10 labels)
second_model: str = "clipmem-coca"  # App. A.6: a second multimodal model (the paper: BLIP; here open_clip's CoCa)
audit_pairs: int = 1000  # pairs of the detection benchmark, drawn from the data (-1: all)
audit_folds: int = 2  # K of cross-fitted CLIPMem: K models, each trained without one fold (clipmem audit: 5)
audit_rates: list = [0.1, 0.4]  # shares of the pairs whose captions are shuffled (full grid: 0.05, 0.1, 0.2, 0.4)
cjk_pairs: int = 600  # CJK characters (Noto glyphs, Unihan definitions) of the real-data benchmark (0: skip it)
cjk_rates: list = [0.1]  # planting rates of the CJK benchmark (full grid: 0.05, 0.1, 0.2, 0.4)
''')

# What chapter.setup reads: data, splits, training recipe and where and how to run.
RUN = ["data_source", "data_path", "n_pairs", "image_size", "n_variants", "generated_path", "n_candidates",
       "n_external", "n_shared", "model", "epochs", "batch_size", "lr", "warmup", "n_crops", "n_test", "seed", "seeds",
       "device", "num_workers", "n_jobs", "executor", "submitit_cluster", "submitit_folder", "submitit_partition",
       "submitit_timeout_min", "submitit_gpus", "submitit_cpus", "runs_dir", "results_dir", "progress", "profile"]

# The utility instruments (chapter.instruments) of the chapters that measure utility.
UTILITY = {"probe_size": None, "heldout_pairs": None, "gallery_size": None}

# Each chapter's own parameters after RUN, with any default of its own (None: the schema's).
CHAPTERS: dict[str, dict[str, object] | None] = {
    "01_metric": {},
    "02_memorisation": {"poison_fraction": None, "gallery_k": None},
    "03_modalities": {"ssl_crops": None, "ssl_crop_scale": None},
    "04_modality": {"n_variants": 6, "probe_seeds": None, **UTILITY},
    "05_between": {"ssl_crops": None, "ssl_crop_scale": None, "dino_local_crops": None, "unitmem_augs": None,
                   "unitmem_reduce": None, "track_every": None, "unitmem_model": None},
    "06_mitigation": {"probe_seeds": None, **UTILITY, "caption_counts": None, "noise_stds": None, "noise_at": None,
                      "noise_seeds": None},
    "07_removal": {"n_candidates": 600, "probe_seeds": None, **UTILITY, "removal_pool": None, "poison_fraction": 0.4,
                   "removal_fractions": [0.2, 0.4, 0.8], "removal_captions": None},  # planting sized by its utility gap
    "08_appendix": {"n_pairs": 1000, "n_candidates": 100, "n_external": 100, "n_test": 99, "epochs": 30,
                    "batch_size": 64,
                    "probe_seeds": None, **UTILITY, "poison_fraction": None, "gallery_k": None, "size_models": None, "data_multiple": None,
                    "flip_fraction": None, "second_model": None},  # five experiments sized for about 10 minutes
    "09_audit": {"audit_pairs": None, "audit_folds": None, "audit_rates": None, "cjk_pairs": None,
                 "cjk_rates": None},
    "99_summary": None,  # reads only the chapters' tables
}


def chapter_parameters(stem: str) -> dict[str, Declared]:
    """The parameters chapter ``stem`` declares, in cell order, with its own defaults."""
    if stem not in CHAPTERS:
        raise KeyError(f"no chapter {stem!r} in the schema; chapters: {', '.join(CHAPTERS)}")
    own = CHAPTERS[stem]
    if own is None:
        return {"results_dir": PARAMETERS["results_dir"], "profile": PARAMETERS["profile"]}
    out = {n: PARAMETERS[n] for n in RUN}
    for name, default in own.items():
        d = PARAMETERS[name]
        out[name] = d if default is None else Declared(d.name, d.type, default, d.help)
    return out


def parameters_cell(stem: str) -> str:
    """The literal ``parameters`` cell of chapter ``stem`` (what papermill overrides)."""
    return "\n".join(f"{d.name}: {d.type} = {_literal(d.default)}  # {d.help}"
                     for d in chapter_parameters(stem).values())


def _literal(v) -> str:
    return '"' + v.replace('"', '\\"') + '"' if isinstance(v, str) else repr(v)
