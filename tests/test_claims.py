"""Verdicts over paired seeds: known answers for holds / fails / inconclusive, the t interval by hand,
one seed never holds, and the paper's numbers come from the package's data file."""
import math

import numpy as np
import pandas as pd
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


# ---------------------------------------------- δ, the smallest effect of interest: four-way verdicts

def test_an_interval_wholly_below_delta_is_too_small():
    v = claims.verdict("6", "noise raises R@1", "", [0.001, -0.002, 0.0005], delta=0.02)  # half-width ≈ 0.004
    assert v.verdict == "too small" and "δ = 0.02" in v.reason and v.delta == 0.02
    assert v.half_width == pytest.approx((v.high - v.low) / 2) and v.half_width < 0.02
    assert claims.verdict("6", "x", "", [0.001, -0.002, 0.0005]).verdict == "inconclusive"  # no δ: two-way


def test_a_wide_interval_that_reaches_delta_stays_inconclusive():
    v = claims.verdict("6", "x", "", [0.05, -0.04, 0.01], delta=0.02)
    assert v.verdict == "inconclusive" and "reaches δ = 0.02" in v.reason


def test_a_holding_row_below_delta_says_so_and_fails_beat_too_small():
    v = claims.verdict("5", "x", "", [0.010, 0.011, 0.012], delta=0.05)
    assert v.verdict == "holds" and "below δ" in v.reason
    assert claims.verdict("5", "x", "", [0.10, 0.11, 0.12], delta=0.05).reason == ""  # reaches δ: plain holds
    assert claims.verdict("5", "x", "", [-0.010, -0.011, -0.012], delta=0.05).verdict == "fails"
    assert claims.verdict("5", "x", "", [0.01], delta=0.05).verdict == "inconclusive"  # one seed: still no verdict


def test_delta_rule_known_answers():
    # relative rule: Table 1's CLIPMem 0.438 -> 0.423 is -3.42%; at this run's baseline 0.2 that is 0.00685
    assert claims.smallest_effect(0.438, 0.423, 0.2, False) == pytest.approx(0.015 / 0.438 * 0.2)
    # log-odds rule: 63.11% -> 64.88% is +0.0777 in log-odds; the same odds ratio at 0.15 and at 0.90
    lo = math.log(0.6488 / 0.3512) - math.log(0.6311 / 0.3689)
    for base in (0.15, 0.90):
        moved = 1 / (1 + math.exp(-(math.log(base / (1 - base)) + lo)))
        assert claims.smallest_effect(63.11, 64.88, base, True) == pytest.approx(moved - base)
    assert claims.smallest_effect(63.11, 64.88, 0.15, True) == pytest.approx(0.0099, abs=2e-4)  # not the 0.004 of a relative rule
    assert claims.smallest_effect(64.88, 63.11, 0.5, True) > 0  # a drop gives the same size: direction is the row's
    assert math.isnan(claims.smallest_effect(63.11, 64.88, 1.0, True))


def test_claim_rows_carry_the_delta_of_the_paper_numbers():
    t1 = claims.paper("table1")
    rows = []
    for seed in range(3):
        for setting, lp, r1, mem in (("1 captions", 0.80, 0.10, 0.30), ("5 captions", 0.81, 0.12, 0.25)):
            rows.append(dict(seed=seed, setting=setting, lp_acc=lp + 0.001 * seed, r_at_1=r1, clipmem_raw=mem))
    mem, lp, r1 = claims.claim5_captions(pd.DataFrame(rows), "1 captions", "5 captions")
    a, b = t1["1 image, 1 caption"], t1["1 image, 5 captions"]
    assert mem.delta == pytest.approx(claims.smallest_effect(a[0], b[0], 0.30, False))
    assert lp.delta == pytest.approx(claims.smallest_effect(a[1], b[1], 0.801, True))
    assert r1.delta == pytest.approx(claims.smallest_effect(a[1], b[1], 0.10, True))
    other = claims.claim5_captions(pd.DataFrame(rows).replace("5 captions", "2 captions"), "1 captions", "2 captions")
    assert all(math.isnan(v.delta) for v in other)  # Fig. 5a gives no numbers for 1 -> 2 captions


def test_missing_seeds_are_dropped_not_counted():
    assert claims.paired_interval([0.1, np.nan, 0.2])[3] == 2


def test_paper_numbers_come_from_the_data_file():
    assert claims.paper("table8", 0.5) == [0.491, 57.04]  # the std 0.5 row, not std 1.0's
    assert claims.paper("table1", "1 image, 5 captions")[0] == 0.423
    assert claims.paper("fig2b", "poisoned_miscaptioned") == 0.586
    assert set(claims.paper("claims")) == {str(i) for i in range(1, 9)}
    with pytest.raises(KeyError, match="table9"):
        claims.paper("table9")


# ------------------------------------------------------------------ the claims on per-seed results

def scores_frame(seed, c_shift, i_shift=-0.1, mis=None):
    """A tiny score table for one seed: raw CLIPMem by subset, with S_C raised by ``c_shift``."""
    rng = np.random.default_rng(seed)
    subsets = np.repeat(["S_S", "S_C", "S_I", "S_E"], 10)
    raw = rng.normal(0, 0.01, 40) + np.where(subsets == "S_C", c_shift, 0) + np.where(subsets == "S_I", i_shift, 0)
    mis = np.zeros(40, bool) if mis is None else mis
    return pd.DataFrame(dict(index=np.arange(40), subset=subsets, clipmem_raw=raw, clipmem=raw / np.ptp(raw),
                             align_f=raw + 0.5, is_miscaptioned=mis))


def test_claim1_holds_fails_and_shows_the_approximate_equality():
    held = claims.claim1({s: scores_frame(s, 0.2) for s in range(3)})
    assert [v.verdict for v in held] == ["holds", "holds", "n/a"]
    assert held[0].effect == pytest.approx(0.2, abs=0.02) and held[0].unit == "raw CLIPMem"
    reverse = claims.claim1({s: scores_frame(s, -0.2, i_shift=0.1) for s in range(3)})
    assert [v.verdict for v in reverse[:2]] == ["fails", "fails"]
    assert claims.claim1({0: scores_frame(0, 0.2)})[0].verdict == "inconclusive"  # one seed


def test_claim2_on_the_poisoned_model():
    mis = np.zeros(40, bool)
    mis[10:13] = True  # three S_C pairs mis-captioned
    clean = {s: scores_frame(s, 0.1) for s in range(3)}
    poisoned = {s: scores_frame(s, 0.1).assign(clipmem_raw=lambda t: t.clipmem_raw + 0.3 * mis, is_miscaptioned=mis)
                for s in range(3)}
    v = claims.claim2(clean, poisoned)
    assert v[0].verdict == "holds" and v[0].effect == pytest.approx(0.3, abs=0.02) and v[1].verdict == "n/a"


def test_claims_on_settings_tables_pair_by_seed():
    rows = []
    for s in range(4):
        noise = 0.002 * (s - 1.5)  # shared by every setting of a seed: pairing removes it
        for setting, raw, lp, r1 in [("1 image, 1 caption", 0.40, 0.85, 0.15), ("1 image, 5 captions", 0.20, 0.88, 0.2),
                                     ("5 generated images, 1 caption", 0.38, 0.86, 0.14)]:
            rows.append(dict(setting=setting, seed=s, clipmem_raw=raw + noise, lp_acc=lp + noise, r_at_1=r1 + noise))
    t = pd.DataFrame(rows)
    v = claims.claim5_modality(t)
    assert [x.verdict for x in v] == ["holds", "holds", "holds"]  # text lowers more; LP and R@1 rise more
    assert v[0].effect == pytest.approx(0.18) and v[1].effect == pytest.approx(0.02) and v[0].n_seeds == 4
    assert claims.claim5_modality(t[t.setting != "5 generated images, 1 caption"]) == []  # COCO without generated
    c = claims.claim5_captions(t, "1 image, 1 caption", "1 image, 5 captions")
    assert [x.verdict for x in c] == ["holds", "holds", "holds"]


def test_claim6_with_a_noisy_grid_is_inconclusive():
    rows = [dict(setting=f"std {std}", seed=s, clipmem_raw=0.4 + d + 0.05 * (-1) ** s, lp_acc=0.8 - d,
                 r_at_1=0.1 - d) for s in range(3) for std, d in [(0, 0), (0.15, 0.01), (0.5, 0.05)]]
    v = claims.claim6(pd.DataFrame(rows), "std 0", "std 0.15", "std 0.5")
    assert v[0].verdict == "fails"  # moderate noise raised raw CLIPMem by 0.01 at every seed
    assert v[1].verdict == "fails" and v[3].verdict == "holds"  # moderate lowered utility; large raised CLIPMem
    assert v[4].verdict == "holds"  # and lowered the probe
    assert "0.438" in v[0].paper and "0.417" in v[0].paper  # the paper's figures for std 0 and 0.15
    named = claims.claim6(pd.DataFrame(rows), "std 0", "std 0.15", "std 0.5", placement="normalized")
    assert [x.effect for x in named] == [x.effect for x in v] and all(x.what.startswith("normalized noise, ") for x in named)


def test_claim7_at_fixed_k_and_the_cut_off():
    rows = []
    for s in range(3):
        for k, gain in [(20, 0.02), (80, -0.03)]:
            for strategy, lp in [("clipmem", 0.8 + gain), ("random", 0.8)]:
                rows.append(dict(data="planted", seed=s, k=k, strategy=strategy, lp_acc=lp + 0.001 * s,
                                 r_at_1=0.1 + gain + 0.001 * s if strategy == "clipmem" else 0.1 + 0.001 * s,
                                 planted_removed=15 if strategy == "clipmem" else 2))
    v = claims.claim7(pd.DataFrame(rows), 20, 80)
    assert [x.verdict for x in v] == ["holds", "holds", "holds", "holds"]
    assert v[2].effect == pytest.approx(0.03) and v[3].effect == pytest.approx(13)


def test_claim8_orders_the_last_block():
    layers = {s: pd.DataFrame({"last": [0.5 + 0.01 * s, 0.3, 0.1]}, index=["supervised", "CLIP image", "DINO"])
              for s in range(3)}
    assert [v.verdict for v in claims.claim8(layers)] == ["holds", "holds"]
    swapped = {s: t.rename(index={"supervised": "DINO", "DINO": "supervised"}) for s, t in layers.items()}
    assert [v.verdict for v in claims.claim8(swapped)] == ["fails", "fails"]
    alt = claims.claim8_treatments({"relu": layers, "shift": swapped})  # shown with intervals, never counted
    assert [v.verdict for v in alt] == ["n/a"] * 4 and "(GELU treatment: shift)" in alt[2].what
    assert alt[0].effect == pytest.approx(0.21) and alt[2].effect == pytest.approx(-0.2) and alt[2].n_seeds == 3


def test_measured_text_shows_the_difference_as_measured_and_the_effect_the_paper_s_way():
    v = claims.verdict("6", "noise lowers CLIPMem", "", [-0.05, -0.06, -0.04], direction=-1)
    assert v.verdict == "holds" and v.effect == pytest.approx(0.05) and v.low > 0
    assert v.measured().startswith("-0.050 [-0.075, -0.025]")


def test_seeds_needed_known_answers_and_brute_force():
    # at sd 1 and δ 1: t_{m-1}/√m is 2.48 (m 3), 1.05 (m 6), 0.92 (m 7); 3 seeds of sd 1 give half-width 4.303/√3
    hw3 = 4.302653 / math.sqrt(3)
    assert claims.seeds_needed(hw3, 3, 1.0) == 7
    assert claims.seeds_needed(hw3, 3, hw3 * 1.0001) == 3  # already there: its own count
    assert claims.seeds_needed(hw3, 3, hw3 / 2) > 3
    rng = np.random.default_rng(0)
    for _ in range(5):
        d = rng.normal(0.01, rng.uniform(0.005, 0.05), size=int(rng.integers(2, 7)))
        mean, low, high, n = claims.paired_interval(d)
        delta = rng.uniform(0.002, 0.02)
        m = claims.seeds_needed((high - low) / 2, n, delta)
        t = lambda k: claims.stats.t.ppf(0.975, k - 1) * d.std(ddof=1) / math.sqrt(k)  # noqa: E731
        assert t(m) <= delta * (1 + 1e-9) and (m == 2 or t(m - 1) > delta)
    assert math.isnan(claims.seeds_needed(0.1, 1, 0.05)) and math.isnan(claims.seeds_needed(0.1, 3, math.nan))
    assert claims.seeds_needed(10.0, 3, 1e-4, most=50) == math.inf
