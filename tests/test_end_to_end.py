"""End to end on CPU: train coupled f and g on the built-in data with planted mis-captions and check
the paper's qualitative findings (Fig. 2a/2b, claims 1–2).  Seeded; about a minute on 2 cores.
CLIPMEM_TEST_DEVICE=cuda runs the same checks through the GPU path (bf16 autocast)."""
import os

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from clipmem_lib.experiment import Context, fit_f_and_g, score_clipmem
from clipmem_lib.scenes import SceneConfig, make_scenes
from clipmem_lib.splits import make_splits, plant_miscaptions
from clipmem_lib.store import RunStore
from clipmem_lib.train import TrainConfig


DEVICE = os.environ.get("CLIPMEM_TEST_DEVICE", "cpu")
pytestmark = pytest.mark.slow  # trains f and g for 80 epochs


@pytest.fixture(scope="module")
def scores(tmp_path_factory):
    data = make_scenes(SceneConfig(n=1000, seed=0))
    splits = make_splits(len(data), n_candidates=100, n_external=100, seed=0)
    data = plant_miscaptions(data, splits.candidates, fraction=0.2, seed=0)
    ctx = Context(RunStore(tmp_path_factory.mktemp("runs")), device=DEVICE, progress=False)
    f, g = fit_f_and_g(data, splits, "clipmem-tiny", TrainConfig(epochs=80), ctx=ctx)
    return score_clipmem(f, g, data, splits, n_test=None, ctx=ctx)


def test_candidates_memorised_independent_negative(scores):
    means = scores.groupby("subset").clipmem.mean()
    assert means["S_C"] > means["S_S"] + 0.05
    assert means["S_I"] < -0.05
    assert abs(means["S_S"]) < 0.03 and abs(means["S_E"]) < 0.03  # coupled f/g: shared pairs cancel
    assert scores.clipmem.between(-1, 1).all() and scores.clipmem.max() - scores.clipmem.min() == pytest.approx(1)


def test_miscaptioned_pairs_score_highest(scores):
    sc = scores[scores.subset == "S_C"]
    assert sc.is_miscaptioned.sum() == 20
    assert roc_auc_score(sc.is_miscaptioned, sc.clipmem) > 0.7
    clean_c = sc[~sc.is_miscaptioned].clipmem
    shared = scores[scores.subset == "S_S"].clipmem
    auc = roc_auc_score(np.r_[np.ones(len(clean_c)), np.zeros(len(shared))], np.r_[clean_c, shared])
    assert auc > 0.8
