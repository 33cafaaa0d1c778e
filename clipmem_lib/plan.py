"""The cost plan of a book run: every training each chapter asks the run store for, from the profile's
parameters alone (no data is read, nothing trains), with the samples it trains and the time that takes.

    python -m clipmem_lib.book plan --profile paper-lite             # what `make book` prints first
    python -m clipmem_lib.book plan --profile paper --samples-per-s 900

Each chapter's list mirrors the library calls of its notebook (the same setting builders:
:func:`~clipmem_lib.sweeps.caption_settings`, :func:`~clipmem_lib.removal.doubling_grid`, ...), and a test
checks it against the trainings a smoke run of the book actually does (``trainings/<chapter>.jsonl``,
written by :func:`~clipmem_lib.fitting.fit`).  Two trainings with the same ``ident`` are one store key:
the book trains it once, in the first chapter that asks.  A removal retraining drops pairs chosen by a
trained model's scores, so two strategies may by chance drop the same pairs and share a key: the plan
counts them apart (an upper bound by those coincidences).
"""
from __future__ import annotations

import dataclasses
import json
import math
import pathlib
from types import SimpleNamespace

import pandas as pd

from .chapter import design_seeds, removal_pool, split_sizes
from .removal import WITH_ORACLE, doubling_grid, nearest_k
from .schema import CHAPTERS, chapter_parameters
from .sweeps import _plan, caption_settings, noise_settings, sampling_settings, table1_settings
from .train import TrainConfig
from .vision import VisionConfig

__all__ = ["Training", "chapter_trainings", "book_trainings", "cost_table", "ledger"]

N_CAPTIONS = 5                     # captions per image of the built-in scenes and of COCO


@dataclasses.dataclass(frozen=True)
class Training:
    """One training a chapter asks for: ``n_train`` pairs (images for DINO, supervised and classifiers)
    per epoch for ``epochs`` epochs; ``ident`` is what its store key depends on."""

    chapter: str
    what: str
    kind: str
    model: str
    n_train: int
    epochs: int
    ident: tuple
    snapshots: bool = False  # Fig. 11's: a stored entry without them is trained again

    @property
    def samples(self) -> int:
        return self.n_train * self.epochs


class _Chapter:
    """A chapter's parameters (``P``) and the sizes and recipe :func:`~clipmem_lib.chapter.setup` derives."""

    def __init__(self, stem: str, given: dict, n_data: int | None = None):
        self.stem = stem
        self.P = P = SimpleNamespace(**{**{n: d.default for n, d in chapter_parameters(stem).items()}, **given})
        self.n = P.n_pairs if P.data_source == "builtin" else n_data
        if self.n is None and (P.n_shared < 0 or removal_pool(P) != "S_C"):
            raise ValueError(f"{stem}: data_source {P.data_source!r} with n_shared -1 or removal_pool 'all': the plan "
                             "needs the number of pairs in the data (--pairs N)")
        self.n_c, n_e, n_shared = split_sizes(P, self.n)
        n_shared = n_shared if n_shared is not None else self.n - 2 * self.n_c - n_e
        self.n = self.n if self.n is not None else n_shared + 2 * self.n_c + n_e
        self.n_f = n_shared + self.n_c  # f on S_S ∪ S_C, g on S_S ∪ S_I
        # built-in variants render from their own seeds, so the scenes' key ignores their count
        variants = P.n_variants if P.data_source != "builtin" and P.generated_path else 1
        self.data = (P.data_source, P.data_path, self.n if P.data_source == "builtin" else None, P.image_size,
                     variants, P.seed)
        self.variants = P.n_variants if P.data_source == "builtin" or P.generated_path else 1
        self.splits = ((P.n_candidates, P.n_external, P.n_shared, P.seed) if removal_pool(P) == "S_C"
                       else ("all of f", self.n_c, n_e, P.seed))
        self.train = TrainConfig(epochs=P.epochs, batch_size=P.batch_size, lr=P.lr, warmup=P.warmup, seed=P.seed)
        self.seeds = [P.seed + s for s in range(P.seeds)]
        self.out: list[Training] = []

    def seeded(self, config: TrainConfig | None = None) -> dict[int, TrainConfig]:
        return {s: dataclasses.replace(config or self.train, seed=s) for s in self.seeds}

    def add(self, what, kind, model, n_train, config, *ident, snapshots=False):
        self.out.append(Training(self.stem, what, kind, model, int(n_train), config.epochs,
                                 (kind, model, repr(config), *ident), snapshots))

    def fg(self, what, config, model=None, data=None, splits=None, n_f=None, planted=None):
        """Eq. 4's f and g (:func:`~clipmem_lib.fitting.fg_jobs`): ``planted`` changes S_C's captions, so
        f's key only (g never sees S_C)."""
        model, data, splits, n_f = model or self.P.model, data or self.data, splits or self.splits, n_f or self.n_f
        self.add(f"f, {what}, seed {config.seed}", "clip", model, n_f, config, data, planted, splits, "f")
        self.add(f"g, {what}, seed {config.seed}", "clip", model, n_f, config, data, None, splits, "g")

    def settings(self, configs: dict, repeat, model=None, seeds=None, **kw):
        """:func:`~clipmem_lib.sweeps.compare_settings`'s f/g pairs: ``repeat`` settings at every seed
        (``seeds``, default the chapter's)."""
        for label, s in _plan(configs, seeds or self.seeds, repeat):
            self.fg(label, dataclasses.replace(configs[label], seed=s), model, **kw)


def _first_three(c: _Chapter) -> None:  # 01, 02 (clean), 03: f and g at every seed
    for cfg in c.seeded().values():
        c.fg("baseline", cfg)


def _ch02(c: _Chapter) -> None:
    _first_three(c)
    for cfg in c.seeded().values():
        c.fg(f"{c.P.poison_fraction:.0%} of S_C mis-captioned", cfg, planted=("planted", c.P.poison_fraction))


def _ch04(c: _Chapter) -> None:
    cases = table1_settings(c.train, c.variants)
    c.settings(cases, ["1 image, 1 caption", "1 image, 5 captions", "5 generated images, 1 caption"])


def _ch05(c: _Chapter) -> None:
    from .models import layerwise_model

    P, first = c.P, c.seeds[0]
    deep = layerwise_model(P.model, P.unitmem_model)
    vcfg = {s: VisionConfig(epochs=P.epochs, batch_size=P.batch_size, n_local=P.dino_local_crops, seed=s)
            for s in c.seeds}
    c.fg("CLIP", c.seeded()[first])
    for kind, role in (("dino", "f"), ("dino", "g"), ("supervised", "f")):
        c.add(f"{kind} {role}, seed {first}", kind, P.model, c.n_f, vcfg[first], c.data, c.splits, role)
    for s in c.seeds:
        c.add(f"supervised ({deep}), seed {s}", "supervised", deep, c.n_f, vcfg[s], c.data, c.splits, "f")
        c.add(f"CLIP f ({deep}) with snapshots, seed {s}", "clip", deep, c.n_f, c.seeded()[s], c.data, None, c.splits,
              "f", snapshots=True)
        c.add(f"DINO f ({deep}), seed {s}", "dino", deep, c.n_f, vcfg[s], c.data, c.splits, "f")


def _ch06(c: _Chapter) -> None:
    from .removal import nearest

    P = c.P
    captions = caption_settings(c.train, P.caption_counts, N_CAPTIONS)
    c.settings(captions, [f"{min(P.caption_counts)} captions", f"{max(P.caption_counts)} captions"])
    c.settings(sampling_settings(c.train), [])
    compared = ["std 0", f"std {nearest(P.noise_stds, 0.15):g}", f"std {max(P.noise_stds):g}"]
    for at in P.noise_at:
        c.settings(noise_settings(c.train, P.noise_stds, at), compared, seeds=design_seeds(P, P.noise_seeds))


def _removed(strategy: str, k: int, pool: int) -> tuple:
    """What a removal retraining's pairs depend on: all of the pool, whatever the strategy, is one set."""
    return ("removal", strategy if k < pool else "all", k)


def _removal(c: _Chapter, config, planted, ks, strategies) -> None:
    for st in strategies:
        for k in ks:
            c.add(f"f without {k} ({st}), {'planted' if planted else 'clean'}, seed {config.seed}", "clip", c.P.model,
                  c.n_f - k, config, c.data, planted, c.splits, _removed(st, k, c.n_c))


def _ch07(c: _Chapter) -> None:
    P = c.P
    seeded = c.seeded(dataclasses.replace(c.train, caption_mode=P.removal_captions))
    first, planted = c.seeds[0], ("planted", P.poison_fraction)
    c.fg("clean", seeded[first])
    for cfg in seeded.values():
        c.fg("planted", cfg, planted=planted)
    for cfg in seeded.values():  # the design check: clean f at every seed
        c.add(f"f, clean, seed {cfg.seed}", "clip", P.model, c.n_f, cfg, c.data, None, c.splits, "f")
    ks = doubling_grid(c.n_c, P.removal_fractions)
    n_planted = int(round(P.poison_fraction * c.n_c))
    _removal(c, seeded[first], None, ks, ("clipmem", "random"))
    later = sorted({nearest_k(ks, n_planted), max(ks)})
    for s, cfg in seeded.items():
        _removal(c, cfg, planted, ks if s == first else later, WITH_ORACLE if s == first else ("clipmem", "random"))


def _ch08(c: _Chapter) -> None:
    from .appendix import removal_ks

    P, first = c.P, c.seeds[0]
    own = P.data_source == "builtin"
    if own:  # appendix.builtin_stand_in: the chapter's data, or built-in scenes of n_pairs with tenths as splits
        gen, gen_splits, n_gen, n_c, n_e, gen_f = c.data, c.splits, c.n, P.n_candidates, P.n_external, c.n_f
    else:
        n_gen, n_c = P.n_pairs, P.n_pairs // 10
        n_e, gen_f = n_c, P.n_pairs - 2 * n_c
        gen, gen_splits = ("builtin", "", n_gen, P.image_size, 1, P.seed), (n_c, n_e, -1, P.seed)
    for m in P.size_models:  # Table 5
        c.settings({m: c.train}, None, model=m)
    n_big = n_gen * P.data_multiple  # Table 6: one epoch on many more pairs
    for cfg in c.seeded(dataclasses.replace(c.train, epochs=1)).values():
        c.fg(f"one epoch on {n_big} pairs", cfg, data=("builtin", "", n_big, P.image_size, 1, P.seed),
             splits=(n_c, n_e, -1, P.seed), n_f=n_big - n_c - n_e, planted=("planted", P.poison_fraction))
    c.settings({P.model: c.train}, None, data=gen, splits=gen_splits, n_f=gen_f)  # Table 6's baseline
    vcfg, lab = VisionConfig(epochs=P.epochs, batch_size=P.batch_size), ("labelled", n_gen, P.image_size, P.seed)
    n_flip, lab_f, lab_splits = round(P.flip_fraction * n_c), n_gen - n_c - n_e, (n_c, n_e, -1, P.seed)
    ks = removal_ks(n_flip, n_c)
    for s in c.seeds:  # Fig. 8: classifiers on flipped labels, and f retrained without the most memorised
        cfg = dataclasses.replace(vcfg, seed=s)
        for role in ("f", "g"):
            c.add(f"classifier {role}, seed {s}", "classifier", P.model, lab_f, cfg, lab, lab_splits, role,
                  ("flipped", P.flip_fraction) if role == "f" else None)
        for st in ("memorisation", "random"):
            for k in ks:
                c.add(f"classifier f without {k} ({st}), seed {s}", "classifier", P.model, lab_f - k, cfg, lab,
                      lab_splits, _removed(st, k, n_c), ("flipped", P.flip_fraction))
    counts = caption_settings(c.train, [1, N_CAPTIONS], N_CAPTIONS)  # Tables 4/7
    for style in ("template", "generated"):
        data = gen if style == "template" else (*gen, "generated")
        c.settings(counts, None, data=data, splits=gen_splits, n_f=gen_f)
    for cfg in c.seeded().values():  # App. A.6, beside Table 5's CLIP
        c.fg(P.second_model, cfg, model=P.second_model)
        c.fg(P.model, cfg)


def _ch09(c: _Chapter) -> None:
    P = c.P
    p = c.n if P.audit_pairs == -1 else P.audit_pairs
    _audit(c, (c.data, "pool", P.audit_pairs), p, P.audit_rates)
    if P.cjk_pairs:
        from .loaders import cjk_available

        if cjk_available():  # the chapter skips the CJK set where Debian's fonts or Unihan are missing
            _audit(c, ("cjk", P.cjk_pairs, P.image_size, P.seed), P.cjk_pairs, P.cjk_rates)


def _audit(c: _Chapter, data, p: int, rates) -> None:
    """:func:`~clipmem_lib.audit.detection_benchmark`: per rate and seed, K fold models and one on all ``p``."""
    K = c.P.audit_folds
    for rate in rates:
        for cfg in c.seeded().values():
            for j in range(K):
                c.add(f"{rate:.0%} planted, fold {j + 1} of {K} held out, seed {cfg.seed}", "clip", c.P.model,
                      p - math.ceil((p - j) / K), cfg, data, rate, ("fold", j, K))
            c.add(f"{rate:.0%} planted, all {p} pairs, seed {cfg.seed}", "clip", c.P.model, p, cfg, data, rate, "all")


BUILDERS = {"01_metric": _first_three, "02_memorisation": _ch02, "03_modalities": _first_three, "04_modality": _ch04,
            "05_between": _ch05, "06_mitigation": _ch06, "07_removal": _ch07, "08_appendix": _ch08,
            "09_audit": _ch09}


def chapter_trainings(stem: str, given: dict | None = None, n_data: int | None = None) -> list[Training]:
    """Every training chapter ``stem`` asks for with the parameters ``given`` (the rest at the chapter's
    defaults), in its notebook's order; ``n_data`` is the number of pairs of real data (only needed
    when ``n_shared`` is -1)."""
    if stem not in CHAPTERS:
        raise KeyError(f"no chapter {stem!r}; chapters: {', '.join(CHAPTERS)}")
    if stem not in BUILDERS:
        return []
    c = _Chapter(stem, given or {}, n_data)
    BUILDERS[stem](c)
    return c.out


def book_trainings(planned: dict, n_data: int | None = None) -> pd.DataFrame:
    """One row per training the book asks for (``planned``: notebook path or stem -> its parameters,
    :func:`clipmem_lib.book.plan`), in book order, with ``new``: whether this is the first time the book
    asks for its store key (later asks load it; a snapshot-less entry asked for with snapshots trains
    again)."""
    rows, seen = [], {}
    for nb, given in planned.items():
        for t in chapter_trainings(pathlib.Path(nb).stem, given, n_data):
            new = t.ident not in seen or (t.snapshots and not seen[t.ident])
            seen[t.ident] = seen.get(t.ident, False) or t.snapshots
            rows.append({**dataclasses.asdict(t), "samples": t.samples, "new": new})
    cols = ["chapter", "what", "kind", "model", "n_train", "epochs", "samples", "new", "snapshots", "ident"]
    return pd.DataFrame(rows, columns=cols)


def cost_table(trainings: pd.DataFrame, stored: set | None = None, samples_per_s: float | None = None,
               measured: dict | None = None) -> pd.DataFrame:
    """Per chapter: trainings asked for, new ones (first asks of a key), those of them already in the store
    (``stored``: indices of ``trainings`` rows), samples still to train and the hours that takes at
    ``samples_per_s`` (given) or at the ``measured`` rate of each (kind, model) (NaN where neither)."""
    t = trainings.assign(stored=[i in (stored or set()) for i in trainings.index]).astype({"new": bool})
    todo = t[t.new & ~t.stored]
    rate = [samples_per_s or (measured or {}).get((k, m), math.nan) for k, m in zip(todo.kind, todo.model)]
    todo = todo.assign(hours=todo.samples / pd.Series(rate, index=todo.index, dtype=float) / 3600)
    out = pd.DataFrame({"asked": t.groupby("chapter").size(), "new": t[t.new].groupby("chapter").size(),
                        "stored": t[t.new & t.stored].groupby("chapter").size(),
                        "to train": todo.groupby("chapter").size(),
                        "samples": todo.groupby("chapter").samples.sum(),
                        "hours": todo.groupby("chapter").hours.sum(min_count=1)}).fillna(
        {"asked": 0, "new": 0, "stored": 0, "to train": 0, "samples": 0})
    out.loc[out["to train"] == 0, "hours"] = 0.0
    out = out.reindex(list(dict.fromkeys(trainings.chapter)))
    out.loc["total"] = {**out.sum().to_dict(), "hours": out.hours.sum(skipna=False)}  # NaN: a rate is missing
    return out.astype({c: int for c in ("asked", "new", "stored", "to train", "samples")})


def ledger(path) -> pd.DataFrame:
    """The trainings one chapter's run asked for, in order (the lines ``fit`` writes to
    ``$CLIPMEM_TRAININGS``), with ``trained``: whether that call trained it."""
    lines = pathlib.Path(path).read_text().splitlines() if pathlib.Path(path).is_file() else []
    return pd.DataFrame([json.loads(x) for x in lines if x.strip()],
                        columns=["kind", "model", "n_train", "epochs", "key", "trained"])
