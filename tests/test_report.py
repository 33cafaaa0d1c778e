"""Paper-vs-this-run tables: verdict wording, CSV round trip in notebook order, full-text HTML display."""
from clipmem_lib import report


def test_claim_tables_round_trip_and_display(tmp_path):
    rows = [report.claim("Fig. 2a", "S_I < 0 and a long description " * 3, "0.4", "0.2", True, "1"),
            report.claim("Fig. 2b", "no verdict", "0.438", "0.170", None)]
    report.save_claims(report.claims_table(rows), "02_x", tmp_path)
    report.save_claims(report.claims_table(rows[:1]), "01_x", tmp_path)
    back = report.load_claims(tmp_path)
    assert back.section.tolist() == ["Fig. 2a", "Fig. 2a", "Fig. 2b"] and back.held.tolist() == ["yes", "yes", "n/a"]
    assert not list(tmp_path.glob(".*.tmp"))
    html = report.show(back).to_html()
    assert "S_I &lt; 0 and a long description S_I &lt; 0" in html  # escaped, not truncated
    assert report.verdict(False) == "no" and report.load_claims(tmp_path / "none").empty
