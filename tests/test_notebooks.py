"""Smoke run: every chapter notebook executes through the book runner at the `smoke` profile, writes its
paper-vs-this-run table, the summary gathers them, and Jupyter Book renders the result with -W.  (The numbers at this size mean nothing; the
cpu-profile results are checked by nbval on the notebooks' stored claim flags.)  The built book loads
nothing from the network, and its math renders in headless Chromium with the network off."""
import os
import pathlib
import re
import shutil
import subprocess
import sys

import nbformat
import pandas as pd
import pytest

from browser import rendered_dom
from clipmem_lib import book, plan, report
from clipmem_lib.params import sibling_parameters

ROOT = pathlib.Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """(folder, runner's exit code, jupyter-book's result) of the smoke run, built as `make book` builds."""
    tmp_path = tmp_path_factory.mktemp("smoke")
    rc = book.main(["run", "--profile", "smoke", "--runs", str(tmp_path / "runs"), "--out",
                    str(tmp_path / "book" / "generated"), "--no-progress"])
    for f in ("_config.yml", "_toc.yml", "book/intro.md"):
        shutil.copy(ROOT / f, tmp_path / f)
    shutil.copytree(ROOT / "_static", tmp_path / "_static", ignore=shutil.ignore_patterns("mathjax"))
    book.install_mathjax(tmp_path / "_static" / "mathjax")
    jb = pathlib.Path(sys.executable).parent / "jupyter-book"
    build = subprocess.run([str(jb), "build", str(tmp_path), "-W", "-n", "--keep-going"], capture_output=True, text=True)
    return tmp_path, rc, build


def test_all_notebooks_run_at_the_smoke_profile_and_the_book_builds_strictly(smoke):
    tmp_path, rc, build = smoke
    out = tmp_path / "book" / "generated"
    assert rc == 0
    stems = [p.stem for p in sorted((ROOT / "notebooks").glob("*.ipynb"))]
    assert sorted(p.stem for p in out.glob("*.ipynb")) == stems
    tables = sorted(p.stem for p in (out / "results").glob("*.csv"))
    assert tables == [s for s in stems if s != "99_summary"]
    rows = report.load_claims(out / "results")
    assert {"paper", "this run", "verdict", "effect", "low", "high", "n_seeds"} <= set(rows.columns)
    assert set(rows.verdict) <= {"holds", "fails", "too small", "inconclusive", "n/a"}
    assert {"delta", "half_width"} <= set(rows.columns) and rows.delta.notna().any()
    assert set(rows.n_seeds.dropna()) == {1, 2} and set(rows[rows.verdict != "n/a"].claim) >= set("12345678")
    summary = nbformat.read(out / "99_summary.ipynb", as_version=4)
    assert summary.metadata.papermill.parameters["results_dir"] == str(out / "results")
    figures = sum("image/png" in o.get("data", {}) for c in nbformat.read(out / "02_memorisation.ipynb", 4).cells
                  for o in c.get("outputs", []))
    assert figures >= 3  # Fig. 2a, 2b and the gallery
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    html = (tmp_path / "_build" / "html" / "book" / "generated" / "99_summary.html").read_text()
    assert "Reproduction summary" in html and "this run" in html


def test_no_page_loads_anything_from_the_network(smoke):
    html = smoke[0] / "_build" / "html"
    loads = re.compile(r"<(?:script|link|img|iframe|source)\b[^>]*?\b(?:src|href)=[\"']([^\"']+)", re.I)
    pages = list(html.rglob("*.html"))
    remote = {(p.name, url) for p in pages for url in loads.findall(p.read_text()) if re.match(r"(?:[a-z]+:)?//", url, re.I)}
    assert len(pages) >= 11 and not remote, sorted(remote)
    assert (html / "_static" / "mathjax" / "tex-mml-chtml.js").is_file()


def test_math_renders_with_the_network_off(smoke):
    page = smoke[0] / "_build" / "html" / "book" / "generated" / "07_removal.html"
    assert r"\(k_\mathrm{peak}\)" in page.read_text()  # the raw TeX that MathJax must typeset
    dom = rendered_dom(page, "the built chapter 07")
    text = re.sub(r"<(script|style)\b.*?</\1>", "", dom, flags=re.S | re.I)
    assert "<mjx-container" in text and "\\(" not in text, text[text.find("\\("):][:300]


def test_the_cost_plan_lists_every_training_the_smoke_run_did(smoke):
    out, shape = smoke[0] / "book" / "generated", ["kind", "model", "n_train", "epochs"]
    planned = book.plan(sorted((ROOT / "notebooks").glob("*.ipynb")), book.load_profile("smoke"),
                        fixed={"runs_dir": "runs", "results_dir": "results"}, book=sibling_parameters())
    rows, costs, _ = book.training_plan(planned, smoke[0] / "runs", out)
    seen = set()
    for stem, part in rows.groupby("chapter"):  # in the book's order
        ran = plan.ledger(out / "trainings" / f"{stem}.jsonl")
        first = ran[~ran.key.isin(seen)].drop_duplicates("key")  # asked here before any earlier chapter
        seen |= set(ran.key)
        assert sorted(map(tuple, first[shape].values.tolist())) == sorted(map(tuple, part[part.new][shape].values.tolist())), stem
        assert ran.key.nunique() == part.ident.nunique(), stem  # every key asked for, repeats within the chapter once
    trained = pd.concat([plan.ledger(p) for p in (out / "trainings").glob("*.jsonl")]).query("trained")
    # chapters run side by side: a model two of them ask for is trained by whichever comes first, once
    assert not trained.key.duplicated().any() and set(rows[rows.new].key) == set(trained.key)
    assert costs.loc["total", "stored"] == rows.new.sum() > 100 and costs.loc["total", "to train"] == 0


def test_a_smoke_chapter_gives_identical_results_through_submitit_jobs(smoke, tmp_path):
    """Chapter 01 again, its trainings as jobs on submitit's local cluster (real subprocesses) into a new store:
    the smoke run's models bit for bit and its table."""
    import torch

    threads = max(1, (os.cpu_count() or 1) // 2)  # the smoke run's chapters ran two at a time, sharing the cores

    def run(logs):
        assert book.main(["run", "--profile", "smoke", "--only", "01_metric", "--runs", str(tmp_path / "runs"), "--out",
                          str(tmp_path / "out"), "--no-progress", "--executor", "submitit", "--set",
                          "submitit_cluster=local", f"submitit_folder={tmp_path / logs}",
                          f"submitit_cpus={threads}"]) == 0
        return len(list((tmp_path / logs).glob("*_submitted.pkl")))

    assert run("logs") == 4  # f and g at 2 seeds, one job each
    entries = sorted((tmp_path / "runs" / "clip").iterdir())
    assert len(entries) == 4
    for entry in entries:
        a = torch.load(smoke[0] / "runs" / "clip" / entry.name / "model.pt", weights_only=True)
        b = torch.load(entry / "model.pt", weights_only=True)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), entry.name
    results = "book/generated/results/01_metric.csv"
    pd.testing.assert_frame_equal(pd.read_csv(smoke[0] / results), pd.read_csv(tmp_path / "out" / "results" / "01_metric.csv"))
