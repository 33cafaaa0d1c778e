"""Model-free image vectors (clipmem_lib.imagefeatures) against brute-force loops, scikit-image directly and planted
near-duplicates."""
import numpy as np
import pytest
import torch

from clipmem_lib.data import TensorImages
from clipmem_lib.imagefeatures import colour_histogram_vectors, hog_vectors, joint_vectors

skimage = pytest.importorskip("skimage", reason="scikit-image (requirements.txt) computes HOG")
from skimage.draw import disk, polygon, rectangle  # noqa: E402
from skimage.feature import hog  # noqa: E402


def source(arrays):
    """TensorImages of (H, W, 3) uint8 arrays, one variant each."""
    return TensorImages(torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)[:, None].contiguous(), "test")


def drawn(shape, colour=(0, 0, 0), size=32, offset=0):
    """A shape in ``colour`` on white: a square, a disk or a triangle."""
    im = np.full((size, size, 3), 255, dtype=np.uint8)
    if shape == "square":
        rr, cc = rectangle((6 + offset, 6 + offset), extent=(16, 16), shape=im.shape[:2])
    elif shape == "disk":
        rr, cc = disk((16 + offset, 16 + offset), 9, shape=im.shape[:2])
    else:
        rr, cc = polygon([4 + offset, 27 + offset, 27 + offset], [16 + offset, 4 + offset, 27 + offset], shape=im.shape[:2])
    im[rr, cc] = colour
    return im


def unit_centred(rows):
    x = np.asarray(rows, dtype=np.float64)
    x = x - x.mean(0)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_colour_histogram_equals_a_loop_over_pixels():
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(4)] + [drawn("disk", (200, 30, 90))]
    got = colour_histogram_vectors(source(arrays), range(5), size=32, bins=4)
    rows = []
    for a in arrays:
        h = np.zeros((4, 4, 4))
        for y in range(32):
            for x in range(32):
                r, g, b = (int(v) // 64 for v in a[y, x])
                h[r, g, b] += 1
        rows.append(np.sqrt(h.ravel() / 1024))
    assert got.dtype == torch.float32 and got.shape == (5, 64)
    assert np.allclose(got.numpy(), unit_centred(rows), atol=1e-5)
    assert np.allclose(got.norm(dim=1).numpy(), 1, atol=1e-5)


def test_hog_equals_scikit_image_with_dalal_and_triggs_parameters():
    arrays = [drawn("square"), drawn("disk"), drawn("triangle"), drawn("square", offset=3)]
    got = hog_vectors(source(arrays), [2, 0, 1, 3])
    want = [hog(arrays[i], orientations=9, pixels_per_cell=(8, 8), cells_per_block=(2, 2), block_norm="L2-Hys",
                channel_axis=-1) for i in [2, 0, 1, 3]]
    assert got.shape == (4, 3 * 3 * 2 * 2 * 9)  # 4 x 4 cells of 8 px: 3 x 3 blocks of 2 x 2 cells, 9 orientations
    assert np.allclose(got.numpy(), unit_centred(want), atol=1e-5)


def test_near_duplicates_are_nearer_than_different_images():
    rng = np.random.default_rng(1)
    shapes = [("square", (220, 20, 20)), ("disk", (20, 20, 220)), ("triangle", (20, 160, 20)), ("disk", (240, 200, 0))]
    arrays = [drawn(s, c) for s, c in shapes]
    noisy = np.clip(arrays[0].astype(int) + rng.integers(-12, 13, arrays[0].shape), 0, 255).astype(np.uint8)
    arrays.append(noisy)  # a near-duplicate of the red square: the same drawing, re-encoded
    images = source(arrays)
    for vectors in (colour_histogram_vectors(images, range(5)), hog_vectors(images, range(5))):
        cos = vectors @ vectors.T
        assert cos[0, 4] > cos[0, 1:4].max()


def test_histograms_ignore_where_and_hog_ignores_which_colour():
    arrays = [drawn("square", (220, 20, 20)), drawn("square", (220, 20, 20), offset=4), drawn("square", (20, 20, 220)),
              drawn("disk", (220, 20, 20))]
    images = source(arrays)
    hist, grad = colour_histogram_vectors(images, range(4)), hog_vectors(images, range(4))
    assert torch.allclose(hist[0], hist[1], atol=1e-6) and not torch.allclose(hist[0], hist[2], atol=1e-2)
    assert torch.allclose(grad[0], grad[2], atol=1e-6) and not torch.allclose(grad[0], grad[1], atol=1e-2)


def test_joint_vectors_average_the_cosines():
    arrays = [drawn(s, c) for s in ("square", "disk", "triangle") for c in ((0, 0, 0), (200, 40, 40))]
    images = source(arrays)
    hist, grad = colour_histogram_vectors(images, range(6)), hog_vectors(images, range(6))
    both = joint_vectors(hist, grad)
    assert both.shape == (6, hist.shape[1] + grad.shape[1])
    assert torch.allclose(both @ both.T, (hist @ hist.T + grad @ grad.T) / 2, atol=1e-5)
    with pytest.raises(ValueError, match=r"as many rows, got \[\(6, 64\), \(5, 324\)\]"):
        joint_vectors(hist, grad[:5])


def test_bad_parameters_are_named():
    images = source([drawn("square"), drawn("disk")])
    with pytest.raises(ValueError, match="1 to 256 bins a channel, got 0"):
        colour_histogram_vectors(images, range(2), bins=0)
    with pytest.raises(ValueError, match=r"HOG at 12 px has 1 x 1 cells of \(8, 8\) px, fewer than a block of \(2, 2\)"):
        hog_vectors(images, range(2), size=12)
