"""Paper-vs-this-run tables: verdict rows, CSV round trip in notebook order, the per-claim summary, and
full-text HTML display."""
import pytest

from clipmem_lib import claims, report


def test_claim_tables_round_trip_and_display(tmp_path):
    held = claims.verdict("1", "S_I < 0 and a long description " * 3, "0.4", [0.2, 0.21, 0.19])
    rows = report.verdict_rows("Fig. 2a", [held]) + [report.value_row("Fig. 2b", "no verdict", "0.438", "0.170")]
    report.save_claims(report.claims_table(rows), "02_x", tmp_path)
    report.save_claims(report.claims_table(rows[:1]), "01_x", tmp_path)
    back = report.load_claims(tmp_path)
    assert back.section.tolist() == ["Fig. 2a", "Fig. 2a", "Fig. 2b"]
    assert back.verdict.tolist() == ["holds", "holds", "n/a"] and back.effect.iloc[0] == pytest.approx(0.2)
    assert not list(tmp_path.glob(".*.tmp"))
    html = report.show(back).to_html()
    assert "S_I &lt; 0 and a long description S_I &lt; 0" in html and "effect" not in html  # escaped, not cut
    assert report.load_claims(tmp_path / "none").empty


def test_summary_per_claim_and_counts():
    v = [claims.verdict("5", "a", "", [0.1, 0.12, 0.11]), claims.verdict("5", "b", "", [0.1, -0.2, 0.05]),
         claims.verdict("6", "c", "", [-0.1, -0.12, -0.11]), claims.observation("1", "d", "", [0.0, 0.01])]
    rows = report.claims_table(report.verdict_rows("x", v))
    assert report.counts(rows) == {"tested": 3, "holds": 1, "fails": 1, "too_small": 0, "inconclusive": 1,
                                   "chance_holds": 1}  # ceil(0.025 * 3)
    status = report.claim_status(rows).set_index("#")["this run"]
    assert status["5"] == "holds in part" and status["6"] == "fails"
    assert status["1"] == "not measured in this book yet"  # an observation is not a test


def test_delta_and_half_width_travel_to_the_csv_and_the_display(tmp_path):
    small = claims.verdict("6", "noise, R@1", "", [0.001, -0.002, 0.0], delta=0.02)
    none = claims.verdict("7", "removal", "", [0.1, 0.12, 0.11])
    report.save_claims(report.claims_table(report.verdict_rows("x", [small, none])), "06_x", tmp_path)
    back = report.load_claims(tmp_path)
    assert back.delta.iloc[0] == pytest.approx(0.02) and back.half_width.iloc[0] == pytest.approx(small.half_width)
    assert back.delta.isna().iloc[1] and back.verdict.tolist() == ["too small", "holds"]
    html = report.show(back).to_html()
    assert "δ" in html and "half-width" in html and "0.02" in html and "—" in html
    rows = report.claims_table(report.verdict_rows("x", [small] * 3))
    assert report.counts(rows)["too_small"] == 3
    assert report.claim_status(rows).set_index("#")["this run"]["6"] == "too small"


def test_power_table_puts_the_widest_rows_first_with_the_seeds_they_need():
    wide = claims.verdict("6", "wide", "", [0.01, -0.03, 0.02], delta=0.005)
    narrow = claims.verdict("5", "narrow", "", [0.10, 0.11, 0.12], delta=0.05)
    no_delta = claims.verdict("7", "no delta", "", [0.1, 0.12, 0.11])
    rows = report.claims_table(report.verdict_rows("x", [narrow, wide, no_delta]))
    rows[["delta", "half_width", "n_seeds"]] = rows[["delta", "half_width", "n_seeds"]].astype(float)
    power = report.power_table(rows)
    assert power.what.tolist() == ["wide", "narrow"]  # no δ: not a row
    assert power["seeds for half-width ≤ δ"].tolist() == [claims.seeds_needed(wide.half_width, 3, 0.005),
                                                          claims.seeds_needed(narrow.half_width, 3, 0.05)]
    assert power["seeds for half-width ≤ δ"].iloc[1] == 3  # narrow is already below its δ
    assert "more than" in report.show(report.power_table(report.claims_table(report.verdict_rows("x", [
        claims.verdict("6", "hopeless", "", [1.0, -1.0, 0.5], delta=1e-5)])).astype({"delta": float}))).to_html()
