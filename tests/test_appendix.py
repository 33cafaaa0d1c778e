"""The appendix (chapter 08): its parameter checks and removal grid, its verdicts on per-seed tables with
known answers, and Fig. 8's removal with retraining against planted flipped labels."""
import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from clipmem_lib import appendix, claims
from clipmem_lib.labelmem import flip_labels
from clipmem_lib.runtime import Context
from clipmem_lib.splits import make_splits
from clipmem_lib.store import RunStore
from clipmem_lib.sweeps import label_removal
from clipmem_lib.vision import VisionConfig


@pytest.mark.parametrize("args, message", [
    ((["clipmem-tiny"], 30, 0.5, "clipmem-coca"), "two different configs"),
    ((["clipmem-tiny", "clipmem-tiny"], 30, 0.5, "clipmem-coca"), "two different configs"),
    ((["clipmem-tiny", "clipmem-huge"], 30, 0.5, "clipmem-coca"), "unknown model config 'clipmem-huge'"),
    ((["clipmem-tiny", "clipmem-deep"], 30, 0.5, "clipmem-tiny"), "plain CLIP config"),
    ((["clipmem-tiny", "clipmem-deep"], 0, 0.5, "clipmem-coca"), "data_multiple"),
    ((["clipmem-tiny", "clipmem-deep"], 30, 0.0, "clipmem-coca"), "flip_fraction"),
    ((["clipmem-tiny", "clipmem-deep"], 30, 1.5, "clipmem-coca"), "flip_fraction"),
])
def test_bad_appendix_parameters_are_named_before_anything_trains(args, message):
    with pytest.raises(ValueError, match=message):
        appendix.check_parameters(*args)
    appendix.check_parameters(["clipmem-tiny", "clipmem-deep"], 30, 0.5, "clipmem-coca")  # the defaults pass


def test_fig8_removal_grid_is_fixed_from_the_number_flipped():
    assert appendix.removal_ks(50, 100) == [25, 50, 100]
    assert appendix.removal_ks(60, 100) == [30, 60, 100]  # 2n capped at |S_C|
    assert appendix.removal_ks(3, 30) == [1, 3, 6]
    with pytest.raises(ValueError, match="at least 2"):
        appendix.removal_ks(1, 30)


def test_one_epoch_data_is_the_multiple_with_usual_splits_and_planted_pairs():
    data, splits = appendix.one_epoch_data(60, 5, n_candidates=20, n_external=10, poison_fraction=0.5, seed=3)
    assert len(data) == 300 and len(splits.candidates) == 20 and len(splits.external) == 10
    assert len(splits.shared) == 300 - 2 * 20 - 10
    mis = data.meta.is_miscaptioned.to_numpy()
    assert mis.sum() == 10 and set(np.flatnonzero(mis)) <= set(splits.candidates)


def test_real_data_get_a_builtin_stand_in_and_builtin_data_are_kept(scenes_of):
    data = scenes_of(100)
    splits = make_splits(100, 10, 10)
    assert appendix.builtin_stand_in(data, splits, n_pairs=100, image_size=32)[2] is True
    plain = dataclasses.replace(data, meta=data.meta.drop(columns=["description"]), name="not built-in")
    scenes, s2, own = appendix.builtin_stand_in(plain, splits, n_pairs=200, image_size=32)
    assert not own and len(scenes) == 200 and len(s2.candidates) == len(s2.external) == 20


# --------------------------------------------------------------------- verdicts with known answers

def _table(values: dict, column: str, label: str = "setting") -> pd.DataFrame:
    """Rows (label value, seed) with ``column`` from ``values``: {label value: per-seed list}."""
    return pd.DataFrame([{label: k, "seed": s, column: v} for k, vs in values.items() for s, v in enumerate(vs)])


def test_table5_compares_the_larger_model_to_the_smaller_per_seed():
    t = pd.concat([_table({"small": [0.10, 0.11, 0.12], "large": [0.15, 0.17, 0.16]}, "clipmem_raw"),
                   _table({"small": [0.5, 0.6, 0.7], "large": [0.4, 0.5, 0.6]}, "lp_acc")[["lp_acc"]],
                   _table({"small": [0.2, 0.2, 0.2], "large": [0.2, 0.21, 0.19]}, "r_at_1")[["r_at_1"]]], axis=1)
    mem, lp, r1 = claims.table5(t, "small", "large")
    assert mem.claim == "A1" and mem.verdict == "holds" and mem.effect == pytest.approx(0.05)
    assert lp.verdict == "fails" and lp.effect == pytest.approx(-0.1)  # smaller probe, same every seed
    # R@1: 0, +0.01, -0.01 gives [-0.025, +0.025], wholly below Table 5's 63.11% -> 67.04% in log-odds at 0.2
    assert r1.delta == pytest.approx(claims.smallest_effect(63.11, 67.04, 0.2, True)) and r1.high < r1.delta
    assert r1.verdict == "too small"


def _scores(seed, s_c_clean, mis_extra, n=20):
    rng = np.random.default_rng(seed)
    base = {"S_S": 0.0, "S_C": s_c_clean, "S_I": -0.1, "S_E": 0.0}
    rows = [dict(subset=k, clipmem_raw=v + rng.normal(0, 1e-3), is_miscaptioned=False) for k, v in base.items()
            for _ in range(n)]
    rows += [dict(subset="S_C", clipmem_raw=s_c_clean + mis_extra, is_miscaptioned=True) for _ in range(3)]
    return pd.DataFrame(rows)


def test_table6_separates_clean_sc_from_the_planted_pairs():
    scores = {s: _scores(s, 0.05 + 0.01 * s, 0.2) for s in range(3)}
    clean, mis = claims.table6(scores)
    assert clean.verdict == "holds" and clean.effect == pytest.approx(0.06, abs=2e-3)  # not raised by the planted pairs
    assert mis.verdict == "holds" and mis.effect == pytest.approx(0.2, abs=2e-3)
    assert claims.table6({s: _scores(s, 0.0, -0.2) for s in range(3)})[1].verdict == "fails"


def test_fig8_verdicts_on_memorisation_accuracy_and_flipped_found():
    scores = {s: pd.DataFrame(dict(subset=["S_C"] * 4 + ["S_S"] * 2, is_flipped=[True, True, False, False, False, True],
                                   mem=[0.8, 0.7 + 0.01 * s, 0.1, 0.0, 0.0, 0.9])) for s in range(3)}
    curve = pd.concat([_table({"memorisation": [0.9, 0.91, 0.92], "random": [0.85, 0.86, 0.88]}, "accuracy", "strategy")
                       .assign(flipped_removed=[2, 2, 2, 1, 0, 1]), ], ignore_index=True).assign(k=2)
    mem, acc, found = claims.fig8(scores, curve, 2)
    assert mem.verdict == "holds" and mem.effect == pytest.approx(0.705)  # (0.75 + 0.005 s) − 0.05: S_C only: S_S's flip is ignored
    assert acc.verdict == "holds" and acc.effect == pytest.approx((0.05 + 0.05 + 0.04) / 3)
    assert found.effect == pytest.approx(4 / 3) and found.verdict == "inconclusive"  # 1, 2, 1: the interval holds 0


def test_table4_7_tests_more_captions_in_each_style_and_shows_the_style_gap():
    rows = []
    for style, drop in (("template", 0.05), ("generated", -0.02)):
        for setting, shift in (("1 captions", 0.0), ("5 captions", -drop)):
            for s in range(3):
                rows.append(dict(style=style, setting=setting, seed=s, clipmem_raw=0.3 + shift + 0.01 * s, lp_acc=0.6))
    sim = pd.DataFrame([dict(style=st, seed=s, index=i, similarity=m + 0.01 * i) for st, m in (("template", 0.8),
                        ("generated", 0.9)) for s in range(3) for i in range(4)])
    v = claims.table4_7(pd.DataFrame(rows), "1 captions", "5 captions", sim)
    tpl, gen = v[:2]
    assert tpl.verdict == "holds" and tpl.effect == pytest.approx(0.05)  # 5 captions lower CLIPMem: paper direction
    assert gen.verdict == "fails"
    assert all(r.verdict == "n/a" for r in v[2:]) and len(v) == 7  # the "≈" rows and Fig. 12 are not counted
    assert v[-1].effect == pytest.approx(0.1) and "built to be more uniform" in v[-1].reason


def test_claim1_pattern_under_another_claim_id_for_the_second_model():
    scores = {s: _scores(s, 0.05, 0.0) for s in range(3)}
    rows = claims.claim1(scores, "A5", "clipmem-coca")
    assert [r.claim for r in rows] == ["A5"] * 3 and rows[0].what.startswith("clipmem-coca: ")
    assert rows[0].verdict == "holds" and rows[1].verdict == "holds"  # S_I = −0.1 < 0
    assert claims.claim1(scores)[0].what == "mean raw CLIPMem: S_C minus S_S"  # claim 1's own rows unchanged


# ----------------------------------------------------------------- Fig. 8 against planted flipped labels

def test_label_removal_retrains_without_the_most_memorised_and_counts_the_flipped(scenes_of, tmp_path, one_thread):
    """The plumbing of Fig. 8's removal (tests/test_labelmem.py checks that flipped labels are memorised):
    "memorisation" removes the top k of S_C by mem, every strategy removes all flips at k = |S_C|, k = 0 is f."""
    data = scenes_of(200, seed=5, min_objects=1, max_objects=1, atypical_frac=0.0)
    splits = make_splits(len(data), 20, 20, seed=0)
    labels, flipped = flip_labels(data.labels, splits.candidates, 6, 8, seed=0)
    probe = scenes_of(100, seed=77, min_objects=1, max_objects=1, atypical_frac=0.0)
    ctx = Context(RunStore(tmp_path), device="cpu", progress=False)
    scores, curve = label_removal(data, splits, labels, probe, [6, 20], seeds=[0, 1],
                                  config=VisionConfig(epochs=2, batch_size=32), ctx=ctx)
    assert set(scores) == {0, 1} and len(curve) == 2 * 2 * 3 and set(curve.k) == {0, 6, 20}
    for s, table in scores.items():
        assert sorted(table.loc[table.is_flipped, "index"]) == sorted(flipped)
        pool = table[table.subset == "S_C"]
        top = pool.sort_values("mem", ascending=False, kind="stable")["index"].to_numpy()[:6]
        at = curve[curve.seed == s].set_index(["strategy", "k"])
        assert at.loc[("memorisation", 6), "flipped_removed"] == np.isin(top, flipped).sum()
        assert at.loc[("memorisation", 20), "flipped_removed"] == at.loc[("random", 20), "flipped_removed"] == 6
        assert at.loc[("memorisation", 0), "accuracy"] == at.loc[("random", 0), "accuracy"]  # f itself
        assert 0 <= at.loc[("random", 6), "accuracy"] <= 1
