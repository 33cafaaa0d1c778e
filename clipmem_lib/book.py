"""Run the chapter notebooks with papermill for a profile, then let Jupyter Book render them.

    python -m clipmem_lib.book run --profile cpu                 # what `make book` does first
    python -m clipmem_lib.book run --profile paper --data /data/coco
    python -m clipmem_lib.book run --only 02_memorisation --set epochs=10
    python -m clipmem_lib.book strip                             # clear outputs of notebooks/ before a commit
    python -m clipmem_lib.book refresh                           # re-run sources at defaults, store nbval outputs
    python -m clipmem_lib.book params                            # write the parameters cells from the schema
    python -m clipmem_lib.book timings                           # where the last run's time went, per chapter
    python -m clipmem_lib.book static                            # MathJax 3 into _static/mathjax (make html does it)
    python -m clipmem_lib.book plan --profile paper-lite         # every training the run asks for, and its cost

A profile (``profiles/<name>.yaml``) is a flat set of parameter values; each notebook receives those it
declares.  A value ``???`` must be supplied (``--data`` fills ``data_path``).  Every parameter, and the
data path, is checked before any kernel starts.  Each notebook is executed into a temporary file and moved into place only when it
succeeds; a failed one is kept as ``<out>/failed/<stem>.ipynb``, the others still run, and the command
exits non-zero after listing every failure.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import difflib
import json
import multiprocessing
import os
import pathlib
import shutil
import sys
import time

import nbformat
import pandas as pd
import yaml

from .datasets import check_source
from .fitting import LEDGER_ENV
from .runtime import CATEGORIES, CHAPTER_ENV, TIMINGS_ENV
from .params import ParameterError, declared_parameters, listing_of, sibling_parameters, validate
from .schema import CHAPTERS, parameters_cell
from .store import HEALED_LOG, RunStore, project_path

__all__ = ["load_profile", "declared_parameters", "plan", "check_data", "training_plan", "SIDE_BY_SIDE_BELOW", "side_by_side", "run_notebooks", "timing_table",
           "strip_outputs", "write_parameters", "install_mathjax", "main"]

REQUIRED = "???"
# The kernel's own start-up log says only that it talks over local TCP unencrypted, once per chapter; cells'
# warnings and errors still show in the notebook.
KERNEL_ARGS = ["--IPKernelApp.log_level=ERROR"]
KEEP_TAG = "nbval-check-output"


def load_profile(name: str) -> dict:
    """``profiles/<name>.yaml`` (or a YAML path): a flat mapping of parameter values, so that the same
    file also works as ``papermill -f profiles/<name>.yaml``."""
    path = pathlib.Path(name)
    if path.suffix not in (".yaml", ".yml"):
        path = project_path("profiles") / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in project_path("profiles").glob("*.yaml"))
        raise ParameterError(f"profile {name!r} not found ({path}); known profiles: {', '.join(known)}")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict) or any(isinstance(v, dict) for v in raw.values()):
        raise ParameterError(f"{path}: a profile is a flat mapping of parameter: value")
    return raw


def plan(notebooks, profile: dict, sets: dict | None = None, data: str | None = None,
         fixed: dict | None = None, book: set[str] | None = None) -> dict[pathlib.Path, dict]:
    """The checked parameters for each notebook: of ``profile``, then ``sets``, then ``data`` (as
    ``data_path``), then ``fixed`` (paths the runner owns), the names the notebook declares.  Raises one
    :class:`ParameterError` listing every problem: a name no notebook declares, a wrong type, or a
    required (``???``) value left unset.  A profile key may belong to a chapter not run now: ``book``
    is every name the book's chapters declare (default: those of ``notebooks``)."""
    decl = {pathlib.Path(nb): declared_parameters(nb) for nb in notebooks}
    known = set().union(*decl.values()) if decl else set()
    given_all = {**profile, **(sets or {}), **({"data_path": data} if data else {}), **(fixed or {})}
    problems = []
    for k in [k for k in profile if k not in (book or known)] + list(sets or {}):
        if k not in known:
            close = difflib.get_close_matches(k, sorted(known), n=1)
            problems.append(f"parameter {k!r} is not declared by any notebook"
                            + (f" (did you mean {close[0]!r}?)" if close else ""))
    missing = sorted(k for k, v in given_all.items() if v == REQUIRED)
    if missing:
        problems.append(f"{', '.join(missing)} must be given"
                        + (" (--data PATH, or DATA=PATH with make)" if "data_path" in missing else " (--set)"))
    out = {}
    for path, d in decl.items():
        given = {k: v for k, v in given_all.items() if k in d and v != REQUIRED}
        try:
            validate(d, given, where=path.stem, listing=False)
            out[path] = given  # papermill injects only what the profile sets
        except ParameterError as e:
            problems.append(str(e))
    if problems:
        union = {k: v for d in decl.values() for k, v in d.items()}
        raise ParameterError("\n".join(dict.fromkeys(problems)) + "\nvalid parameters (of all notebooks):\n"
                             + listing_of(union))
    return out


def check_data(planned: dict[pathlib.Path, dict]) -> None:
    """Check each distinct (data_source, data_path) the planned notebooks will read, once, before any
    kernel starts (a missing COCO root fails here, not in every chapter)."""
    seen = set()
    for path, given in planned.items():
        values = {**{k: d.default for k, d in declared_parameters(path).items()}, **given}
        if "data_source" in values and (values["data_source"], values.get("data_path", "")) not in seen:
            seen.add((values["data_source"], values.get("data_path", "")))
            try:
                check_source(values["data_source"], values.get("data_path", ""))
            except (ValueError, FileNotFoundError) as e:
                raise ParameterError(str(e)) from None


def write_parameters(notebook, check: bool = False) -> bool:
    """Make ``notebook``'s parameters cell the schema's (:func:`~clipmem_lib.schema.parameters_cell`);
    returns whether it differed (with ``check``, nothing is written)."""
    nb = nbformat.read(notebook, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    want = parameters_cell(pathlib.Path(notebook).stem)
    if cell.source == want:
        return False
    if not check:
        cell.source = want
        nbformat.write(nb, notebook)
    return True


def training_plan(planned: dict, runs, out_dir=None, *, samples_per_s: float | None = None,
                  n_data: int | None = None):
    """(every training the planned notebooks ask for, the cost per chapter, a note on the rate used):
    :func:`~clipmem_lib.plan.book_trainings` and :func:`~clipmem_lib.plan.cost_table`.  A new training is
    marked stored when the last run into ``out_dir`` recorded it (``trainings/<chapter>.jsonl``, matched by
    kind, model, pairs and epochs, in order) and its entry is in the run store ``runs``; the rate is
    ``samples_per_s`` or the median of the store's own trainings of each kind and model."""
    from .plan import book_trainings, cost_table, ledger

    rows = book_trainings(planned, n_data).assign(key="")
    root, stored, seen = pathlib.Path(runs), set(), set()
    shape = ["kind", "model", "n_train", "epochs"]
    for stem in dict.fromkeys(rows.chapter):
        done = ledger(pathlib.Path(out_dir or ".") / "trainings" / f"{stem}.jsonl").drop_duplicates("key")
        done, seen = done[~done.key.isin(seen)], seen | set(done.key)  # keys first asked for in this chapter
        part = rows[rows.new & (rows.chapter == stem)]
        for sh, want in part.groupby(shape, sort=False):
            have = done[(done[shape] == pd.Series(sh, index=shape)).all(axis=1)]
            if len(have) == len(want):  # the same trainings as the last run: its keys are theirs
                rows.loc[want.index, "key"] = have.key.to_numpy()
                stored |= {i for i, k, kind in zip(want.index, have.key, have.kind)
                           if (root / kind / k / "config.json").is_file()}
    measured = {} if samples_per_s else RunStore(root).throughput()
    todo = rows[rows.new & ~rows.index.isin(stored)]
    assumed = sorted({(k, m) for k, m in zip(todo.kind, todo.model) if not samples_per_s and (k, m) not in measured})
    rates = dict(measured)
    if measured:  # a kind and model the store never trained: costed at the median of the measured rates
        rates.update({km: float(pd.Series(list(measured.values())).median()) for km in assumed})
    costs = cost_table(rows, stored, samples_per_s, rates)
    used = (f"{samples_per_s:,.0f} samples/s (given)" if samples_per_s else
            "; ".join(f"{m} {k} {r:,.0f} samples/s" for (k, m), r in sorted(measured.items())
                      if ((rows.kind == k) & (rows.model == m)).any()) or "none measured in the run store")
    note = f"rate: {used}"
    if assumed:
        note += (f"; {', '.join(f'{m} ({k})' for k, m in assumed)} never trained in the store: "
                 + ("costed at the median measured rate" if measured else "give --samples-per-s"))
    return rows.assign(stored=rows.index.isin(stored)), costs, note


# What the power plan costs a new training at, where the run store has measured none: the cpu book's median
# clipmem-tiny rate (benchmarks/README.md, the cost plan), and the rate assumed for one GPU.
ASSUMED_SAMPLES_PER_S = {"cpu": 1821.0, "cuda": 900.0}
PLAN_PROFILES = ("cpu", "paper-lite", "paper")  # the profiles a label may point to


def _chapter_seeds(planned: dict) -> dict[str, int]:
    """Seeds per chapter, and the seeds of the designs that have their own (e.g. ``noise_seeds``)."""
    from .resolution import DESIGN_SEEDS

    out = {}
    for nb, given in planned.items():
        declared = declared_parameters(nb)
        if "seeds" in declared:
            out[pathlib.Path(nb).stem] = int(given.get("seeds", declared["seeds"].default))
        out.update({k: int(given.get(k, declared[k].default)) for k in DESIGN_SEEDS if k in declared})
    return out


def power_plan(profile: str, planned: dict, trainings: pd.DataFrame, samples_per_s: float | None = None) -> str:
    """The power plan's table for ``book plan`` (:func:`~clipmem_lib.resolution.resolution_table`): every
    tested row's expected half-width at the profile's seeds beside δ, and its label, with a count."""
    from .resolution import DESIGN_SEEDS, chapter_cost, resolution_table

    seeds = _chapter_seeds(planned)
    device = next((g.get("device", "cpu") for g in planned.values()), "cpu")
    rate = samples_per_s or ASSUMED_SAMPLES_PER_S.get(device, ASSUMED_SAMPLES_PER_S["cpu"])
    others = {}
    for name in PLAN_PROFILES:
        if name != profile and (project_path("profiles") / f"{name}.yaml").is_file():
            other = load_profile(name)
            others[name] = {k: int(other.get(k, 0)) if k in DESIGN_SEEDS else int(other.get("seeds", s))
                            for k, s in seeds.items()}  # a design's 0: its chapter's seeds (resolution.row_seeds)
    table, source = resolution_table(profile, seeds, chapter_cost(trainings, seeds, rate), others)
    counts = table.decidable.value_counts()
    head = (f"\npower plan at {profile} (variances: {source}; new trainings costed at {rate:,.0f} samples/s): "
            f"{len(table)} tested rows, {counts.get('yes', 0)} decidable, {counts.get('no', 0)} beyond resolution, "
            f"{counts.get('two-way', 0)} two-way (no δ)")
    with pd.option_context("display.max_rows", None, "display.width", 250, "display.max_colwidth", 140):
        return head + "\n" + table.round({"δ": 4, "expected half-width": 4}).to_string(index=False)


def _plan_line(planned: dict, runs, out) -> tuple[str, set[str]]:
    """The plan's total in one line (what ``run`` prints before any kernel starts), and the chapters
    that have little or nothing to train (:func:`side_by_side`)."""
    try:
        rows, costs, note = training_plan(planned, runs, out)
    except ValueError as e:  # e.g. real data of unknown size: the run itself does not need the plan
        return f"not available: {e}", set()
    t = {k: (v if k == "hours" else int(v)) for k, v in costs.loc["total"].items()}
    return (f"{t['new']} trainings, {t['stored']} of them already in {runs}; {t['to train']} to train, "
            f"{t['samples']:,} samples" + (f", about {t['hours']:.1f} h" if pd.notna(t["hours"]) else "")
            + f" ({note})"), side_by_side(rows, SIDE_BY_SIDE_BELOW)


@dataclasses.dataclass
class Result:
    notebook: str
    ok: bool
    seconds: float
    error: str = ""


# A chapter with fewer samples than this left to train spends its wall time mostly starting a kernel and
# in Python (the smoke profile's largest trains 31,476), so two of them share 2 cores; a cpu-profile
# chapter trains millions and runs alone (benchmarks/README.md, "The smoke book side by side").
SIDE_BY_SIDE_BELOW = 50_000


def side_by_side(rows, below: int = 1) -> set[str]:
    """The chapters of a training plan (:func:`training_plan`'s rows) that have fewer than ``below``
    samples left to train (1: none, every training already in the run store): two of them can run at
    once.  A chapter that trains more, or asks for no training (the summary, which reads the others'
    tables), runs alone, in order."""
    stored = set(rows.ident[rows.stored])
    left = rows[~rows.ident.isin(stored)].drop_duplicates(["chapter", "ident"]).groupby("chapter").samples.sum()
    return {ch for ch in rows.chapter.unique() if left.get(ch, 0) < below}


def _execute(src: pathlib.Path, params: dict, out_dir: pathlib.Path, kernel: str, cwd, progress: bool,
             threads: int | None = None) -> Result:
    """Run one notebook into ``out_dir/<name>`` (atomically), its failure kept under ``failed/``; with
    ``threads``, its kernel's torch uses that many (as a worker of ``fit_many`` does)."""
    import papermill as pm

    if threads:  # two kernels of all the cores each stall each other (8x slower on 2 cores)
        os.environ["OMP_NUM_THREADS"] = str(threads)  # the kernel inherits it; torch reads it at import

    dest, tmp, failed = out_dir / src.name, out_dir / f".{src.stem}.partial.ipynb", out_dir / "failed" / src.name
    log, ledger = out_dir / "timings" / f"{src.stem}.jsonl", out_dir / "trainings" / f"{src.stem}.jsonl"
    log.write_text("")
    ledger.write_text("")
    os.environ[TIMINGS_ENV], os.environ[CHAPTER_ENV] = str(log), src.stem  # the kernel inherits all three
    os.environ[LEDGER_ENV] = str(ledger)
    print(f"[book] {src.stem}: running with {params or 'defaults'}", flush=True)
    t0 = time.perf_counter()
    try:
        pm.execute_notebook(str(src), str(tmp), parameters=params, kernel_name=kernel, progress_bar=progress,
                            cwd=str(cwd or src.parent), extra_arguments=KERNEL_ARGS)
    except Exception as e:  # noqa: BLE001 - every failure is collected and reported at the end
        if tmp.exists():
            os.replace(tmp, failed)
        dest.unlink(missing_ok=True)  # never render a stale chapter beside a failed run
        msg = f"{getattr(e, 'ename', type(e).__name__)}: {getattr(e, 'evalue', str(e))}".strip()
        result = Result(src.stem, False, time.perf_counter() - t0, msg)
        print(f"[book] {src.stem}: FAILED after {result.seconds:.0f} s: {msg}", flush=True)
        return result
    _hide_injected(tmp)
    os.replace(tmp, dest)
    failed.unlink(missing_ok=True)
    result = Result(src.stem, True, time.perf_counter() - t0)
    with open(log, "a") as fh:
        fh.write(json.dumps(dict(chapter=src.stem, category="wall", seconds=result.seconds)) + "\n")
    print(f"[book] {src.stem}: done in {result.seconds:.0f} s", flush=True)
    return result


def run_notebooks(planned: dict, out_dir, *, kernel: str | None = None, cwd=None, progress: bool = True,
                  together: set[str] = frozenset(), jobs: int = 2) -> list[Result]:
    """Execute every planned notebook into ``out_dir/<name>`` (atomically); keep going after failures.
    The notebooks named in ``together`` (:func:`side_by_side`: little or nothing to train) run first,
    ``jobs`` at a time in their own processes, sharing the cores out; the others then one at a time, in
    order.  Results in the planned order."""
    out_dir = pathlib.Path(out_dir)
    (out_dir / "failed").mkdir(parents=True, exist_ok=True)
    kernel = kernel or _default_kernel()
    (out_dir / "timings").mkdir(exist_ok=True)
    (out_dir / "trainings").mkdir(exist_ok=True)
    first = [src for src in planned if src.stem in together] if jobs > 1 else []
    results = {}
    healed = _HealedLines({pathlib.Path(p["runs_dir"]) for p in planned.values() if p.get("runs_dir")})
    if len(first) > 1:
        with concurrent.futures.ProcessPoolExecutor(min(jobs, len(first)),
                                                    mp_context=multiprocessing.get_context("spawn")) as pool:
            threads = max(1, (os.cpu_count() or 1) // min(jobs, len(first)))
            runs = {src: pool.submit(_execute, src, planned[src], out_dir, kernel, cwd, False, threads) for src in first}
            results = {src: r.result() for src, r in runs.items()}
        healed.say()
    for src, params in planned.items():
        if src not in results:
            results[src] = _execute(src, params, out_dir, kernel, cwd, progress)
            healed.say(src.stem)
    return [results[src] for src in planned]


class _HealedLines:
    """Prints on the runner's terminal, once each, the store's lines about damaged entries it set aside and
    recomputed (:meth:`~clipmem_lib.store.RunStore.set_aside`), which the chapters print only in their output."""

    def __init__(self, roots):
        self.logs = [pathlib.Path(r) / HEALED_LOG for r in roots]
        self.seen = {log: log.stat().st_size if log.is_file() else 0 for log in self.logs}

    def say(self, chapter: str = "") -> None:
        for log in self.logs:
            if log.is_file() and log.stat().st_size > self.seen[log]:
                with open(log) as f:
                    f.seek(self.seen[log])
                    for line in f.read().splitlines():
                        print(f"[book] {chapter + ': ' if chapter else ''}{line}", flush=True)
                    self.seen[log] = f.tell()


def timing_table(out_dir):
    """Seconds per chapter of the last run into ``out_dir``: wall time, and the library's own time in
    training, embeddings (Eq. 3's crops), probing, UnitMem and plotting; "other" is the rest (kernel
    start, data, scoring, figure rendering).  "training (workers)" sums the worker processes of a
    parallel sweep (``n_jobs`` > 1), whose wall time is already under "training"."""
    import pandas as pd

    rows = [json.loads(line) for f in sorted((pathlib.Path(out_dir) / "timings").glob("*.jsonl"))
            for line in f.read_text().splitlines() if line.strip()]
    if not rows:
        raise FileNotFoundError(f"no timings in {out_dir}/timings: run the book first")
    t = pd.DataFrame(rows).pivot_table(index="chapter", columns="category", values="seconds", aggfunc="sum", fill_value=0)
    t = t.reindex(columns=["wall", *CATEGORIES, "training (workers)"], fill_value=0.0)
    t["other"] = t["wall"] - t[list(CATEGORIES)].sum(axis=1)
    t.loc["total"] = t.sum()
    return t.round(0)


def _hide_injected(path) -> None:
    """Tag papermill's injected-parameters cell ``remove-cell``: the chapter prints its scale itself."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            cell.metadata["tags"] = tags + ["remove-cell"]
    nbformat.write(nb, path)


def _default_kernel() -> str:
    """The project's ``clipmem`` kernel when installed (make does), else this interpreter's ``python3``."""
    from jupyter_client.kernelspec import KernelSpecManager

    return "clipmem" if "clipmem" in KernelSpecManager().find_kernel_specs() else "python3"


def strip_outputs(nb):
    """Clear outputs and execution counts, except in cells tagged ``nbval-check-output``: those keep
    their outputs and a count (1, 2, ...), which nbval needs to compare them."""
    kept = 0
    for cell in nb.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        if cell.metadata.get("tags") == []:
            del cell.metadata["tags"]
        if cell.cell_type != "code":
            continue
        if KEEP_TAG in cell.metadata.get("tags", []) and cell.outputs:
            kept += 1
            cell.execution_count = kept
            for out in cell.outputs:
                if out.output_type == "execute_result":
                    out.execution_count = kept
        else:
            cell.execution_count, cell.outputs = None, []
    for key in ("papermill", "widgets"):
        nb.metadata.pop(key, None)
    return nb


# What MathJax 3's tex-mml-chtml component loads (fonts, autoloaded TeX extensions, menu, a11y): 9 of its 24 MB.
MATHJAX_PARTS = ("tex-mml-chtml.js", "input", "output/chtml", "ui", "a11y", "sre", "adaptors")


def install_mathjax(dest) -> pathlib.Path:
    """Copy MathJax 3 (PyPI's django-static-mathjax, no Django needed) to ``dest``, where ``_config.yml``'s
    ``mathjax_path`` points, so the built book renders its math with no network."""
    import importlib.util

    spec = importlib.util.find_spec("mathjax")
    if spec is None or spec.origin is None:
        raise ParameterError("MathJax 3 is not installed: pip install django-static-mathjax==3.2.2.1 (requirements.txt)")
    es5, dest = pathlib.Path(spec.origin).parent / "static" / "mathjax" / "es5", pathlib.Path(dest)
    for part in MATHJAX_PARTS:
        src, to = es5 / part, dest / part
        if src.is_dir():
            shutil.copytree(src, to, dirs_exist_ok=True)
        else:
            to.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, to)
    return dest


def _parse_sets(items) -> dict:
    out = {}
    for item in items or []:
        name, eq, value = item.partition("=")
        if not eq or not name:
            raise ParameterError(f"--set wants name=value, got {item!r}")
        out[name.strip()] = yaml.safe_load(value)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m clipmem_lib.book", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    shared = argparse.ArgumentParser(add_help=False)  # what run and plan share: which chapters, with what
    shared.add_argument("--profile", default="cpu", help="profiles/<name>.yaml or a YAML path (default: cpu)")
    shared.add_argument("--data", default=None, help="data_path for the real-data profiles (e.g. the COCO root)")
    shared.add_argument("--runs", default="runs", help="the run store folder (default: runs)")
    shared.add_argument("--only", nargs="*", default=None, help="notebook stems (default: all)")
    shared.add_argument("--set", nargs="*", default=None, metavar="NAME=VALUE", help="override parameters (YAML values)")
    shared.add_argument("--executor", default=None, choices=["local", "submitit"],
                        help="where the sweeps' trainings run (the executor parameter; submitit_* set its options)")
    shared.add_argument("--src", default="notebooks", help="folder of the source notebooks")
    shared.add_argument("--out", default="book/generated", help="folder of the executed notebooks (and of the "
                        "trainings ledger the plan reads)")
    r = sub.add_parser("run", parents=[shared], help="execute the chapter notebooks with papermill")
    r.add_argument("--kernel", default=None, help="Jupyter kernel (default: clipmem if installed, else python3)")
    r.add_argument("--no-progress", action="store_true", help="no papermill cell progress bar")
    s = sub.add_parser("strip", help="clear outputs of source notebooks (keeps nbval-checked cells)")
    s.add_argument("notebooks", nargs="*", help="default: notebooks/*.ipynb")
    s.add_argument("--check", action="store_true", help="only report notebooks that are not stripped")
    f = sub.add_parser("refresh", help="run source notebooks at their defaults and store the nbval-checked outputs")
    f.add_argument("notebooks", nargs="*", help="default: notebooks/*.ipynb")
    v = sub.add_parser("variances", help="write the last run's per-row spreads into profiles/variances/<profile>.csv "
                       "(what the power plan reads; a full run does it itself)")
    v.add_argument("--profile", default="cpu", help="the profile the run was at (default: cpu)")
    v.add_argument("--out", default="book/generated", help="folder of the executed notebooks (their results/)")
    t = sub.add_parser("timings", help="print where the last run's time went, per chapter")
    t.add_argument("--out", default="book/generated", help="folder of the executed notebooks")
    q = sub.add_parser("params", help="write each notebook's parameters cell from the schema (clipmem_lib/schema.py)")
    q.add_argument("--check", action="store_true", help="only report notebooks whose cell differs")
    m = sub.add_parser("static", help="copy MathJax 3 into the book's static files (what make html does first)")
    m.add_argument("--dest", default="_static/mathjax", help="where _config.yml's mathjax_path points")
    n = sub.add_parser("plan", parents=[shared],
                       help="list every training a profile asks for, and what it costs (nothing runs, no data read)")
    n.add_argument("--samples-per-s", type=float, default=None,
                   help="training throughput to cost with (default: measured from the run store's trainings)")
    n.add_argument("--pairs", type=int, default=None, help="pairs in the real data (only when n_shared is -1)")
    n.add_argument("--summary", action="store_true", help="the per-chapter table only, not every training")
    n.add_argument("--resolution", action="store_true",
                   help="only the power plan: per tested row, whether the profile's seeds can decide it")
    a = ap.parse_args(argv)

    if a.cmd == "static":
        try:
            print(f"MathJax 3 copied to {install_mathjax(project_path(a.dest))}")
        except ParameterError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        return 0

    if a.cmd == "variances":
        from .report import load_claims
        from .resolution import refresh_variances

        rows = load_claims(project_path(a.out) / "results")
        if rows.empty:
            print(f"error: no chapter tables in {project_path(a.out) / 'results'}: run the book first", file=sys.stderr)
            return 2
        print(f"variances of {rows.chapter.nunique()} chapters written to {refresh_variances(rows, a.profile)}")
        return 0

    if a.cmd == "timings":
        print(timing_table(project_path(a.out)).to_string())
        return 0

    if a.cmd == "params":
        paths = [p for p in sorted(project_path("notebooks").glob("*.ipynb")) if p.stem in CHAPTERS]
        differ = [p.name for p in paths if write_parameters(p, check=a.check)]
        print(("differ from the schema: " if a.check else "rewritten: ") + (", ".join(differ) or "none"))
        return 1 if (a.check and differ) else 0

    if a.cmd == "refresh":
        import papermill as pm
        import tempfile

        for p in [pathlib.Path(p) for p in a.notebooks] or sorted(project_path("notebooks").glob("*.ipynb")):
            with tempfile.TemporaryDirectory() as tmp:
                done = pathlib.Path(tmp) / p.name
                pm.execute_notebook(str(p), str(done), kernel_name=_default_kernel(), cwd=str(p.parent))
                nbformat.write(strip_outputs(nbformat.read(done, as_version=4)), p)
            print(f"refreshed {p}")
        return 0

    if a.cmd == "strip":
        paths = [pathlib.Path(p) for p in a.notebooks] or sorted(project_path("notebooks").glob("*.ipynb"))
        dirty = []
        for p in paths:
            nb = nbformat.read(p, as_version=4)
            before = nbformat.writes(nb)
            after = nbformat.writes(strip_outputs(nb))
            if before != after:
                dirty.append(p)
                if not a.check:
                    p.write_text(after + "\n" if not after.endswith("\n") else after)
        print(("not stripped: " if a.check else "stripped: ") + (", ".join(map(str, dirty)) or "none"))
        return 1 if (a.check and dirty) else 0

    src = project_path(a.src)
    notebooks = sorted(src.glob("*.ipynb"))
    book = sibling_parameters(str(src))
    if a.only:
        unknown = set(a.only) - {p.stem for p in notebooks}
        if unknown:
            print(f"error: no notebook {', '.join(sorted(unknown))} in {src}; have "
                  f"{', '.join(p.stem for p in notebooks)}", file=sys.stderr)
            return 2
        notebooks = [p for p in notebooks if p.stem in a.only]
    out = project_path(a.out)
    try:
        profile = load_profile(a.profile)
        data = a.data or ("(not given)" if a.cmd == "plan" and profile.get("data_path") == REQUIRED else None)
        sets = {**_parse_sets(a.set), **({"executor": a.executor} if a.executor else {})}
        planned = plan(notebooks, profile, sets, data,
                       fixed={"runs_dir": str(project_path(a.runs)), "results_dir": str(out / "results"),
                              "profile": pathlib.Path(a.profile).stem}, book=book)
        if a.cmd == "plan":
            rows, costs, note = training_plan(planned, project_path(a.runs), out, samples_per_s=a.samples_per_s,
                                              n_data=a.pairs)
        else:
            check_data(planned)
    except (ParameterError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if a.cmd == "plan":
        if not (a.summary or a.resolution):
            with pd.option_context("display.max_rows", None, "display.width", 200, "display.max_colwidth", 60):
                print(rows.drop(columns=["ident", "snapshots"]).to_string(index=False))
        if not a.resolution:
            print(f"\nprofile {a.profile}: {note}\n{costs.to_string()}")
        print(power_plan(pathlib.Path(a.profile).stem, planned, rows, a.samples_per_s))
        return 0
    line, warm = _plan_line(planned, project_path(a.runs), out)
    print(f"[book] plan: {line}" + (f"; {len(warm)} chapters with little or nothing to train run two at a time" if len(warm) > 1
                                    else ""), flush=True)
    t0 = time.perf_counter()
    results = run_notebooks(planned, out, kernel=a.kernel, cwd=project_path("."), progress=not a.no_progress,
                            together=warm)
    print(f"\n[book] profile {a.profile}: {sum(r.ok for r in results)}/{len(results)} notebooks ran in "
          f"{time.perf_counter() - t0:.0f} s")
    for r in results:
        print(f"  {'ok    ' if r.ok else 'FAILED'} {r.notebook:<20} {r.seconds:7.0f} s  {r.error}")
    failed = [r for r in results if not r.ok]
    if not failed and not a.only and not a.set and not a.data:  # a full run at a profile: what its plan reads next
        from .report import load_claims
        from .resolution import refresh_variances

        rows = load_claims(out / "results")
        if not rows.empty:
            print(f"[book] power plan's variances refreshed: {refresh_variances(rows, pathlib.Path(a.profile).stem)}")
    if failed:
        print(f"\n{len(failed)} notebook(s) failed; their executed copies are in {out / 'failed'}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
