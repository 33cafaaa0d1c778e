"""Utility metrics: linear-probe accuracy (mean ± std over seeds), image→text R@1, retrieval in galleries
against a brute-force loop, and the chapters' instruments on data no model trains on."""
import types

import numpy as np
import pytest
import torch

from clipmem_lib.probes import gallery_retrieval, probe_accuracy, retrieval_at_1


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


def test_gallery_retrieval_against_a_loop():
    g = torch.Generator().manual_seed(0)
    img, txt = torch.randn(230, 6, generator=g), torch.randn(230, 6, generator=g)
    txt[:100] += 2 * img[:100]  # some images find their caption
    r1, mean_rank = gallery_retrieval(img, txt, 50)
    ranks = []
    for start in range(0, 200, 50):  # 4 galleries of 50; the last 30 pairs are left out
        for i in range(start, start + 50):
            own = float(img[i] @ txt[i])
            ranks.append(1 + sum(float(img[i] @ txt[j]) > own for j in range(start, start + 50)))
    assert r1 == pytest.approx(np.mean(np.array(ranks) == 1)) and mean_rank == pytest.approx(np.mean(ranks))
    e = torch.nn.functional.normalize(torch.randn(40, 8, generator=g), dim=1)
    assert gallery_retrieval(e, e, 40) == (retrieval_at_1(e, e), 1.0)  # one gallery: today's R@1
    with pytest.raises(ValueError, match="gallery"):
        gallery_retrieval(e, e, 41)


def _params(**kw):
    base = dict(data_source="builtin", probe_size=300, heldout_pairs=120, gallery_size=50, probe_seeds=2,
                image_size=32, seed=0)
    return types.SimpleNamespace(**{**base, **kw})


def test_instruments_use_pairs_no_chapter_trains_on(scenes_of):
    from clipmem_lib import chapter
    from clipmem_lib.splits import make_splits

    data = scenes_of(200)
    S = types.SimpleNamespace(data=data, splits=make_splits(200, n_candidates=20, n_external=30, n_shared=100, seed=0))
    U = chapter.instruments(_params(), S)
    held, idx = U.heldout
    assert len(U.probe) == 300 and U.probe_seeds == (0, 1) and U.gallery == 50 and list(idx) == list(range(120))
    assert held.images.fingerprint() != data.images.fingerprint() != U.probe.images.fingerprint()
    assert "2 galleries of 50" in U.describe()
    real = chapter.instruments(_params(data_source="csv"), S)  # real data: S_E and the 30 unused pairs
    held, idx = real.heldout
    trained = set(S.splits.f_indices) | set(S.splits.g_indices)
    assert held is data and len(idx) == 60 and not set(idx) & trained and set(S.splits.external) <= set(idx)
    assert chapter.instruments(_params(data_source="csv"), S, builtin=True).heldout[0] is not data
    with pytest.raises(ValueError, match="gallery_size"):
        chapter.instruments(_params(gallery_size=1), S)
