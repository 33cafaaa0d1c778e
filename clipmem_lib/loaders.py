"""Real image–caption data as :class:`~clipmem_lib.data.PairData`: COCO captions, OpenCLIP CSVs and
img2dataset-style webdataset shards (e.g. CC3M).  Images stay on disk and are decoded lazily; loading
only checks that they exist and fingerprints them from (name, size, mtime) without decoding.  Two
real, offline, long-tailed sets are built at run time from Debian packages (:func:`load_cjk`,
:func:`load_openclipart`).
"""
from __future__ import annotations

import collections
import glob
import hashlib
import json
import os
import re
import stat
import tarfile
import warnings

import numpy as np
import pandas as pd
import torch

from .data import FileImages, PairData, TensorImages

__all__ = ["load_coco", "load_csv", "load_webdataset", "load_cjk", "cjk_available", "load_photos", "photo_arrays", "PHOTO_CAPTIONS",
           "expand_braces", "TarMember", "CJK_FONT", "UNIHAN", "load_openclipart", "openclipart_available",
           "openclipart_caption", "OPENCLIPART"]

CJK_FONT = "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"  # Debian: fonts-noto-cjk
UNIHAN = "/usr/share/unicode/Unihan_Readings.txt.bz2"                # Debian: unicode-data
OPENCLIPART = "/usr/share/openclipart"                                # Debian: openclipart-svg, openclipart-png


def _digest(items) -> str:
    return hashlib.sha256(json.dumps(sorted(items)).encode()).hexdigest()[:16]


def _file_fingerprint(paths, labels, name: str) -> str:
    """Check that every image file exists; hash the sorted (label, size, mtime_ns) of them."""
    stats, missing = [], []
    for p, lab in zip(paths, labels):
        try:
            st = os.stat(p)
            if not stat.S_ISREG(st.st_mode):
                raise FileNotFoundError(p)
            stats.append((str(lab), st.st_size, st.st_mtime_ns))
        except (FileNotFoundError, NotADirectoryError):
            missing.append(str(p))
    if missing:
        raise FileNotFoundError(f"{name}: {len(missing)} of {len(stats) + len(missing)} image files not found, "
                                f"e.g. {', '.join(missing[:5])}")
    return _digest(stats)


def load_coco(annotations, image_dir, *, instances=None, generated=None, n_generated: int = 0,
              max_captions: int = 5, name: str = "coco") -> PairData:
    """COCO captions (``captions_train2017.json`` + image folder): one pair per captioned image, by image id,
    with its first ``max_captions`` captions in annotation order.  With ``instances``
    (``instances_train2017.json``), ``meta['first_level']`` lists each image's object supercategories
    ("|"-joined): the supervised baseline's labels in Sec. 4.5.  With ``generated`` (a folder) and
    ``n_generated`` = n, image variants 1..n are ``<generated>/<stem>_<k><ext>`` for a COCO file
    ``<stem><ext>``: Table 1's generated images."""
    annotations, image_dir = os.fspath(annotations), os.fspath(image_dir)
    if max_captions < 1:
        raise ValueError(f"{name}: max_captions must be >= 1, got {max_captions}")
    if not os.path.isfile(annotations):
        raise FileNotFoundError(f"{name}: COCO annotation file not found: {annotations}")
    if not os.path.isdir(image_dir):
        raise FileNotFoundError(f"{name}: COCO image folder not found: {image_dir}")
    with open(annotations, encoding="utf-8") as f:
        js = json.load(f)
    lacking = [k for k in ("images", "annotations") if not isinstance(js, dict) or k not in js]
    if lacking:
        raise ValueError(f"{name}: {annotations} has no {' or '.join(map(repr, lacking))} key; expected a COCO "
                         "captions file such as captions_train2017.json")
    try:
        files = {im["id"]: im["file_name"] for im in js["images"]}
        caps = collections.defaultdict(list)
        for a in js["annotations"]:
            if a["image_id"] not in files:
                raise ValueError(f"{name}: annotation {a.get('id', '?')} refers to image_id {a['image_id']!r}, "
                                 f"which is not in 'images' of {annotations}")
            caps[a["image_id"]].append(str(a["caption"]).strip())
    except KeyError as e:
        raise ValueError(f"{name}: an entry of {annotations} lacks the field {e}") from None
    ids = sorted(caps)
    if not ids:
        raise ValueError(f"{name}: {annotations} has no captions")
    names = [files[i] for i in ids]
    refs = [[os.path.join(image_dir, n)] for n in names]
    if n_generated > 0:
        if generated is None or not os.path.isdir(generated):
            raise FileNotFoundError(f"{name}: folder of generated images not found: {generated}")
        for r, n in zip(refs, names):
            stem, ext = os.path.splitext(n)
            r += [os.path.join(os.fspath(generated), f"{stem}_{k}{ext}") for k in range(1, n_generated + 1)]
    flat = [p for r in refs for p in r]
    fp = _file_fingerprint(flat, [os.path.basename(p) for p in flat], name)
    meta = pd.DataFrame({"image_id": ids, "file_name": names, "is_miscaptioned": False})
    if instances is not None:
        meta["first_level"] = _supercategories(os.fspath(instances), ids, name)
    return PairData(captions=[caps[i][:max_captions] for i in ids], images=FileImages(refs, fp),
                    meta=meta, name=name)


def _supercategories(path: str, ids, name: str) -> list[str]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{name}: COCO instances file not found: {path}")
    with open(path, encoding="utf-8") as f:
        js = json.load(f)
    try:
        sup = {c["id"]: c["supercategory"] for c in js["categories"]}
        per_image = collections.defaultdict(set)
        for a in js["annotations"]:
            per_image[a["image_id"]].add(sup[a["category_id"]])
    except KeyError as e:
        raise ValueError(f"{name}: {path} is not a COCO instances file (no {e})") from None
    return ["|".join(sorted(per_image.get(i, ()))) for i in ids]


def load_csv(path, *, img_key: str = "filepath", caption_key: str = "title", sep: str = "\t", root=None,
             name: str = "csv") -> PairData:
    """An OpenCLIP CSV (as for ``open_clip_train --csv-img-key/--csv-caption-key/--csv-separator``).
    Rows sharing an image path become one pair with several captions; relative paths resolve against
    ``root`` (default: the CSV's folder)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{name}: CSV file not found: {path}")
    try:
        df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise ValueError(f"{name}: {path} is empty") from None
    except pd.errors.ParserError as e:
        raise ValueError(f"{name}: cannot parse {path} with sep={sep!r}; is the separator right? ({e})") from None
    for key in (img_key, caption_key):
        if key not in df.columns:
            hint = (f"; only one column was parsed, is the separator right (sep={sep!r})?"
                    if len(df.columns) == 1 else "")
            raise ValueError(f"{name}: column {key!r} not in {path}; columns found: {list(df.columns)}{hint}")
    if len(df) == 0:
        raise ValueError(f"{name}: {path} is empty (a header but no rows)")
    caps: dict[str, list[str]] = {}
    for row, (img, cap) in enumerate(zip(df[img_key], df[caption_key])):
        if not img.strip():
            raise ValueError(f"{name}: row {row + 1} of {path} has an empty {img_key!r}")
        caps.setdefault(img, []).append(cap)
    base = os.fspath(root) if root is not None else os.path.dirname(os.path.abspath(path))
    names = list(caps)
    paths = [os.path.join(base, n) for n in names]
    fp = _file_fingerprint(paths, names, name)
    meta = pd.DataFrame({"filepath": names, "csv_rows": [len(caps[n]) for n in names], "is_miscaptioned": False})
    return PairData(captions=list(caps.values()), images=FileImages([[p] for p in paths], fp), meta=meta, name=name)


def expand_braces(pattern: str) -> list[str]:
    """Shell-style brace expansion: ``a{00..02}.tar`` -> a00.tar a01.tar a02.tar; ``{x,y}`` -> x y."""
    m = re.search(r"\{([^{}]*)\}", pattern)
    if m is None:
        return [pattern]
    rng = re.fullmatch(r"(-?\d+)\.\.(-?\d+)", m.group(1))
    if rng:
        a, b = rng.groups()
        width = max(len(a), len(b)) if any(len(s) > 1 and s[0] == "0" for s in (a, b)) else 0
        step = 1 if int(b) >= int(a) else -1
        items = [str(i).zfill(width) for i in range(int(a), int(b) + step, step)]
    else:
        items = m.group(1).split(",")
    return [out for it in items for out in expand_braces(pattern[:m.start()] + it + pattern[m.end():])]


class TarMember:
    """A lazily read member of an uncompressed tar: calling it returns the member's bytes."""

    __slots__ = ("tar", "offset", "size", "name")

    def __init__(self, tar: str, offset: int, size: int, name: str):
        self.tar, self.offset, self.size, self.name = tar, offset, size, name

    def __call__(self) -> bytes:
        with open(self.tar, "rb") as f:
            f.seek(self.offset)
            data = f.read(self.size)
        if len(data) != self.size:
            raise ValueError(f"{self.name}: truncated, read {len(data)} of {self.size} bytes")
        return data

    def __getstate__(self):
        return (self.tar, self.offset, self.size, self.name)

    def __setstate__(self, state):
        self.tar, self.offset, self.size, self.name = state

    def __repr__(self):
        return f"TarMember({self.name})"


def _resolve_shards(shards, name: str) -> list[str]:
    if isinstance(shards, (str, os.PathLike)):
        found = []
        for p in expand_braces(os.fspath(shards)):
            found += sorted(glob.glob(p)) if re.search(r"[*?[]", p) else [p]
        if not found:
            raise FileNotFoundError(f"{name}: no shard matches {os.fspath(shards)!r}")
    else:
        found = [os.fspath(s) for s in shards]
    found = list(dict.fromkeys(found))
    missing = [s for s in found if not os.path.isfile(s)]
    if missing or not found:
        raise FileNotFoundError(f"{name}: {len(missing)} of {len(found)} shards not found"
                                + (f", e.g. {', '.join(missing[:5])}" if missing else ""))
    return found


def load_webdataset(shards, *, image_exts=("jpg", "png", "jpeg", "webp"), text_ext: str = "txt",
                    name: str = "webdataset") -> PairData:
    """img2dataset-style tar shards (``key.jpg`` + ``key.txt`` per sample), given as a list of paths or a
    glob/brace pattern such as ``cc3m/{00000..00099}.tar``.  Captions are read now, images lazily.
    Samples lacking an image or a caption are skipped with a warning."""
    image_exts = tuple(e.lower().lstrip(".") for e in image_exts)
    text_ext = text_ext.lower().lstrip(".")
    caps, refs, keys, shard_of, stats = [], [], [], [], []
    no_img, no_txt, seen_exts = [], [], collections.Counter()
    for shard in _resolve_shards(shards, name):
        st = os.stat(shard)
        stats.append((os.path.basename(shard), st.st_size, st.st_mtime_ns))
        samples: dict[str, dict] = {}
        try:
            with tarfile.open(shard, "r:") as tf:
                for m in tf:
                    km = re.fullmatch(r"((?:.*/)?[^./][^/]*?)\.([^/]*)", m.name)
                    if not m.isfile() or km is None:
                        continue
                    key, ext = km.group(1), km.group(2).lower()
                    seen_exts[ext] += 1
                    s = samples.setdefault(key, {})
                    if ext == text_ext:
                        s["txt"] = tf.extractfile(m).read().decode("utf-8", errors="replace").strip()
                    elif ext in image_exts:
                        s.setdefault("img", {})[ext] = m
        except tarfile.ReadError as e:
            raise ValueError(f"{name}: {shard} is not a readable uncompressed tar ({e}); compressed shards "
                             "are not supported") from None
        base = os.path.basename(shard)
        for key, s in samples.items():
            if "img" not in s or not s.get("txt"):
                (no_img if "img" not in s else no_txt).append(f"{base}:{key}")
                continue
            ext = next(e for e in image_exts if e in s["img"])
            m = s["img"][ext]
            refs.append([TarMember(shard, m.offset_data, m.size, f"{base}:{m.name}")])
            caps.append([s["txt"]])
            keys.append(key)
            shard_of.append(shard)
    if no_img or no_txt:
        warnings.warn(f"{name}: skipped {len(no_img) + len(no_txt)} incomplete sample(s): {len(no_img)} without "
                      f"an image ({', '.join(image_exts)}), {len(no_txt)} without a caption (.{text_ext}), "
                      f"e.g. {(no_img + no_txt)[0]}", stacklevel=2)
    if not refs:
        raise ValueError(f"{name}: no sample has both an image ({', '.join(image_exts)}) and a .{text_ext} caption; "
                         f"member extensions found: {dict(seen_exts.most_common(10))}")
    fp = _digest(stats + [(r[0].name, r[0].size, 0) for r in refs])
    meta = pd.DataFrame({"key": keys, "shard": shard_of, "is_miscaptioned": False})
    return PairData(captions=caps, images=FileImages(refs, fp), meta=meta, name=name)


def _unihan_definitions(path, first: int, last: int) -> list[tuple[int, str]]:
    """(code point, kDefinition) of every character from ``first`` to ``last`` that Unihan defines."""
    import bz2

    out = []
    with bz2.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            if "\tkDefinition\t" in line and line.startswith("U+"):
                code, _, text = line.rstrip("\n").split("\t", 2)
                cp = int(code[2:], 16)
                if first <= cp <= last:
                    out.append((cp, text))
    return out


def cjk_available(font: str = CJK_FONT, unihan: str = UNIHAN) -> bool:
    """Whether Debian's fonts-noto-cjk and unicode-data, which :func:`load_cjk` builds from, are installed."""
    return os.path.isfile(font) and os.path.isfile(unihan)


def load_cjk(n: int = 2000, image_size: int = 32, seed: int = 0, *, block: tuple[int, int] = (0x4E00, 0x9FFF),
             font: str = CJK_FONT, unihan: str = UNIHAN) -> PairData:
    """``n`` CJK characters of ``block`` (default: CJK Unified Ideographs), a seeded sample (−1: all),
    each rendered black on white at ``image_size`` px in Noto Sans CJK and captioned with its Unihan
    ``kDefinition`` ("cottage; a coarse house, house with flat roof").  A real, long-tailed set: most
    definitions are one of a kind, and only shared radicals tie glyphs to meanings.  Built from Debian's
    fonts-noto-cjk and unicode-data at run time; characters the font lacks are left out.  ``meta``:
    ``char``, ``codepoint``."""
    from PIL import Image, ImageDraw, ImageFont

    for path, pkg in ((font, "fonts-noto-cjk"), (unihan, "unicode-data")):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"the CJK set needs {path} (Debian: apt-get install {pkg})")
    defs = _unihan_definitions(unihan, *block)
    face = ImageFont.truetype(font, int(image_size * 0.85))

    def render(ch: str) -> np.ndarray:
        img = Image.new("L", (image_size, image_size), 255)
        ImageDraw.Draw(img).text((image_size / 2, image_size / 2), ch, font=face, fill=0, anchor="mm")
        return np.asarray(img)

    missing = render(chr(0x10FFFD)).tobytes()  # the font's glyph for a character it lacks
    order = np.random.default_rng([seed, 17]).permutation(len(defs))
    chosen, pixels = [], []
    for i in order:
        glyph = render(chr(defs[i][0]))
        if glyph.tobytes() != missing and glyph.min() < 128:
            chosen.append(defs[i])
            pixels.append(glyph)
            if len(chosen) == n:
                break
    if n != -1 and len(chosen) < n:
        raise ValueError(f"n={n}: the font renders only {len(chosen)} characters of U+{block[0]:04X}–U+{block[1]:04X}")
    pix = np.repeat(np.stack(pixels)[:, None, None], 3, axis=2)  # (N, 1, 3, H, W)
    fp = hashlib.sha256(json.dumps([font, unihan, os.path.getsize(font), os.path.getsize(unihan), list(block), n,
                                    image_size, seed]).encode()).hexdigest()[:16]  # in order: _digest sorts
    meta = pd.DataFrame(dict(char=[chr(c) for c, _ in chosen], codepoint=[c for c, _ in chosen]))
    return PairData([[text] for _, text in chosen], TensorImages(torch.from_numpy(pix), f"cjk-{fp}"),
                    meta=meta, name=f"CJK characters (Noto Sans CJK, Unihan kDefinition), {len(chosen)} pairs")


# A short caption for each photograph that scikit-image ships (skimage.data; no download), by its name.
PHOTO_CAPTIONS = {
    "astronaut": "an astronaut in a white suit in front of a flag", "camera": "a man with a camera on a tripod",
    "cat": "a ginger cat looking at the camera", "coffee": "a cup of coffee on a saucer",
    "rocket": "a rocket on its launch pad", "horse": "the silhouette of a horse",
    "coins": "old coins on a grey background", "moon": "the surface of the moon",
    "page": "a printed page of text", "text": "a photograph of signs with text",
    "clock": "a clock on a wall, blurred", "brick": "a brick wall", "grass": "blades of grass",
    "gravel": "a close-up of gravel", "hubble_deep_field": "galaxies in deep space",
    "immunohistochemistry": "stained cells under a microscope", "retina": "a photograph of a retina",
    "chelsea": "a tabby cat lying down", "logo": "a logo with a snake"}


def photo_arrays() -> dict[str, np.ndarray]:
    """The photographs of :data:`PHOTO_CAPTIONS` that the installed scikit-image holds (one it would
    download is left out), as (H, W, 3) uint8 arrays."""
    import skimage.data as skdata

    out = {}
    for name in PHOTO_CAPTIONS:
        try:
            img = np.asarray(getattr(skdata, name)())
        except Exception:  # noqa: BLE001 - an image this version would fetch from the network
            continue
        out[name] = (np.stack([img] * 3, -1) if img.ndim == 2 else img[..., :3]).astype(np.uint8)
    return out


def load_photos(image_size: int = 32) -> PairData:
    """scikit-image's own photographs (about 20; :func:`photo_arrays`), each centre-cropped to a square of
    ``image_size`` px and captioned by :data:`PHOTO_CAPTIONS`: real photos, offline, but far too few to
    measure a detector's power (2 to 8 planted at 10 to 40%).  ``meta``: ``name``."""
    import skimage
    from PIL import Image, ImageOps

    photos = photo_arrays()
    if len(photos) < 4:
        raise ValueError(f"only {len(photos)} offline photographs in scikit-image {skimage.__version__}")
    pix = np.stack([np.asarray(ImageOps.fit(Image.fromarray(a), (image_size, image_size), Image.BICUBIC))
                    for a in photos.values()])
    fp = _digest([(skimage.__version__, image_size, *photos)])
    return PairData([[PHOTO_CAPTIONS[n]] for n in photos],
                    TensorImages(torch.from_numpy(pix).permute(0, 3, 1, 2)[:, None].contiguous(), f"photos-{fp}"),
                    meta=pd.DataFrame(dict(name=list(photos))), name=f"scikit-image photographs, {len(photos)} pairs")


_DC, _RDF, _CC = "{http://purl.org/dc/elements/1.1/}", "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}", "{http://web.resource.org/cc/}"
COMMON_SHARE = 0.01          # a cleaned title or description more than this share of the drawings carry names a collection
MAX_DRAWING_PIXELS = 1 << 24  # a larger PNG (64 MB and more decoded; 19 of openclipart's, up to 623 Mpx) is left out


def openclipart_available(root=OPENCLIPART) -> bool:
    """Whether Debian's openclipart-svg and openclipart-png, which :func:`load_openclipart` builds from, are installed."""
    return os.path.isdir(os.path.join(os.fspath(root), "svg")) and os.path.isdir(os.path.join(os.fspath(root), "png"))


def _svg_metadata(path: str) -> tuple[str, str, list[str]]:
    """(dc:title, dc:description, dc:subject keywords) of an SVG's first cc:Work ("" and [] where absent)."""
    import xml.etree.ElementTree as ET

    try:
        work = next(ET.parse(path).iter(_CC + "Work"), None)
    except ET.ParseError as e:
        raise ValueError(f"openclipart: {path} is not a readable SVG ({e})") from None
    if work is None:
        return "", "", []
    text = {tag: (work.findtext(_DC + tag) or "").strip() for tag in ("title", "description")}
    return text["title"], text["description"], [li.text or "" for li in work.iterfind(f"{_DC}subject/{_RDF}Bag/{_RDF}li")]


def _clean_title(title: str) -> str:
    """The title without a "Clipart by <artist> - " prefix, underscores, digits or tokens left without a letter."""
    title = re.sub(r"^clipart by .*?(?: - |$)", "", title.strip(), flags=re.IGNORECASE)
    words = (re.sub(r"\d+", "", w) for w in re.split(r"[\s_]+", title))
    return " ".join(w for w in words if re.search(r"[^\W\d_]", w))


def _clean_description(text: str) -> str:
    """The description's first sentence or line, without web addresses or e-mail addresses."""
    text = re.sub(r"\S+@\S+|https?://\S+|www\.\S+", " ", text)
    first = re.split(r"(?<=[.!?])\s|\n", text.strip(), maxsplit=1)[0]
    first = " ".join(first.split()).rstrip(".")
    return first if re.search(r"[^\W\d_]", first) else ""


def openclipart_caption(title: str, description: str, keywords, common=frozenset()) -> str:
    """One drawing's caption, "<title>; <description>; <keyword>, <keyword>, ..." (:func:`load_openclipart`'s rule):
    the cleaned title and description unless ``common`` (lower-cased) holds them, and the keywords; "" if none."""
    t, d = _clean_title(title), _clean_description(description)
    t = "" if t.lower() in common else t
    d = "" if d.lower() in common or d.lower() == t.lower() else d
    kws = dict.fromkeys(k for k in (" ".join(k.replace("_", " ").split()) for k in keywords) if k)
    return "; ".join(p for p in (t, d, ", ".join(kws)) if p)


def _png_area(path: str) -> int:
    """Width × height from a PNG's header (0 where the file is missing), read without decoding it."""
    try:
        with open(path, "rb") as f:
            head = f.read(24)
    except FileNotFoundError:
        return 0
    if head[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"openclipart: {path} is not a PNG")
    return int.from_bytes(head[16:20], "big") * int.from_bytes(head[20:24], "big")


def _drawing_pixels(path: str, size: int) -> np.ndarray:
    """A PNG drawing on white, cropped to what is drawn, centred in a white square and resized to ``size`` px (H, W, 3)."""
    from PIL import Image, ImageChops

    with Image.open(path) as im:
        rgba = im.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    rgb = Image.alpha_composite(white, rgba).convert("RGB")
    drawn = rgb.crop(ImageChops.difference(rgb, white.convert("RGB")).getbbox() or (0, 0, *rgb.size))
    side = max(drawn.size)
    square = Image.new("RGB", (side, side), (255, 255, 255))
    square.paste(drawn, ((side - drawn.width) // 2, (side - drawn.height) // 2))
    return np.asarray(square.resize((size, size), Image.BICUBIC))


def load_openclipart(n: int = -1, image_size: int = 32, seed: int = 0, *, root=OPENCLIPART) -> PairData:
    """Openclipart's drawings (Debian's openclipart-svg and openclipart-png, under ``root``), a seeded sample
    of ``n`` (−1: all), each captioned from its SVG's metadata and drawn from the PNG at the same path.

    One pair per SVG file: a symbolic link (the same drawing in another category) is left out, and so is a
    drawing without its PNG or whose PNG has more than 2^24 pixels (:data:`MAX_DRAWING_PIXELS`).  The
    caption (:func:`openclipart_caption`) joins with "; " the title (a "Clipart by <artist> - " prefix,
    underscores and digits removed: "Clipart by Nicu Buculei - arrow08_4" gives "arrow"), the
    description's first sentence (web and e-mail addresses removed) and the keywords (underscores as
    spaces, in order, once each).  A cleaned title or description that more than 1% of the drawings (and
    at least two) share names a collection, not a drawing ("gramastar", "Part of the Flat Icon Collection
    (...)", "EPS converted from"), and is left out.  Drawings left with no caption are dropped: of the
    7,458 SVG files of openclipart 0.18, 7,439 have a usable PNG and 7,322 of those a caption (3,014
    distinct; 1,375 stars share "stars, shapes, magick, geometry").  The rule was fixed by reading the
    metadata, before any detector was run on the set.  The image: the PNG on white, cropped to the box of
    what is drawn, centred in a white square and resized (bicubic) to ``image_size`` px.
    Noisy on purpose: many titles name a collection and many captions repeat.  ``meta``: ``path`` (the
    SVG, relative to ``root/svg``), ``category`` (its first folder)."""
    root = os.fspath(root)
    if not openclipart_available(root):
        raise FileNotFoundError(f"the openclipart set needs {root}/svg and {root}/png "
                                "(Debian: apt-get install openclipart-svg openclipart-png)")
    svg_root = os.path.join(root, "svg")
    rel = sorted(os.path.relpath(os.path.join(d, f), svg_root) for d, _, fs in os.walk(svg_root) for f in fs
                 if f.endswith(".svg") and not os.path.islink(os.path.join(d, f)))
    rel = [r for r in rel if 0 < _png_area(os.path.join(root, "png", r[:-4] + ".png")) <= MAX_DRAWING_PIXELS]
    meta = [_svg_metadata(os.path.join(svg_root, r)) for r in rel]
    counts = collections.Counter(c for t, d, _ in meta for c in {_clean_title(t).lower(), _clean_description(d).lower()} if c)
    common = frozenset(c for c, k in counts.items() if k > max(1, COMMON_SHARE * len(meta)))
    caps = [openclipart_caption(*m, common) for m in meta]
    keep = [i for i, c in enumerate(caps) if c]
    if n != -1:
        if not 1 <= n <= len(keep):
            raise ValueError(f"n={n}: openclipart under {root} has {len(keep)} captioned drawings")
        keep = sorted(np.random.default_rng([seed, 17]).choice(keep, n, replace=False).tolist())
    pngs = [os.path.join(root, "png", rel[i][:-4] + ".png") for i in keep]
    pix = np.stack([_drawing_pixels(p, image_size) for p in pngs])
    fp = _digest([[rel[i], os.stat(p).st_size, os.stat(p).st_mtime_ns] for i, p in zip(keep, pngs)] + [["", image_size]])
    return PairData([[caps[i]] for i in keep],
                    TensorImages(torch.from_numpy(pix).permute(0, 3, 1, 2)[:, None].contiguous(), f"openclipart-{fp}"),
                    meta=pd.DataFrame(dict(path=[rel[i] for i in keep], category=[rel[i].split(os.sep)[0] for i in keep])),
                    name=f"openclipart drawings (title, description, keywords), {len(keep)} pairs")
