"""Utility metrics: linear-probe accuracy (mean ± std over seeds) and image→text R@1."""
import numpy as np
import pytest
import torch

from clipmem_lib.probes import probe_accuracy, retrieval_at_1


def test_probe_reads_signal_and_not_noise():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 600)
    centres = rng.normal(size=(4, 16)) * 3
    x = centres[y] + rng.normal(size=(600, 16))
    mean, std = probe_accuracy(x, y, seeds=(0, 1, 2))
    assert mean > 0.95 and 0 <= std < 0.05
    chance, _ = probe_accuracy(rng.normal(size=(600, 16)), y, seeds=(0, 1, 2))
    assert 0.1 < chance < 0.4  # 4 classes: about 0.25
    assert probe_accuracy(x, y, seeds=(0,))[1] == 0.0  # one seed, no spread


def test_probe_split_errors():
    with pytest.raises(ValueError, match="n_fit"):
        probe_accuracy(np.zeros((10, 2)), np.zeros(10), n_fit=1.0)


def test_retrieval_at_1_counts_own_caption_first():
    e = torch.nn.functional.normalize(torch.randn(50, 8), dim=1)
    assert retrieval_at_1(e, e) == 1.0
    swapped = e.clone()
    swapped[[0, 1]] = e[[1, 0]]  # two captions exchanged: those two images retrieve the wrong one
    assert retrieval_at_1(e, swapped) == pytest.approx(48 / 50)
