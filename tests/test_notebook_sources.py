"""The notebooks tell the story and call the library: their parameters cells are the schema's, and no
code cell computes a metric, builds a score table by hand or states a claim rule (those live in the
library, tested)."""
import io
import pathlib
import re
import tokenize

import nbformat
import pytest

from clipmem_lib.params import declared_parameters
from clipmem_lib.schema import CHAPTERS, RUN, chapter_parameters, parameters_cell

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))

# What only the library may do: each pattern, and why it is not notebook work.
FORBIDDEN = {
    r"\bsklearn\b|roc_auc": "metric math (sklearn)",
    r"pd\.DataFrame\(|pd\.concat\(": "a hand-built table",
    r"\.groupby\(|\.pivot_table\(|\.n(?:largest|smallest)\(": "aggregation of scores",
    r"\bbool\(|[^=!<>]==[^=]|\s[<>]=?\s": "a claim rule (comparison)",
    r"\bdef\s|\blambda\b": "a function defined in a notebook",
}


def without_strings(source: str) -> str:
    """``source`` with every string literal and comment blanked (prose may say "S_I < 0")."""
    lines = source.splitlines(keepends=True)
    out = list(lines)
    for tok in reversed(list(tokenize.generate_tokens(io.StringIO(source).readline))):
        if tok.type in (tokenize.STRING, tokenize.COMMENT) and tok.start[0] == tok.end[0]:
            row = tok.start[0] - 1
            out[row] = out[row][:tok.start[1]] + '""' + out[row][tok.end[1]:]
    return "".join(out)


def code_cells(path):
    return [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


def test_every_chapter_is_in_the_schema():
    assert [p.stem for p in NOTEBOOKS] == list(CHAPTERS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_cells_are_the_schemas(path):
    cell = next(c for c in code_cells(path) if "parameters" in c.metadata.get("tags", []))
    assert cell.source == parameters_cell(path.stem), "run `make params` to regenerate it from clipmem_lib/schema.py"
    assert declared_parameters(path) == chapter_parameters(path.stem)


def test_papermill_parses_every_parameters_line(caplog):
    """A line papermill cannot parse (an "=" in its comment, say) is logged at every run and loses its type."""
    from papermill.translators import PythonTranslator

    for stem in CHAPTERS:
        parsed = PythonTranslator.inspect({"source": parameters_cell(stem)})
        assert [p.name for p in parsed] == list(chapter_parameters(stem)), stem
    assert "Unable to parse" not in caplog.text


def test_run_parameters_agree_across_chapters():
    """Models are shared between chapters through the run store: every chapter must read the same run set-up."""
    runs = {s: {n: chapter_parameters(s)[n] for n in RUN} for s, own in CHAPTERS.items() if own is not None}
    defaults = {n: {d[n].default for s, d in runs.items() if n not in (CHAPTERS[s] or {})} for n in RUN}
    assert all(len(v) == 1 for v in defaults.values()), defaults


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_notebook_computes_metrics_or_claims_itself(path):
    problems = []
    for i, cell in enumerate(code_cells(path)):
        if "parameters" in cell.metadata.get("tags", []):
            continue
        src = without_strings(cell.source)
        for pattern, what in FORBIDDEN.items():
            for m in re.finditer(pattern, src):
                line = src[:m.start()].count("\n")
                problems.append(f"code cell {i}, line {line + 1}: {what}: {cell.source.splitlines()[line].strip()}")
    assert not problems, "\n".join(problems)


def test_the_hygiene_check_catches_what_it_should():
    bad = ['auc = roc_auc_score(y, s)', 'held = bool(a > b)', 'm = scores.groupby("subset").mean()',
           'mis = df.x.astype(str) == "True"', 'f = lambda x: x', 'top = s.nlargest(5, "c")', 'ok = x.mean() < 0']
    for src in bad:
        assert any(re.search(p, without_strings(src)) for p in FORBIDDEN), src
    for src in ['f, g = ex.fit_f_and_g(S.data, S.splits, P.model, S.train, ctx=S.ctx)',
                'plots.gallery(S.data, scores, k=P.gallery_k); plt.show()', 'glue("auc", v.auc, display=False)',
                'report.claim("Fig. 2a", "S_C > S_S, S_I < 0", "x == y", m, claims.claim1_subset_order(m))  # a < b']:
        assert not any(re.search(p, without_strings(src)) for p in FORBIDDEN), src
