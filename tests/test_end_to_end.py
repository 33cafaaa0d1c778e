"""End to end on CPU: train coupled f and g on the built-in data with planted mis-captions and check
the paper's qualitative findings (Fig. 2a/2b, claims 1–2).  Seeded; about a minute and a half on 2 cores.
The data, splits, planting and recipe are chapter 02's defaults, trained into the suite's one run store
with 01's clean f beside them, so nbval's runs of 01 and 02 load these models instead of training them.
CLIPMEM_TEST_DEVICE=cuda runs the same checks through the GPU path (bf16 autocast)."""
import os
import pathlib

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from clipmem_lib import chapter
from clipmem_lib.experiment import fg_jobs, fit_many, score_clipmem
from clipmem_lib.params import Params, declared_parameters
from clipmem_lib.splits import plant_miscaptions


DEVICE = os.environ.get("CLIPMEM_TEST_DEVICE", "cpu")
CHAPTER = pathlib.Path(__file__).resolve().parents[1] / "notebooks" / "02_memorisation.ipynb"
pytestmark = pytest.mark.slow  # trains f and g for 80 epochs


@pytest.fixture(scope="module")
def scores():
    P = Params(**{k: d.default for k, d in declared_parameters(CHAPTER).items()})
    P.device = DEVICE
    S = chapter.setup(P)  # 2,000 pairs, |S_C| = |S_I| = |S_E| = 200, 80 epochs
    data = plant_miscaptions(S.data, S.splits.candidates, fraction=P.poison_fraction, seed=P.seed)
    # the poisoned f and g, and the clean f (chapters 01-02's baseline), here: their compiled graph serves test_train
    f, g, _ = fit_many([*fg_jobs(data, S.splits, P.model, S.train), fg_jobs(S.data, S.splits, P.model, S.train)[0]],
                       S.ctx.replace(n_jobs=1))
    return score_clipmem(f, g, data, S.splits, n_test=None, ctx=S.ctx)


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
