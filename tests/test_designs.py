"""Pooled seed noise within a design (clipmem_lib.designs) and the power plan (clipmem_lib.resolution):
against a brute-force least-squares fit, against simulated designs with known answers, and the plan's labels."""
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from clipmem_lib import claims, designs, report, resolution


def _table(y: np.ndarray) -> pd.DataFrame:
    """A seeds × settings array as a chapter's long table (settings s0 = the control, s1, ...)."""
    return pd.DataFrame([{"seed": j, "setting": f"s{i}", "v": y[j, i]} for j in range(y.shape[0])
                         for i in range(y.shape[1])])


def _ols_contrast(y: np.ndarray, a: int, b: int):
    """Brute force: least squares of y on setting and seed dummies; the a − b contrast, its SE and df."""
    n, s = y.shape
    X = np.zeros((n * s, 1 + (s - 1) + (n - 1)))
    X[:, 0] = 1
    for j in range(n):
        for i in range(s):
            r = j * s + i
            if i:
                X[r, i] = 1
            if j:
                X[r, s - 1 + j] = 1
    v = y.reshape(-1)
    beta, *_ = np.linalg.lstsq(X, v, rcond=None)
    df = len(v) - X.shape[1]
    sigma2 = ((v - X @ beta) ** 2).sum() / df
    c = np.zeros(X.shape[1])
    if a:
        c[a] += 1
    if b:
        c[b] -= 1
    return float(c @ beta), float(math.sqrt(sigma2 * c @ np.linalg.inv(X.T @ X) @ c)), df


def test_pooled_interval_equals_a_least_squares_fit_of_setting_plus_seed():
    rng = np.random.default_rng(3)
    for n, s in [(3, 5), (4, 3), (6, 4)]:  # σ² and df of the additive model, whatever the rule flags
        y = rng.normal(size=(n, s)) + np.arange(s) * 0.3 + rng.normal(size=(n, 1))
        sigma2, df, *_ = designs.pool_seeds(y)
        est, se, want_df = _ols_contrast(y, 1, 0)
        assert df == want_df == (s - 1) * (n - 1) and math.sqrt(2 * sigma2 / n) == pytest.approx(se)
    y = next(y for y in (rng.normal(size=(3, 5)) + np.arange(5) * 0.3 for _ in range(50))
             if not designs.pool_seeds(y)[2])  # a design the rule pools whole
    t = _table(y)
    design = designs.block_design(t, "v", "s0")
    assert design.df == 8 and design.n == 3 and not design.excluded
    for a in range(1, 5):
        c = designs.contrast(t, "v", f"s{a}", "s0", design)
        est, se, df = _ols_contrast(y, a, 0)
        assert c.df == df and c.kind.startswith("pooled: 5 settings × 3 seeds, 8 df")
        assert c.differences.mean() == pytest.approx(est)
        assert c.sd / math.sqrt(3) == pytest.approx(se)  # SE of a contrast: σ·√(2/n)
        v = claims.verdict("x", "row", "", c)
        assert v.high - v.low == pytest.approx(2 * stats.t.ppf(0.975, 8) * se) and v.interval == c.kind and v.df == 8


def test_a_design_of_two_settings_is_its_own_pair():
    y = np.array([[0.0, 1.0], [0.5, 1.1], [0.2, 1.9]])
    c = designs.contrast(_table(y), "v", "s1", "s0", designs.block_design(_table(y), "v", "s0"))
    d = y[:, 1] - y[:, 0]
    assert c.kind.startswith("paired") and c.df == 2 and c.sd == pytest.approx(d.std(ddof=1))


def test_the_pooled_interval_covers_the_true_effect_at_its_nominal_rate():
    """1,000 simulated 5 × 3 designs, equal variances, known effects, seed effects: each contrast's
    interval (the homogeneity rule included) covers the truth at least 93% of the time, and is narrower
    on average than the paired one."""
    rng = np.random.default_rng(0)
    effects = np.array([0.0, 0.1, -0.2, 0.3, 0.05])
    covered, pooled_w, paired_w = [], [], []
    for _ in range(1000):
        y = effects + rng.normal(size=(3, 1)) * 2 + rng.normal(size=(3, 5))
        sigma2, df, flagged, _, _ = designs.pool_seeds(y)
        for i in range(1, 5):
            d = y[:, i] - y[:, 0]
            own = designs.t_half_width(d.std(ddof=1), 3, 2)
            h = own if i in flagged else designs.t_half_width(math.sqrt(2 * sigma2), 3, df)
            covered.append(abs(d.mean() - effects[i]) <= h)
            pooled_w.append(h)
            paired_w.append(own)
    assert np.mean(covered) >= 0.93
    assert np.mean(pooled_w) < 0.8 * np.mean(paired_w)


def test_the_homogeneity_rule_flags_a_setting_with_ten_times_the_variance():
    """Constructed: three settings' differences from the control share one spread, the fourth has exactly
    10× its variance: it is flagged, takes its own paired interval, and the others still pool."""
    base = np.array([-1.0, 0.0, 1.0])
    y = np.zeros((3, 5))
    for i, scale in zip(range(1, 5), [1, 1, 1, math.sqrt(10)]):
        y[:, i] = scale * np.roll(base, i) * 0.1 + i
    t = _table(y)
    design = designs.block_design(t, "v", "s0")
    assert design.excluded == ("s4",) and design.cochran <= design.critical
    assert designs.contrast(t, "v", "s4", "s0", design).kind.startswith("paired, 2 df (flagged")
    assert designs.contrast(t, "v", "s1", "s0", design).kind.startswith("pooled")


def test_the_fallback_triggers_more_often_with_a_tenfold_variance_than_without():
    """Simulated at the book's 3 seeds (the rule's power is limited there) and at 10 seeds."""
    rng = np.random.default_rng(1)

    def rate(n, ratio):
        sd = np.ones(5)
        sd[3] = math.sqrt(ratio)
        return np.mean([3 in designs.pool_seeds(rng.normal(size=(n, 5)) * sd)[2] for _ in range(400)])
    assert rate(3, 1) < 0.1 and rate(3, 10) > 0.35 and rate(10, 10) > 0.85


def test_cochran_critical_is_the_quantile_of_its_null():
    rng = np.random.default_rng(5)
    y = rng.normal(size=(4000, 3, 5))
    v = (y[:, :, 1:] - y[:, :, :1]).var(axis=1, ddof=1)
    c = v.max(axis=1) / v.sum(axis=1)
    assert np.mean(c > designs.cochran_critical(4, 3)) == pytest.approx(designs.HOMOGENEITY_ALPHA, abs=0.03)


def test_noise_grid_pools_both_placements_around_one_control():
    noise = dict(zip([(at, st, s) for at in ("raw", "normalized") for st in ("std 0", "std 0.15", "std 0.5")
                      for s in range(3)], [0.0] * 3 + [0.01, -0.01, 0.0, 0.0, 0.01, -0.01] + [0.0] * 3
                     + [-0.01, 0.0, 0.01, 0.01, -0.01, 0.0]))  # equal spreads, so the grid pools whole
    rows = lambda at, shift: pd.DataFrame(  # noqa: E731
        [{"seed": s, "setting": st, "clipmem_raw": v + shift * (st != "std 0") + 0.01 * s + noise[(at, st, s)],
          "lp_acc": 0.5, "r_at_1": 0.1} for s in range(3) for st, v in [("std 0", 0.0), ("std 0.15", 0.1), ("std 0.5", 0.2)]])
    grid = claims.noise_grid({"raw": rows("raw", 0.0), "normalized": rows("normalized", 1.0)}, "std 0")
    assert sorted(set(grid.setting)) == ["normalized std 0.15", "normalized std 0.5", "raw std 0.15", "raw std 0.5",
                                         "std 0"]
    assert (grid.setting == "std 0").sum() == 3 and len(grid) == 15
    moved = grid[grid.setting == "normalized std 0.5"].clipmem_raw.to_numpy()
    assert moved == pytest.approx([1.21, 1.20, 1.22])  # each placement's own results under its own name
    (v,) = [r for r in claims.claim6(rows("raw", 0.0), "std 0", "std 0.15", "std 0.5", "raw", grid)
            if r.what == "raw noise, raw CLIPMem on S_C: std 0.15 minus none"]
    assert v.interval.startswith("pooled: 5 settings × 3 seeds, 8 df")


def test_seeds_to_decide_against_a_brute_force_search():
    for sd, delta, settings in [(0.03, 0.05, 2), (0.03, 0.05, 5), (0.01, 0.2, 2), (0.5, 0.01, 4)]:
        want = next((n for n in range(2, 1001) if stats.t.ppf(0.975, (settings - 1) * (n - 1)) * sd / math.sqrt(n)
                     < delta / 2), math.inf)
        assert resolution.seeds_to_decide(sd, delta, settings) == want


def test_plan_labels_name_the_seeds_the_cost_and_a_profile_that_provides_them():
    row = pd.Series({"chapter": "06_mitigation", "claim": "6", "what": "w", "delta": 0.05, "sd": 0.03, "settings": 5,
                     "n_seeds": 3})
    ok, label = resolution.label_of(row, "cpu", 3, cost=lambda ch, n: (10 * n, 2.0 * n), seeds_at={"paper": 8})
    need = int(resolution.seeds_to_decide(0.03, 0.05, 5))
    assert ok is False and need > 3
    assert label == f"beyond resolution at cpu: needs {need} seeds ({10 * need} trainings, about {2 * need} min); " \
                    + ("decidable at paper" if need <= 8 else f"no profile has {need} seeds (set seeds={need})")
    ok, label = resolution.label_of(row, "cpu", need)
    assert ok is True and label.startswith("decidable at cpu")
    assert resolution.label_of(pd.Series({**row, "delta": math.nan}), "cpu", 3)[0] is None  # two-way: no δ


def test_a_chapter_table_carries_the_plan_label_and_says_why_a_planned_row_ended_inconclusive(monkeypatch, tmp_path):
    stored = pd.DataFrame([{"chapter": "06_mitigation", "claim": "6", "what": "a row", "delta": 0.1, "sd": 0.01,
                            "settings": 2, "n_seeds": 3, "interval": "paired, 2 df"}])
    path = tmp_path / "cpu.csv"
    stored.to_csv(path, index=False)
    monkeypatch.setattr(resolution, "variances_path", lambda profile: path)
    v = claims.verdict("6", "a row", "", [0.1, -0.1, 0.05], delta=0.1)
    shown = report.with_plan(report.claims_table(report.verdict_rows("s", [v])), "cpu")
    planned = resolution.expected_half_width(0.01, 3, 2)
    assert v.verdict == "inconclusive" and shown.plan[0].startswith("decidable at cpu")
    assert f"{v.half_width / planned:.1f}× the planned" in shown.plan[0]


def test_the_committed_cpu_variances_plan_every_row_they_hold():
    table, source = resolution.load_variances("cpu")
    assert "profiles/variances/cpu.csv" in source and len(table) >= 40
    labels, _ = resolution.resolution_table("cpu", {c: 3 for c in table.chapter})
    assert labels.plan.str.match(r"^(decidable|beyond resolution|two-way) at cpu").all()


def test_a_run_refreshes_its_chapters_variances_and_keeps_the_others(monkeypatch, tmp_path):
    from clipmem_lib.store import OUTPUT_ENV

    monkeypatch.setenv(OUTPUT_ENV, str(tmp_path))
    v = claims.verdict("6", "raw noise, std 0.15 minus none: linear probe", "", [0.01, 0.02, 0.04], delta=0.01)
    rows = report.claims_table(report.verdict_rows("s", [v])).assign(chapter="06_mitigation")
    path = resolution.refresh_variances(rows, "cpu")
    assert path == tmp_path / "profiles" / "variances" / "cpu.csv"  # under the tests' output, not the repo's
    table = pd.read_csv(path, keep_default_na=False, dtype={"claim": str})
    committed = resolution.load_variances("cpu")[0]
    assert len(table[table.chapter == "06_mitigation"]) == 1
    assert (table.chapter != "06_mitigation").sum() == (committed.chapter != "06_mitigation").sum()
    assert float(table[table.chapter == "06_mitigation"].sd.iloc[0]) == pytest.approx(np.std([0.01, 0.02, 0.04], ddof=1), abs=1e-6)
