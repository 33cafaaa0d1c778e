"""CLIPMem (Eq. 3–4), its normalisation (A.2) and SSLMem (Eq. 1–2) against brute-force loops."""
import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clipmem_lib.clipmem import alignment_scores, clipmem, range_normalise, sample_test_pairs, positions_in_test_set
from clipmem_lib.sslmem import image_alignment_loss, sslmem, text_alignment_loss


def unit(*shape, seed):
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=-1)


def brute_align(views, caps, timg, tcap):
    """Eq. 3 literally: loops over every (crop, caption) draw and every test pair."""
    out = []
    for p in range(views.shape[0]):
        crops = views[p, 1:] if views.shape[1] > 1 else views[p, :1]
        first = np.mean([float(c @ t) for c in crops for t in caps[p]])
        second = np.mean([float(views[p, 0] @ t) for m in range(len(tcap)) for t in tcap[m]])
        third = np.mean([float(timg[m] @ t) for m in range(len(timg)) for t in caps[p]])
        out.append(first - second - third)
    return np.array(out)


@pytest.mark.parametrize("k,c", [(0, 1), (3, 1), (4, 5)])
def test_alignment_matches_brute_force(k, c):
    views, caps = unit(7, 1 + k, 16, seed=1), unit(7, c, 16, seed=2)
    timg, tcap = unit(9, 16, seed=3), unit(9, c, 16, seed=4)
    np.testing.assert_allclose(alignment_scores(views, caps, timg, tcap), brute_align(views, caps, timg, tcap),
                               atol=1e-5)


def test_clipmem_is_f_minus_g_and_normalisation():
    raw = clipmem(np.array([0.5, 0.1, -0.3]), np.array([0.1, 0.1, 0.1]))
    np.testing.assert_allclose(raw, [0.4, 0.0, -0.4])
    norm = range_normalise(raw)
    np.testing.assert_allclose(norm, [0.5, 0.0, -0.5])  # divided by the range 0.8, not shifted
    assert norm.max() - norm.min() == pytest.approx(1.0)
    np.testing.assert_allclose(range_normalise(np.array([2.0, 1.0])), [2.0, 1.0])  # range 1: unchanged
    assert (range_normalise(np.zeros(3)) == 0).all()


def test_planted_memorised_pair_scores_highest():
    # f has pulled pair 0's image and caption together; g has not: CLIPMem ranks it first.
    d, g = 32, torch.Generator().manual_seed(0)
    img = F.normalize(torch.randn(20, 1, d, generator=g), dim=-1)
    cap = F.normalize(torch.randn(20, 1, d, generator=g), dim=-1)
    timg, tcap = unit(10, d, seed=5), unit(10, 1, d, seed=6)
    img_f = img.clone()
    img_f[0, 0] = cap[0, 0]
    scores = clipmem(alignment_scores(img_f, cap, timg, tcap), alignment_scores(img, cap, timg, tcap))
    assert scores.argmax() == 0 and scores[0] > 0.5 and np.abs(scores[1:]).max() < 1e-6


def test_test_pairs_are_from_external_and_sized():
    ext = np.arange(100, 200)
    t = sample_test_pairs(ext, 127 - 100 + 27, seed=0)
    assert len(t) == 54 and set(t) <= set(ext) and len(set(t)) == 54
    assert (sample_test_pairs(ext, None) == ext).all()
    with pytest.raises(ValueError, match="S_E has 100"):
        sample_test_pairs(ext, 127)


def test_sslmem_losses_against_loops():
    views, caps = unit(5, 4, 8, seed=7), unit(5, 5, 8, seed=8)
    li = image_alignment_loss(views)
    lt = text_alignment_loss(caps)
    for p in range(5):
        assert li[p] == pytest.approx(np.mean([float((views[p, 0] - views[p, k]).norm()) for k in range(1, 4)]), abs=1e-6)
        assert lt[p] == pytest.approx(np.mean([float((caps[p, i] - caps[p, j]).norm())
                                               for i, j in itertools.combinations(range(5), 2)]), abs=1e-6)
    # SSLMem = L(g) − L(f): positive where f aligns the views better
    assert sslmem(np.array([0.1, 0.5]), np.array([0.4, 0.5]), normalise=False).tolist() == pytest.approx([0.3, 0.0])
    with pytest.raises(ValueError, match="two captions"):
        text_alignment_loss(caps[:, :1])


def test_a_scored_test_pair_is_left_out_of_its_own_test_terms():
    """Eq. 3 for an S_E pair that is also a test pair: its test terms average over the other M − 1."""
    views, caps = unit(4, 3, 16, seed=11), unit(4, 2, 16, seed=12)
    timg, tcap = unit(5, 16, seed=13), unit(5, 2, 16, seed=14)
    timg[2], tcap[2] = views[1, 0], caps[1]  # scored pair 1 is test pair 2
    pos = positions_in_test_set([10, 11, 12, 13], [20, 21, 11, 22, 23])
    assert pos.tolist() == [-1, 2, -1, -1]
    keep = [0, 1, 3, 4]
    want = brute_align(views, caps, timg, tcap)
    want[1] = brute_align(views[1:2], caps[1:2], timg[keep], tcap[keep])[0]
    np.testing.assert_allclose(alignment_scores(views, caps, timg, tcap, pos), want, atol=1e-5)


def test_score_clipmem_draws_its_test_pairs_from_s_e_only(monkeypatch):
    """Without training: the test pairs score_clipmem embeds for Eq. 3 are all in S_E."""
    import pandas as pd

    from clipmem_lib import measure
    from clipmem_lib.fitting import TrainedModel
    from clipmem_lib.splits import make_splits
    from clipmem_lib.store import RunStore
    from clipmem_lib.runtime import Context
    from clipmem_lib.train import TrainConfig

    splits, calls = make_splits(400, 40, 60, seed=2), []

    def fake_embeddings(m, data, indices, n_crops=8, **kw):
        calls.append((n_crops, np.asarray(indices)))
        return unit(len(indices), 1 + n_crops, 8, seed=len(calls)), unit(len(indices), 1, 8, seed=99)

    class Data:
        meta = pd.DataFrame(index=range(400))
        def caption_digest(self, idx):
            return "d"

    monkeypatch.setattr(measure, "model_embeddings", fake_embeddings)
    f = TrainedModel(None, "f", "clipmem-tiny", TrainConfig(), [], None)
    g = TrainedModel(None, "g", "clipmem-tiny", TrainConfig(), [], None)
    scores = measure.score_clipmem(f, g, Data(), splits, n_crops=2, n_test=30, ctx=Context(RunStore(None)))
    tests = [idx for n, idx in calls if n == 0]
    assert len(tests) == 2 and all(set(t) <= set(splits.external) and len(t) == 30 for t in tests)
    assert len(scores) == 400 - 400 + len(np.concatenate(list(splits.subsets().values())))
