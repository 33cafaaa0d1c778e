"""Image similarities that need no training, for the audit's model-free neighbour terms
(:func:`clipmem_lib.audit.neighbour_consistency`), beside :func:`clipmem_lib.audit.pixel_vectors`.

Each function takes ``(images, indices, size)`` as ``pixel_vectors`` does (an image source of a
:class:`~clipmem_lib.data.PairData`, the pairs, the side in pixels of the first variant) and returns
unit rows, a float32 tensor (n, d), of the feature centred over the given images: the same treatment
as ``pixel_vectors``, so that only the feature differs between them.  The features and their
parameters were fixed from the literature before any measurement (``benchmarks/image_terms.py``):

* :func:`colour_histogram_vectors`: the joint RGB histogram with 4 bins a channel (64 cells: 16 pixels a
  cell on average at 32 px), as fractions, square-rooted (Hellinger: the cosine of two square-rooted
  histograms is their Bhattacharyya coefficient); position-free, colour only.
* :func:`hog_vectors`: histograms of oriented gradients with Dalal and Triggs's (CVPR 2005) parameters,
  scikit-image's ``skimage.feature.hog``: 9 orientations, 8 × 8-pixel cells, 2 × 2-cell blocks, L2-Hys,
  the gradient taken over the colour channels; shape and edges, not colour.
* :func:`joint_vectors`: several of them side by side, so that a cosine is the mean of theirs.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

__all__ = ["HISTOGRAM_BINS", "HOG_PARAMETERS", "colour_histogram_vectors", "hog_vectors", "joint_vectors"]

HISTOGRAM_BINS = 4  # a channel; 4^3 = 64 joint cells
HOG_PARAMETERS = dict(orientations=9, pixels_per_cell=(8, 8), cells_per_block=(2, 2), block_norm="L2-Hys")


def _pixels(images, indices: Sequence[int], size: int) -> np.ndarray:
    """The first variant of the given images at ``size`` px, as uint8 (n, size, size, 3)."""
    idx = np.asarray(indices)
    return images.batch(idx, np.zeros(len(idx), dtype=np.int64), size).permute(0, 2, 3, 1).numpy()


def _unit_centred(x: np.ndarray) -> torch.Tensor:
    """Rows centred over the set and scaled to unit length, float32 (as ``audit.pixel_vectors`` treats pixels)."""
    x = torch.from_numpy(np.asarray(x, dtype=np.float32))
    return torch.nn.functional.normalize(x - x.mean(0), dim=1)


def colour_histogram_vectors(images, indices: Sequence[int], size: int = 32, bins: int = HISTOGRAM_BINS) -> torch.Tensor:
    """Unit rows of the images' centred, square-rooted joint RGB histograms (``bins`` a channel; module docstring)."""
    if not 1 <= bins <= 256:
        raise ValueError(f"colour histograms need 1 to 256 bins a channel, got {bins}")
    q = _pixels(images, indices, size).astype(np.int64) * bins // 256  # (n, H, W, 3) bin of each channel
    cell = ((q[..., 0] * bins + q[..., 1]) * bins + q[..., 2]).reshape(len(q), -1)
    counts = np.stack([np.bincount(c, minlength=bins ** 3) for c in cell])
    return _unit_centred(np.sqrt(counts / cell.shape[1]))


def hog_vectors(images, indices: Sequence[int], size: int = 32, **hog_parameters) -> torch.Tensor:
    """Unit rows of the images' centred HOG descriptors (:data:`HOG_PARAMETERS`, overridden by ``hog_parameters``)."""
    from skimage.feature import hog

    params = {**HOG_PARAMETERS, **hog_parameters}
    cells = [size // p for p in params["pixels_per_cell"]]
    if min(cells) < params["cells_per_block"][0]:
        raise ValueError(f"HOG at {size} px has {cells[0]} x {cells[1]} cells of {params['pixels_per_cell']} px, "
                         f"fewer than a block of {params['cells_per_block']}")
    return _unit_centred(np.stack([hog(im, channel_axis=-1, **params) for im in _pixels(images, indices, size)]))


def joint_vectors(*parts: torch.Tensor) -> torch.Tensor:
    """Unit rows of several image terms' unit rows side by side: a cosine is the mean of the parts' cosines."""
    if not parts or len({p.shape[0] for p in parts}) != 1:
        raise ValueError(f"joint_vectors needs one or more terms of as many rows, got {[tuple(p.shape) for p in parts]}")
    return torch.cat([p.float() for p in parts], dim=1) / np.sqrt(len(parts))
