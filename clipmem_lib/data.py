"""Image–caption pair collections: the one data type every other module consumes.

A :class:`PairData` holds, for N pairs, up to K captions each (COCO has 5), one or more image
*variants* per pair (variant 0 is the original image; variants 1.. stand in for the paper's
Stable-Diffusion images, Table 1), optional integer labels for linear probing, and a per-sample
ground-truth table (``meta``).  Images come from an :class:`ImageSource`, so the built-in dataset
(in memory) and COCO / CSV / webdataset (on disk) look the same to training and metrics.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from PIL import Image, UnidentifiedImageError

__all__ = ["ImageSource", "TensorImages", "FileImages", "PairData", "pil_to_uint8", "DEFAULT_CACHE_BYTES"]

DEFAULT_CACHE_BYTES = 2**30  # FileImages' decoded-pixel cache budget (1 GiB)


def pil_to_uint8(img: Image.Image, size: int) -> torch.Tensor:
    """Resize the shorter side to ``size``, centre-crop to ``size``×``size``, return uint8 (3, size, size)."""
    img = img.convert("RGB")
    w, h = img.size
    s = size / min(w, h)
    img = img.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BICUBIC)
    w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    img = img.crop((left, top, left + size, top + size))
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1)


class ImageSource:
    """Where the pixels of pair ``i``, variant ``v`` come from."""

    n_variants: int = 1

    def __len__(self) -> int:  # pragma: no cover - interface
        raise NotImplementedError

    def load(self, i: int, v: int, size: int) -> torch.Tensor:
        """Return image ``i`` (variant ``v``) as uint8 (3, size, size)."""
        raise NotImplementedError  # pragma: no cover - interface

    def fingerprint(self) -> str:
        """A short string that changes whenever the pixels could change (part of run-store keys)."""
        raise NotImplementedError  # pragma: no cover - interface

    def batch(self, idx: Sequence[int], variants: Sequence[int], size: int) -> torch.Tensor:
        """uint8 (B, 3, size, size) for pairs ``idx`` with the given variants."""
        return torch.stack([self.load(int(i), int(v), size) for i, v in zip(idx, variants)])


class TensorImages(ImageSource):
    """Images held in memory as a uint8 tensor of shape (N, V, 3, H, W) (the built-in dataset)."""

    def __init__(self, pixels: torch.Tensor, fingerprint: str):
        if pixels.dtype != torch.uint8 or pixels.ndim != 5 or pixels.shape[2] != 3:
            raise ValueError(f"TensorImages wants uint8 (N, V, 3, H, W), got {tuple(pixels.shape)} {pixels.dtype}")
        self.pixels, self._fp, self.n_variants = pixels, fingerprint, pixels.shape[1]

    def __len__(self) -> int:
        return self.pixels.shape[0]

    def load(self, i, v, size):
        return self.batch([i], [v], size)[0]

    def batch(self, idx, variants, size):
        x = self.pixels[torch.tensor(np.asarray(idx), dtype=torch.long), torch.tensor(np.asarray(variants), dtype=torch.long)]
        if x.shape[-1] != size:
            x = torch.nn.functional.interpolate(x.float(), size=(size, size), mode="bilinear", antialias=True,
                                                align_corners=False).round().clamp(0, 255).to(torch.uint8)
        return x

    def fingerprint(self):
        return self._fp


class FileImages(ImageSource):
    """Images read from files (COCO folder, CSV paths, generated variants) or from in-memory bytes.

    ``refs[i][v]`` is a path, or a zero-argument callable returning the encoded bytes (webdataset
    members).  A missing or corrupt file raises an error that names it.  Decoded pixels are kept in
    memory while they fit in ``cache_bytes`` (0 disables); beyond that, images are decoded each time.
    The returned tensors may be shared with the cache: do not modify them in place.
    """

    def __init__(self, refs: Sequence[Sequence], fingerprint: str, cache_bytes: int = DEFAULT_CACHE_BYTES):
        self.refs, self._fp, self.cache_bytes = [list(r) for r in refs], fingerprint, int(cache_bytes)
        self.n_variants = min((len(r) for r in self.refs), default=1)
        if any(len(r) == 0 for r in self.refs):
            raise ValueError("FileImages: every pair needs at least one image")
        self._cache, self._cached = {}, 0

    # Pickled copies (DataLoader workers) start with an empty cache: with num_workers > 0 the cache
    # lives per worker and per epoch, so it helps most with num_workers=0.
    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k not in ("_cache", "_cached")}

    def __setstate__(self, state):
        self.__dict__.update(state, _cache={}, _cached=0)

    def __len__(self):
        return len(self.refs)

    def load(self, i, v, size):
        key = (int(i), int(v), int(size))
        x = self._cache.get(key)
        if x is None:
            x = self._decode(*key)
            if self._cached + x.nbytes <= self.cache_bytes:
                self._cache[key], self._cached = x, self._cached + x.nbytes
        return x

    def _decode(self, i, v, size):
        ref = self.refs[i][v]
        try:
            src = io.BytesIO(ref()) if callable(ref) else ref
            with Image.open(src) as img:
                img.draft("RGB", (size, size))  # JPEG: decode at the smallest DCT scale still >= size
                img.load()
                return pil_to_uint8(img, size)
        except FileNotFoundError as e:
            raise FileNotFoundError(f"image of pair {i} (variant {v}) not found: {ref}") from e
        except (UnidentifiedImageError, OSError, SyntaxError) as e:
            name = ref if not callable(ref) else getattr(ref, "name", repr(ref))
            raise ValueError(f"image of pair {i} (variant {v}) is corrupt or not an image: {name} ({e})") from e

    def fingerprint(self):
        return self._fp


@dataclasses.dataclass
class PairData:
    """N image–caption pairs (the paper's training/test pairs (I, T)).

    captions: N lists of strings (1..K captions per image; COCO and the built-in data have 5).
    images:   an :class:`ImageSource` with the same N.
    labels:   optional int array (N,) for linear probing.
    meta:     per-sample ground truth; always has ``is_miscaptioned`` (bool).
    name:     a short human-readable name.
    """

    captions: list[list[str]]
    images: ImageSource
    labels: np.ndarray | None = None
    meta: pd.DataFrame | None = None
    name: str = "pairs"

    def __post_init__(self):
        n = len(self.captions)
        if n == 0:
            raise ValueError(f"{self.name}: the dataset is empty")
        if len(self.images) != n:
            raise ValueError(f"{self.name}: {n} caption sets but {len(self.images)} images")
        if any(len(c) == 0 for c in self.captions):
            bad = next(i for i, c in enumerate(self.captions) if len(c) == 0)
            raise ValueError(f"{self.name}: pair {bad} has no caption")
        if self.labels is not None:
            self.labels = np.asarray(self.labels)
            if self.labels.shape != (n,):
                raise ValueError(f"{self.name}: labels must have shape ({n},), got {self.labels.shape}")
        if self.meta is None:
            self.meta = pd.DataFrame(index=range(n))
        if len(self.meta) != n:
            raise ValueError(f"{self.name}: meta has {len(self.meta)} rows, expected {n}")
        if "is_miscaptioned" not in self.meta:
            self.meta["is_miscaptioned"] = False

    def __len__(self) -> int:
        return len(self.captions)

    @property
    def n_captions(self) -> int:
        """The number of captions every pair has (the smallest count, if they differ)."""
        return min(len(c) for c in self.captions)

    def caption_digest(self, indices: Sequence[int] | None = None) -> str:
        """Hash of the captions of ``indices`` (all pairs if None): run-store keys use it, so a
        model is shared between datasets that differ only in pairs it never trained on."""
        idx = range(len(self)) if indices is None else indices
        h = hashlib.sha256()
        for i in idx:
            h.update(json.dumps(self.captions[int(i)]).encode())
        return h.hexdigest()[:16]

    def replace_captions(self, new: dict[int, list[str]], name: str | None = None) -> "PairData":
        """A copy with the caption sets of some pairs replaced and ``is_miscaptioned`` set for them."""
        caps = [list(c) for c in self.captions]
        meta = self.meta.copy()
        for i, c in new.items():
            caps[int(i)] = list(c)
            meta.loc[int(i), "is_miscaptioned"] = True
        return dataclasses.replace(self, captions=caps, meta=meta, name=name or self.name)
