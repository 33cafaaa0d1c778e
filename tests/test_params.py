"""Notebook parameters and the book runner: bad parameters fail early with a clear message, failed
notebooks are collected, and the committed sources are stripped."""
import os
import pathlib

import nbformat
import papermill as pm
import pandas as pd
import pytest

from clipmem_lib import book
from clipmem_lib.datasets import load_dataset
from clipmem_lib.params import ParameterError, check_value, parse_declarations, sibling_parameters, validate

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CELL = '''n_pairs: int = 2000  # size of the built-in dataset
lr: float = 0.0012  # peak learning rate
model: str = "clipmem-tiny"  # open_clip config
progress: bool = False
crop: list = [0.5, 1.0]  # area range
'''


def test_declarations_are_parsed_with_types_defaults_and_help():
    d = parse_declarations(CELL)
    assert list(d) == ["n_pairs", "lr", "model", "progress", "crop"]
    assert (d["lr"].type, d["lr"].default, d["lr"].help) == ("float", 0.0012, "peak learning rate")
    assert d["progress"].help == "" and d["crop"].default == [0.5, 1.0]


@pytest.mark.parametrize("bad", ["x = 1\n", "n: int = 2 * 3\n", "n: complex = 1\n"])
def test_parameters_cell_holds_typed_literals_only(bad):
    with pytest.raises(ParameterError, match="line 1"):
        parse_declarations(bad)


def test_type_rules():
    d = parse_declarations(CELL)
    assert check_value(d["lr"], 1) == 1.0 and isinstance(check_value(d["lr"], 1), float)
    assert check_value(d["crop"], (0.1, 1.0)) == [0.1, 1.0]
    for name, value in [("n_pairs", True), ("n_pairs", 2.5), ("n_pairs", "300"), ("model", 3), ("progress", 1)]:
        with pytest.raises(ParameterError, match=f"'{name}' must be"):
            check_value(d[name], value)


def test_unknown_and_mistyped_are_reported_together_with_the_valid_list():
    with pytest.raises(ParameterError) as e:
        validate(parse_declarations(CELL), {"n_pair": 5, "lr": "fast", "model": "clipmem-small"}, where="nb")
    msg = str(e.value)
    assert "unknown parameter 'n_pair' (did you mean 'n_pairs'?)" in msg
    assert "'lr' must be float, got str 'fast'" in msg
    assert "n_pairs: int = 2000  # size of the built-in dataset" in msg  # the valid parameters are listed
    assert validate(parse_declarations(CELL), {"lr": 1})["lr"] == 1.0


def test_every_notebook_declares_its_parameters_cleanly():
    for nb in NOTEBOOKS:
        d = book.declared_parameters(nb)
        assert "results_dir" in d, nb
        if nb.stem != "99_summary":
            assert {"data_source", "data_path", "model", "epochs", "seed", "device", "runs_dir"} <= set(d), nb


def test_sources_are_committed_stripped():
    assert book.main(["strip", "--check"]) == 0


def test_profiles_validate_and_paper_requires_the_data_path(capsys):
    for name in ("cpu", "smoke", "gpu-check"):
        planned = book.plan(NOTEBOOKS, book.load_profile(name))
        assert set(planned) == set(NOTEBOOKS) and planned[NOTEBOOKS[-1]] == {}  # the summary takes none
    with pytest.raises(ParameterError, match="data_path must be given"):
        book.plan(NOTEBOOKS, book.load_profile("paper"))
    paper = book.plan(NOTEBOOKS, book.load_profile("paper"), data="/data/coco")
    assert paper[NOTEBOOKS[0]]["data_path"] == "/data/coco" and paper[NOTEBOOKS[0]]["n_shared"] == 65000
    assert book.main(["run", "--profile", "paper"]) == 2  # stops before any kernel starts
    with pytest.raises(ValueError, match="leaves data_path to you"):  # papermill -f paper.yaml without -p data_path
        load_dataset("coco", "???")
    assert "data_path must be given" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["cpu", "smoke", "paper", "audit-full", "gpu-check"])
def test_profiles_work_with_plain_papermill_f_for_every_chapter(name):
    """`papermill -f profiles/<name>.yaml` injects every key: each must be declared by some chapter (the
    guard ignores other chapters' keys), and the ones a chapter declares must have its types."""
    profile = {k: v for k, v in book.load_profile(name).items() if v != "???"}
    assert set(profile) <= sibling_parameters(), set(profile) - sibling_parameters()
    for nb in NOTEBOOKS[:-1]:
        declared = book.declared_parameters(nb)
        validate(declared, {k: v for k, v in profile.items() if k in declared}, where=nb.stem)
    shared = set.intersection(*(set(book.declared_parameters(nb)) for nb in NOTEBOOKS[:-1]))
    assert {"data_source", "data_path", "model", "epochs", "device", "seed"} <= shared


def test_runner_rejects_bad_overrides_before_running(capsys):
    assert book.main(["run", "--profile", "smoke", "--set", "epoch=3", "n_pairs=many", "--out", "/nonexistent"]) == 2
    err = capsys.readouterr().err
    assert "parameter 'epoch' is not declared by any notebook (did you mean 'epochs'?)" in err
    assert "'n_pairs' must be int, got str 'many'" in err
    assert "valid parameters" in err and not pathlib.Path("/nonexistent").exists()


@pytest.mark.slow
def test_bad_papermill_parameter_fails_inside_the_kernel_with_the_message(tmp_path):
    """Plain `papermill -p` bypasses the runner: the notebook's guard must stop it."""
    with pytest.raises(pm.PapermillExecutionError) as e:
        pm.execute_notebook(str(ROOT / "notebooks" / "99_summary.ipynb"), str(tmp_path / "out.ipynb"),
                            parameters={"results_dri": "x", "bogus": 1, "epochs": 3}, progress_bar=False, cwd=str(ROOT))
    assert e.value.ename == "ParameterError"
    assert "unknown parameter 'results_dri' (did you mean 'results_dir'?)" in e.value.evalue
    assert "unknown parameter 'bogus'" in e.value.evalue
    assert "'epochs'" not in e.value.evalue  # another chapter's parameter (a profile carries it): ignored here


@pytest.mark.slow
def test_runner_collects_failures_and_keeps_going(tmp_path):
    """A failing notebook is kept under failed/, its stale copy removed, and the others still run."""
    src = tmp_path / "src"
    src.mkdir()
    ok = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x: int = 1", metadata={"tags": ["parameters"]}),
                                         nbformat.v4.new_code_cell("print(x * 2)")])
    bad = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x: int = 1", metadata={"tags": ["parameters"]}),
                                          nbformat.v4.new_code_cell("raise RuntimeError(f'boom {x}')")])
    for name, nb in (("a_bad", bad), ("b_ok", ok)):
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, src / f"{name}.ipynb")
    out = tmp_path / "out"
    out.mkdir()
    (out / "a_bad.ipynb").write_text("stale")
    planned = book.plan(sorted(src.glob("*.ipynb")), {"x": 3})
    results = book.run_notebooks(planned, out, kernel="python3", progress=False)
    assert [(r.notebook, r.ok) for r in results] == [("a_bad", False), ("b_ok", True)]
    assert "RuntimeError" in results[0].error and "boom 3" in results[0].error
    assert not (out / "a_bad.ipynb").exists() and (out / "failed" / "a_bad.ipynb").exists()
    done = nbformat.read(out / "b_ok.ipynb", as_version=4)
    assert done["cells"][-1]["outputs"][0]["text"] == "6\n"
    injected = [c for c in done["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert injected and "remove-cell" in injected[0]["metadata"]["tags"]
    # side by side (chapters with nothing to train): each in its own process, with its own chapter's
    # environment; the failure is still collected and the results keep the planned order
    env = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x: int = 1", metadata={"tags": ["parameters"]}),
                                          nbformat.v4.new_code_cell("import os; print(os.environ['CLIPMEM_CHAPTER'])")])
    env.metadata["kernelspec"] = ok.metadata["kernelspec"]
    nbformat.write(env, src / "c_env.ipynb")
    planned = book.plan(sorted(src.glob("*.ipynb")), {"x": 3})
    results = book.run_notebooks(planned, out, kernel="python3", progress=False, together={"a_bad", "c_env"})
    assert [(r.notebook, r.ok) for r in results] == [("a_bad", False), ("b_ok", True), ("c_env", True)]
    assert nbformat.read(out / "c_env.ipynb", as_version=4)["cells"][-1]["outputs"][0]["text"] == "c_env\n"
    assert (out / "failed" / "a_bad.ipynb").exists() and '"category": "wall"' in (out / "timings" / "c_env.jsonl").read_text()
    assert os.environ["CLIPMEM_CHAPTER"] == "b_ok"  # the last one run here: c_env ran in a process of its own


def test_chapters_with_little_or_nothing_to_train_run_side_by_side():
    rows = pd.DataFrame(dict(chapter=["01", "01", "02", "03", "03"], ident=["a", "b", "a", "c", "b"],
                             samples=[10, 10, 10, 30, 10], stored=[True, True, False, False, False]))  # 02, 03 repeat 01's
    assert book.side_by_side(rows) == {"01", "02"}  # 03 needs "c"; a chapter with no training is not listed
    rows = rows.assign(stored=[False, True, False, False, False])
    # left to train, "b" being stored: 01 "a" (10), 02 "a" (10), 03 "c" (30)
    assert book.side_by_side(rows, below=30) == {"01", "02"} and book.side_by_side(rows, below=31) == {"01", "02", "03"}
    assert book.side_by_side(rows) == set() and book.side_by_side(rows, below=10) == set()


def test_runner_runs_one_chapter_with_a_profile_that_has_other_chapters_keys(capsys):
    """`--only 06_mitigation --profile smoke`: the smoke profile's removal_fractions belong to 07, not an error."""
    nb06 = [nb for nb in NOTEBOOKS if nb.stem == "06_mitigation"]
    book_names = {n for nb in NOTEBOOKS for n in book.declared_parameters(nb)}
    planned = book.plan(nb06, book.load_profile("smoke"), book=book_names)
    assert "removal_fractions" not in planned[nb06[0]] and planned[nb06[0]]["caption_counts"] == [1, 2, 5]
    with pytest.raises(ParameterError, match="'removal_fractions' is not declared by any notebook"):
        book.plan(nb06, book.load_profile("smoke"))  # without the book's names it is unknown
    with pytest.raises(ParameterError, match="'removal_fractions' is not declared"):
        book.plan(nb06, {}, sets={"removal_fractions": [0.5]}, book=book_names)  # --set must fit the chapters run
