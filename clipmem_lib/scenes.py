"""The built-in dataset: procedural scenes with five captions each, a stand-in for COCO on CPU.

Design follows ../shared/paper/CPU_SCALE.md: 1–3 coloured shapes on a patterned background, plus
one made-up *concept* word per scene (Zipf-distributed over a fixed vocabulary) drawn as a fixed
6×6 glyph.  Frequent concepts can be learned; concepts seen once or twice can only be memorised
(the long tail that makes memorisation visible at small scale).  Each scene records its ground
truth (labels, concept frequency, atypicality), can be re-rendered as several image variants (the
paper's generated images, Table 1), and is deterministic given its seed.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageDraw, ImageFilter, ImageOps

from .data import PairData, TensorImages

__all__ = ["SceneConfig", "make_scenes", "make_probe_set", "PROBE_LABELS", "restyle_captions", "CAPTION_STYLES", "SHAPES", "COLOURS", "PATTERNS"]

GENERATOR_VERSION = 1  # bump when rendering or captions change: it is part of every run-store key
SHAPES = ["circle", "square", "triangle", "diamond", "cross", "ring"]
RARE_SHAPES = ["star", "hexagon"]  # only in atypical scenes: the long tail of attribute combinations
COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (50, 80, 225), "yellow": (235, 215, 40),
           "purple": (150, 60, 190), "orange": (245, 140, 30), "white": (245, 245, 245), "black": (20, 20, 20)}
BACKGROUNDS = {"grey": (128, 128, 128), "beige": (196, 182, 150), "teal": (60, 120, 120),
               "brown": (110, 80, 60), "navy": (45, 55, 95), "olive": (120, 120, 60)}
PATTERNS = ["plain", "striped", "dotted", "checked"]
SIZES = ["small", "large"]
POSITIONS = ["top left", "top", "top right", "left", "middle", "right", "bottom left", "bottom", "bottom right"]
NUMBERS = ["no", "one", "two", "three"]
CAPTION_STYLES = ("template", "generated")  # restyle_captions: make_scenes' own, or the GPT-3.5 stand-in
_SYLLABLES = ["ka", "dor", "nex", "mi", "lu", "ven", "tor", "sa", "bri", "qua", "zel", "pon", "rik", "fa", "mo",
              "tes", "gul", "vi", "ran", "dex", "lo", "cum", "shi", "bar", "nol", "te", "jun", "pra", "wex", "hal"]


@dataclasses.dataclass(frozen=True)
class SceneConfig:
    """Parameters of the built-in dataset; ``fingerprint()`` keys cached runs."""

    n: int = 2000
    seed: int = 0
    image_size: int = 32
    n_variants: int = 1          # extra re-renderings per scene (variant 0 is the original)
    n_concepts: int = 500
    zipf: float = 1.1            # concept k is drawn with probability ∝ 1 / k**zipf
    atypical_frac: float = 0.05  # rare shapes and distorted renderings
    max_objects: int = 3
    min_objects: int = 1
    vocab_seed: int = 1234       # concept words and glyphs: shared by datasets and probe sets

    def fingerprint(self) -> str:
        # variant v is rendered from its own seed, whatever n_variants is: the key ignores the count
        blob = json.dumps({**dataclasses.asdict(self), "n_variants": 1, "v": GENERATOR_VERSION}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _concepts(cfg: SceneConfig):
    """The fixed concept vocabulary: unique made-up words, 6×6 glyphs and glyph colours."""
    rng = np.random.default_rng(cfg.vocab_seed)
    words: list[str] = []
    while len(words) < cfg.n_concepts:
        w = "".join(rng.choice(_SYLLABLES, size=3))
        if w not in words:
            words.append(w)
    glyphs = rng.random((cfg.n_concepts, 6, 6)) < 0.5
    glyph_colours = rng.integers(0, 256, size=(cfg.n_concepts, 3))
    return words, glyphs, glyph_colours


def _describe(rng: np.random.Generator, cfg: SceneConfig, n_concepts_p: np.ndarray, atypical: bool) -> dict:
    """Draw one scene description (what the captions talk about)."""
    k = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    cells = rng.choice(9, size=k, replace=False)
    objs = [dict(shape=str(rng.choice(SHAPES)), colour=str(rng.choice(list(COLOURS))),
                 size=str(rng.choice(SIZES)), pos=int(c)) for c in cells]
    objs[0]["size"] = "large"  # object 0 is the main object: the probe label is its colour
    desc = dict(objects=objs, bg=str(rng.choice(list(BACKGROUNDS))), pattern=str(rng.choice(PATTERNS)),
                concept=int(rng.choice(cfg.n_concepts, p=n_concepts_p)), distortion=None)
    if atypical:
        desc["objects"][0]["shape"] = str(rng.choice(RARE_SHAPES))
        desc["distortion"] = str(rng.choice(["invert", "noise", "blur"]))
    return desc


def _polygon(shape: str, cx: float, cy: float, r: float):
    if shape in ("square",):
        return [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    if shape == "triangle":
        return [(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    if shape == "diamond":
        return [(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)]
    n, rr = (5, 0.45) if shape == "star" else (6, 1.0)
    pts = []
    for j in range(n * (2 if shape == "star" else 1)):
        a = np.pi * j / n - np.pi / 2 if shape == "star" else 2 * np.pi * j / n
        rad = r if (shape != "star" or j % 2 == 0) else r * rr
        pts.append((cx + rad * np.cos(a), cy + rad * np.sin(a)))
    return pts


def _render(desc: dict, rng: np.random.Generator, size: int, glyphs, glyph_colours) -> np.ndarray:
    """Render one description at ``size`` px (drawn at 4× then downsampled). New ``rng`` → new variant."""
    S = size * 4
    img = Image.new("RGB", (S, S), BACKGROUNDS[desc["bg"]])
    d = ImageDraw.Draw(img)
    shade = tuple(max(0, c - 35) for c in BACKGROUNDS[desc["bg"]])
    step, phase = S // 8, int(rng.integers(0, S // 8))
    if desc["pattern"] == "striped":
        for x in range(-S, S, step):
            d.line([(x + phase, 0), (x + phase + S, S)], fill=shade, width=max(1, S // 32))
    elif desc["pattern"] == "dotted":
        for x in range(phase % step, S, step):
            for y in range(phase % step, S, step):
                d.ellipse([x - S // 64, y - S // 64, x + S // 64, y + S // 64], fill=shade)
    elif desc["pattern"] == "checked":
        for x in range(0, S, step):
            for y in range(0, S, step):
                if ((x + y) // step) % 2:
                    d.rectangle([x, y, x + step - 1, y + step - 1], fill=shade)
    cell = S / 3
    for o in desc["objects"]:
        r = cell * (0.42 if o["size"] == "large" else 0.24) * rng.uniform(0.9, 1.1)
        cx = (o["pos"] % 3 + 0.5) * cell + rng.uniform(-0.12, 0.12) * cell
        cy = (o["pos"] // 3 + 0.5) * cell + rng.uniform(-0.12, 0.12) * cell
        col = COLOURS[o["colour"]]
        if o["shape"] == "circle":
            d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=col)
        elif o["shape"] == "ring":
            d.ellipse([cx - r, cy - r, cx + r, cy + r], outline=col, width=max(2, int(r / 2.5)))
        elif o["shape"] == "cross":
            w = r / 2.5
            d.rectangle([cx - r, cy - w, cx + r, cy + w], fill=col)
            d.rectangle([cx - w, cy - r, cx + w, cy + r], fill=col)
        else:
            d.polygon(_polygon(o["shape"], cx, cy, r), fill=col)
    g, cellpx = glyphs[desc["concept"]], max(1, S // 32)  # the concept glyph: 6×6 cells, 1/32 of the side each
    gx, gy = (int(v) for v in rng.integers(0, S - 6 * cellpx, size=2))
    colour = tuple(int(c) for c in glyph_colours[desc["concept"]])
    for yy, xx in zip(*np.nonzero(g)):
        d.rectangle([gx + xx * cellpx, gy + yy * cellpx, gx + (xx + 1) * cellpx - 1, gy + (yy + 1) * cellpx - 1],
                    fill=colour)
    img = img.resize((size, size), Image.BOX)
    if desc["distortion"] == "invert":
        img = ImageOps.invert(img)
    elif desc["distortion"] == "blur":
        img = img.filter(ImageFilter.GaussianBlur(radius=size / 24))
    arr = np.asarray(img, dtype=np.uint8)
    if desc["distortion"] == "noise":
        arr = np.clip(arr + rng.normal(0, 45, arr.shape), 0, 255).astype(np.uint8)
    return arr


def _captions(desc: dict, w: str) -> list[str]:
    """Five captions in template order 0..4: comparable detail, different wording (like COCO's five)."""
    main, n, rest, more = _parts(desc)
    return [
        f"a {main['colour']} {main['shape']} at the {POSITIONS[main['pos']]} with a {w}" + (f", {rest}" if rest else ""),
        f"a {w} beside a big {main['colour']} {main['shape']} on a {desc['bg']} background",
        f"{NUMBERS[n]} shape{'s' * (n > 1)} and a {w}, the biggest is a {main['colour']} {main['shape']}",
        f"picture of a {w} and a {main['colour']} {main['shape']} on {desc['pattern']} {desc['bg']}",
        f"the {w} sign near something {main['colour']}" + more,
    ]


def _parts(desc: dict) -> tuple[dict, int, str, str]:
    """What both caption styles say of a scene: its main object, the object count, the other objects
    ("a small red square and ...") and " and k more shape(s)" (empty for one object)."""
    objs = desc["objects"]
    n = len(objs)
    rest = " and ".join(f"a {o['size']} {o['colour']} {o['shape']}" for o in objs[1:])
    return objs[0], n, rest, f" and {n - 1} more shape{'s' * (n > 2)}" if rest else ""


def _generated_captions(desc: dict, w: str) -> list[str]:
    """The GPT-3.5 stand-in of the appendix (Tables 4/7), in template order 0..4: caption k states the facts
    of template k, reworded into one frame ("a <colour> <shape> with a <concept> ..."), so the two styles
    carry the same information and differ in how uniform their wording is."""
    main, n, rest, more = _parts(desc)
    head = f"a {main['colour']} {main['shape']} with a {w}"
    return [
        f"{head} at the {POSITIONS[main['pos']]}" + (f" and {rest}" if rest else ""),
        f"{head} on a {desc['bg']} background",
        f"{head}, {NUMBERS[n]} shape{'s' * (n > 1)} in all",
        f"{head} on a {desc['pattern']} {desc['bg']} background",
        f"a {main['colour']} thing with a {w}" + more,
    ]


def make_scenes(cfg: SceneConfig | None = None, **overrides) -> PairData:
    """Generate the built-in dataset (deterministic given ``cfg.seed``; ~thousands of scenes a second).

    Returns a :class:`PairData` whose captions are the five templates in a per-scene shuffled order
    (so "first caption only" is a random template, as in COCO), ``labels`` = colour of the main object,
    and ``meta`` with: shape, colour, n_objects, concept, concept_word, concept_count (how often the
    concept occurs in this dataset), is_atypical, distortion, template_order, description (JSON).
    """
    cfg = dataclasses.replace(cfg or SceneConfig(), **overrides)
    if cfg.n < 1 or cfg.image_size < 8 or cfg.n_variants < 1 or not 1 <= cfg.min_objects <= cfg.max_objects <= 3:
        raise ValueError(f"invalid SceneConfig: {cfg}")
    words, glyphs, glyph_colours = _concepts(cfg)
    p = 1.0 / np.arange(1, cfg.n_concepts + 1) ** cfg.zipf
    p /= p.sum()
    rng = np.random.default_rng(cfg.seed)
    atyp = rng.random(cfg.n) < cfg.atypical_frac
    descs = [_describe(rng, cfg, p, bool(a)) for a in atyp]
    pix = np.empty((cfg.n, cfg.n_variants, cfg.image_size, cfg.image_size, 3), dtype=np.uint8)
    for i, desc in enumerate(descs):
        for v in range(cfg.n_variants):
            pix[i, v] = _render(desc, np.random.default_rng([cfg.seed, i, v]), cfg.image_size, glyphs, glyph_colours)
    orders = [rng.permutation(5) for _ in descs]
    captions = [[_captions(d, words[d["concept"]])[t] for t in o] for d, o in zip(descs, orders)]
    concept = np.array([d["concept"] for d in descs])
    counts = np.bincount(concept, minlength=cfg.n_concepts)
    meta = pd.DataFrame(dict(
        shape=[d["objects"][0]["shape"] for d in descs],
        colour=[d["objects"][0]["colour"] for d in descs], pattern=[d["pattern"] for d in descs],
        n_objects=[len(d["objects"]) for d in descs],
        concept=concept, concept_word=[words[c] for c in concept], concept_count=counts[concept],
        is_atypical=atyp, distortion=[d["distortion"] or "" for d in descs],
        template_order=[" ".join(map(str, o)) for o in orders],
        description=[json.dumps(d) for d in descs], is_miscaptioned=False))
    labels = np.array([list(COLOURS).index(c) for c in meta["colour"]])
    images = TensorImages(torch.from_numpy(pix).permute(0, 1, 4, 2, 3).contiguous(), "scenes-" + cfg.fingerprint())
    return PairData(captions=captions, images=images, labels=labels, meta=meta, name=f"scenes(n={cfg.n}, seed={cfg.seed})")


PROBE_LABELS = {"colour": list(COLOURS), "shape": SHAPES, "pattern": PATTERNS}


def make_probe_set(n: int = 1500, seed: int = 10_000, image_size: int = 32, label: str = "colour",
                   **overrides) -> PairData:
    """A labelled probe set from the same generator with another seed: single-object, typical scenes.

    ``labels`` is the ``label`` attribute: the object's "colour" (8 classes, chance 12.5%), its "shape"
    (6), or the background's "pattern" (4), which every crop of a scene shares.  The images do not
    depend on ``label``, so probes of one seed share their embeddings.
    """
    if label not in PROBE_LABELS:
        raise ValueError(f"unknown probe label {label!r}; valid labels: {', '.join(PROBE_LABELS)}")
    data = make_scenes(SceneConfig(n=n, seed=seed, image_size=image_size, min_objects=1, max_objects=1,
                                   atypical_frac=0.0, **overrides))
    labels = np.array([PROBE_LABELS[label].index(v) for v in data.meta[label]])
    return dataclasses.replace(data, labels=labels, name=f"{data.name}, {label} labels")


def restyle_captions(data: PairData, style: str) -> PairData:
    """Built-in scenes with captions in another ``style`` (the appendix's Tables 4/7 and Fig. 12).

    ``"template"``: make_scenes' five differently worded templates (the COCO stand-in), unchanged if
    ``data`` has them already; ``"generated"``: the same five facts per scene reworded into one frame
    (the GPT-3.5 stand-in: more uniform wording, the same information; :func:`_generated_captions`), in
    the templates' per-scene order, so "first caption only" states the same facts in either style.
    Images (the very same object, so image caches stay valid), labels and meta are kept; ``meta`` gains
    ``caption_style`` and the name says the style.  Restyle before planting mis-captions.
    """
    if style not in CAPTION_STYLES:
        raise ValueError(f"unknown caption style {style!r}; valid styles: {', '.join(CAPTION_STYLES)}")
    meta = data.meta
    if not {"description", "concept_word", "template_order"} <= set(meta.columns):
        raise ValueError(f"{data.name}: restyle_captions needs built-in scenes (make_scenes), whose meta holds each "
                         f"scene's description; these pairs have none")
    current = meta["caption_style"].iloc[0] if "caption_style" in meta else "template"
    if meta["is_miscaptioned"].any() and style != current:
        raise ValueError(f"{data.name}: has planted mis-captions, which restyling from the descriptions would "
                         f"undo; restyle first, then plant_miscaptions")
    if style == current:  # as they are (planted mis-captions included)
        captions = [list(c) for c in data.captions]
    else:  # rebuilt from the descriptions, in the templates' order
        forms = _generated_captions if style == "generated" else _captions
        captions = [[forms(json.loads(d), w)[int(t)] for t in o.split()]
                    for d, w, o in zip(meta["description"], meta["concept_word"], meta["template_order"])]
    name = data.name.split(" [", 1)[0] + f" [{style} captions]"
    return dataclasses.replace(data, captions=captions, meta=meta.assign(caption_style=style), name=name)
