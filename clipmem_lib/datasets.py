"""One entry point from notebook parameters to a :class:`PairData`: the built-in scenes or real data."""
from __future__ import annotations

import pathlib

from .data import PairData
from .scenes import SceneConfig, make_scenes

__all__ = ["load_dataset", "check_source", "SOURCES"]

SOURCES = ("builtin", "coco", "csv", "webdataset")


def check_source(source: str, path: str = "") -> None:
    """Raise one clear error if ``path`` cannot hold data of kind ``source`` (called before any kernel
    starts, and again by :func:`load_dataset`): the COCO root's captions file and image folder, the CSV
    file, or at least one shard of a webdataset pattern."""
    if source == "builtin":
        return
    if source not in SOURCES:
        raise ValueError(f"unknown data_source {source!r}; choose one of {', '.join(SOURCES)}")
    if path == "???":
        raise ValueError(f"data_source={source!r}: the profile leaves data_path to you (???); pass "
                         "-p data_path /your/data with papermill, or DATA=/your/data with make")
    if not path:
        raise ValueError(f"data_source={source!r} needs data_path (e.g. papermill -p data_path /data/coco)")
    if source == "coco":
        root = pathlib.Path(path)
        need = [root / "annotations" / "captions_train2017.json", root / "train2017"]
        missing = [str(p) for p in need if not p.exists()]
        if missing:
            raise FileNotFoundError(f"data_path {path!r} is not a COCO root: missing {', '.join(missing)}")
    elif source == "csv":
        if not pathlib.Path(path).is_file():
            raise FileNotFoundError(f"data_path {path!r}: no such CSV file")
    else:
        from .loaders import _resolve_shards

        _resolve_shards(path, "data_path")


def load_dataset(source: str = "builtin", path: str = "", *, n_pairs: int = 2000, image_size: int = 32,
                 n_variants: int = 1, generated_path: str = "", seed: int = 0) -> PairData:
    """The training data of a run.

    builtin:    :func:`make_scenes` with ``n_pairs``, ``image_size``, ``n_variants`` and ``seed``;
    coco:       ``path`` is the COCO root with ``annotations/captions_train2017.json`` and ``train2017/``
                (and, for Sec. 4.5's supervised model, ``annotations/instances_train2017.json``);
                ``generated_path`` adds ``n_variants − 1`` generated images per pair (Table 1), named
                ``<image stem>_<k>.<ext>`` (k = 1, 2, …) after COCO's file names;
    csv:        ``path`` is an OpenCLIP CSV (tab-separated ``filepath``/``title``);
    webdataset: ``path`` is a shard pattern such as ``cc3m/{00000..00099}.tar``.
    """
    check_source(source, path)
    if source == "builtin":
        return make_scenes(SceneConfig(n=n_pairs, image_size=image_size, n_variants=n_variants, seed=seed))
    from . import loaders

    if source == "coco":
        root = pathlib.Path(path)
        inst = root / "annotations" / "instances_train2017.json"
        return loaders.load_coco(root / "annotations" / "captions_train2017.json", root / "train2017",
                                 instances=inst if inst.exists() else None, generated=generated_path or None,
                                 n_generated=n_variants - 1 if generated_path else 0)
    if source == "csv":
        return loaders.load_csv(path)
    return loaders.load_webdataset(path)
