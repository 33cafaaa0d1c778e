"""Model factory and tokenizer: open_clip's own configs and tokenizer, randomly initialised, offline.

Tiny configs for CPU live in ``model_configs/*.json`` (open_clip's format) and are registered with
``open_clip.add_model_config``; paper scale uses open_clip's ViT-B-32, ViT-B-16 and ViT-L-14.
``clipmem-coca`` is a tiny open_clip CoCa, App. A.6's second multimodal model.
``pretrained`` is never passed: every model is trained from scratch, as in the paper (Sec. 4.1).
"""
from __future__ import annotations

import copy
import pathlib

import open_clip
import torch

from .data import PairData

__all__ = ["create_model", "model_for", "is_coca", "layerwise_model", "image_size", "model_config", "sized", "base_name",
           "CaptionTokenizer", "PAPER_MODELS"]

CONFIG_DIR = pathlib.Path(__file__).with_name("model_configs")
PAPER_MODELS = ("ViT-B-32", "ViT-B-16", "ViT-L-14")
open_clip.add_model_config(CONFIG_DIR)


def sized(name: str, size: int | None) -> str:
    """``name`` with its image side set to ``size`` pixels (``"clipmem-tiny@64"``), or ``name`` if None:
    a config name, so the side is part of every store key (``--image-size`` of ``clipmem audit``)."""
    return name if size is None else f"{base_name(name)}@{int(size)}"


def base_name(name: str) -> str:
    """The open_clip config behind a :func:`sized` name."""
    return name.split("@", 1)[0]


def model_config(name: str) -> dict:
    """The open_clip config dict of ``name`` (a registered tiny config or an open_clip model; a
    :func:`sized` name changes the image side, which must be a multiple of the patch size)."""
    base, _, size = name.partition("@")
    cfg = open_clip.get_model_config(base)
    if cfg is None:
        known = sorted(p.stem for p in CONFIG_DIR.glob("*.json")) + list(PAPER_MODELS)
        raise ValueError(f"unknown model config {base!r}; known here: {', '.join(known)} "
                         f"(or any name in open_clip.list_models())")
    cfg = copy.deepcopy(cfg)
    if size:
        patch = cfg["vision_cfg"].get("patch_size", 1)
        if not size.isdigit() or int(size) < patch or int(size) % patch:
            raise ValueError(f"image size {size!r} of {name!r}: needs a positive multiple of {base}'s patch size {patch}")
        cfg["vision_cfg"]["image_size"] = int(size)
    return cfg


DEEPER = {"clipmem-tiny": "clipmem-deep"}  # 2 blocks make no per-layer curve (Fig. 4, 11)


def layerwise_model(name: str, override: str = "") -> str:
    """The config for per-layer figures: ``override`` if given, else a deeper sibling of ``name`` if it
    has one (clipmem-tiny -> clipmem-deep), else ``name``."""
    return override or DEEPER.get(name, name)


def image_size(model) -> int:
    """Input side of a CLIP or CoCa model or of its image tower."""
    s = getattr(model, "visual", model).image_size
    return s[0] if isinstance(s, (tuple, list)) else int(s)


def is_coca(model) -> bool:
    """Whether ``model`` is an ``open_clip.CoCa`` (contrastive plus captioning loss; App. A.6's second
    multimodal model), which the trainer gives its captioning loss too."""
    return isinstance(model, open_clip.CoCa)


def create_model(name: str, vocab_size: int | None = None, seed: int = 0,
                 context_length: int | None = None) -> open_clip.CLIP | open_clip.CoCa:
    """A randomly initialised ``open_clip.CLIP``, or ``open_clip.CoCa`` for a config with a
    ``multimodal_cfg`` (its text decoder), no download; ``vocab_size`` shrinks the token table and
    ``context_length`` the text context (a tokenizer sized for the data), in the text tower and, for
    CoCa, the decoder alike."""
    cfg = model_config(name)
    coca = "multimodal_cfg" in cfg
    if cfg.pop("custom_text", False) and not coca:
        raise ValueError(f"{name}: a custom text tower (open_clip's CustomTextCLIP) is not supported; "
                         f"plain CLIP and CoCa configs are")
    if cfg["text_cfg"].get("hf_model_name"):
        raise ValueError(f"{name}: a Hugging Face text tower needs its own tokenizer; only open_clip's BPE "
                         f"text towers are supported")
    for tower in ("text_cfg", "multimodal_cfg") if coca else ("text_cfg",):
        if vocab_size is not None:
            cfg[tower]["vocab_size"] = int(vocab_size)
        if context_length is not None:  # CoCa's text tower appends its CLS token beyond this context
            cfg[tower]["context_length"] = int(context_length)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if not coca:
            return open_clip.CLIP(**cfg)
        model = open_clip.CoCa(**cfg)
        # open_clip leaves the decoder's output projection as torch.empty (MultimodalTransformer never calls its
        # init_parameters): memory garbage, so f and g would not start alike; initialise it as that method means to
        decoder = model.text_decoder
        torch.nn.init.normal_(decoder.text_projection, std=decoder.width ** -0.5)
        return model


def model_for(name: str, tokenizer: "CaptionTokenizer", seed: int = 0) -> open_clip.CLIP | open_clip.CoCa:
    """:func:`create_model` with the vocabulary and context of ``tokenizer`` (what it was sized for)."""
    return create_model(name, tokenizer.vocab_size, seed=seed, context_length=tokenizer.context_length)


class CaptionTokenizer:
    """open_clip's BPE tokenizer (shipped in the wheel), optionally with a vocabulary trimmed to a corpus.

    Trimming maps open_clip token ids to 0..V-1 in the same order (so the end-of-text token stays
    the largest id, which open_clip's argmax pooling relies on) and unseen tokens to id 1. The small
    CPU models train faster with it (README, benchmarks); keep the full vocabulary at paper scale.
    """

    UNK = 1

    def __init__(self, context_length: int, corpus: list[str] | None = None):
        self.context_length = context_length
        self._tok = open_clip.tokenizer.SimpleTokenizer(context_length=context_length)
        self.table = None
        if corpus is not None:
            ids = torch.unique(self._tok(corpus))
            ids = ids[ids != 0]
            self.table = torch.full((len(self._tok.encoder),), self.UNK, dtype=torch.long)
            self.table[ids] = torch.arange(2, 2 + len(ids))
            self.table[0] = 0

    @property
    def vocab_size(self) -> int | None:
        """Size of the trimmed vocabulary, or None for open_clip's full one."""
        return None if self.table is None else int(self.table.max()) + 1

    def __call__(self, texts: list[str]) -> torch.Tensor:
        ids = self._tok(texts)
        return ids if self.table is None else self.table[ids]

    def tokenize_pairs(self, data: PairData, n_captions: int | None = None) -> torch.Tensor:
        """Token ids (N, K, context) for every pair; pairs with fewer than K captions repeat theirs."""
        k = n_captions or max(len(c) for c in data.captions)
        flat = [c[j % len(c)] for c in data.captions for j in range(k)]
        return self(flat).view(len(data), k, self.context_length)


def tokenizer_for(name: str, data: PairData | None = None, trim: bool | None = None) -> CaptionTokenizer:
    """The tokenizer for model ``name``, sized for ``data`` if ``trim`` (default: for this package's small
    CPU configs; the paper's models keep open_clip's full vocabulary and context): the vocabulary is
    trimmed to the tokens of ``data``'s captions and the context to its longest caption, so the text
    tower does no work on padding."""
    ctx = model_config(name)["text_cfg"].get("context_length", 77)
    trim = (CONFIG_DIR / f"{base_name(name)}.json").exists() if trim is None else trim
    if not (trim and data is not None):
        return CaptionTokenizer(ctx)
    key = (ctx, data.caption_digest())
    if key not in _SIZED:  # sizing tokenizes the whole corpus twice: once per corpus, not once per job
        corpus = [c for cs in data.captions for c in cs]
        longest = int((CaptionTokenizer(ctx)(corpus) != 0).sum(-1).max())  # start and end tokens included
        _SIZED[key] = CaptionTokenizer(min(ctx, longest), corpus)
    return _SIZED[key]


_SIZED: dict[tuple[int, str], CaptionTokenizer] = {}  # (context, caption digest) -> the tokenizer sized for them
