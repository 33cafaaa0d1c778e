"""Verdicts over paired seeds: known answers for holds / fails / inconclusive, the t interval by hand,
one seed never holds, and the paper's numbers come from the package's data file."""
import math

import numpy as np
import pytest

from clipmem_lib import claims


def test_a_clear_effect_holds_and_the_interval_is_students_t():
    v = claims.verdict("5", "text side lowers CLIPMem more", "−0.015 vs −0.014", [0.10, 0.12, 0.08])
    assert v.verdict == "holds" and v.n_seeds == 3
    half = 4.302652729911275 * 0.02 / math.sqrt(3)  # t_{0.975, 2} · sd / √n, sd of (0.10, 0.12, 0.08) = 0.02
    assert v.effect == pytest.approx(0.10) and v.low == pytest.approx(0.10 - half) and v.high == pytest.approx(0.10 + half)
    assert v.measured() == "+0.100 [+0.050, +0.150], 3 seeds"


def test_a_clear_reverse_effect_fails():
    assert claims.verdict("6", "noise lowers CLIPMem", "0.438 → 0.417", [0.05, 0.06, 0.055], direction=-1).verdict == "fails"


def test_a_noisy_effect_is_inconclusive_and_says_why():
    v = claims.verdict("7", "CLIPMem removal beats random", "peak ~100", [0.02, -0.03, 0.01])
    assert v.verdict == "inconclusive" and "contains zero" in v.reason


@pytest.mark.parametrize("d", [0.5, -0.5, 1e-9])
def test_one_seed_never_holds(d):
    v = claims.verdict("5", "x", "y", [d])
    assert v.verdict == "inconclusive" and v.n_seeds == 1 and "one seed" in v.reason and "1 seed" in v.measured()


def test_the_direction_flips_the_sign_and_is_checked():
    v = claims.verdict("6", "noise lowers CLIPMem", "", [-0.05, -0.06, -0.055], direction=-1)
    assert v.verdict == "holds" and v.effect > 0
    with pytest.raises(ValueError, match="direction"):
        claims.verdict("6", "x", "", [1.0, 2.0], direction=2)


def test_missing_seeds_are_dropped_not_counted():
    assert claims.paired_interval([0.1, np.nan, 0.2])[3] == 2


def test_paper_numbers_come_from_the_data_file():
    assert claims.paper("table8", 0.5) == [0.491, 57.04]  # the std 0.5 row, not std 1.0's
    assert claims.paper("table1", "1 image, 5 captions")[0] == 0.423
    assert claims.paper("fig2b", "poisoned_miscaptioned") == 0.586
    assert set(claims.paper("claims")) == {str(i) for i in range(1, 9)}
    with pytest.raises(KeyError, match="table9"):
        claims.paper("table9")
