"""Notebook parameters: the cell tagged ``parameters`` declares them (``name: type = literal  # help``),
papermill overrides them, and this module refuses a name the cell does not declare or a value of the
wrong type, with a message that lists the valid parameters.

Two places use the same rules: :class:`ParameterGuard` inside a running notebook (it reads the cells
executed since it was created), and :func:`validate` in the book runner before a kernel starts.
"""
from __future__ import annotations

import ast
import dataclasses
import difflib
import types
from typing import Any

import nbformat

from .store import project_path

__all__ = ["ParameterError", "Declared", "parse_declarations", "check_value", "validate", "ParameterGuard",
           "Params", "listing_of", "declared_parameters", "sibling_parameters"]

TYPES = {"str": str, "int": int, "float": float, "bool": bool, "list": list, "dict": dict}


class ParameterError(ValueError):
    """An unknown notebook parameter or a value of the wrong type."""


@dataclasses.dataclass(frozen=True)
class Declared:
    """One parameter of a notebook's ``parameters`` cell."""

    name: str
    type: str
    default: Any
    help: str = ""


def parse_declarations(source: str) -> dict[str, Declared]:
    """The ``name: type = literal  # help`` lines of a parameters cell, in order.

    Every statement must be such an annotated literal: derived values belong in the next cell.
    """
    tree = ast.parse(source)
    lines = source.splitlines()
    out = {}
    for node in tree.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None
                and isinstance(node.annotation, ast.Name) and node.annotation.id in TYPES):
            raise ParameterError(f"parameters cell, line {node.lineno}: write `name: type = literal  # help` with "
                                 f"type one of {', '.join(TYPES)}; derived values go in the next cell")
        try:
            default = ast.literal_eval(node.value)
        except ValueError:
            raise ParameterError(f"parameters cell, line {node.lineno}: the default of {node.target.id!r} must be "
                                 "a literal") from None
        comment = lines[node.lineno - 1][node.end_col_offset:].partition("#")[2].strip()
        out[node.target.id] = Declared(node.target.id, node.annotation.id, default, comment)
    return out


def listing_of(declared: dict[str, Declared]) -> str:
    return "\n".join(f"  {d.name}: {d.type} = {d.default!r}" + (f"  # {d.help}" if d.help else "")
                     for d in declared.values())


def check_value(d: Declared, value: Any) -> Any:
    """``value`` if it fits ``d.type`` (an int is a valid float, a tuple a valid list; a bool is not an int)."""
    want = TYPES[d.type]
    if d.type == "float" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if d.type == "list" and isinstance(value, tuple):
        return list(value)
    if isinstance(value, want) and not (isinstance(value, bool) and want is not bool):
        return value
    hint = " (pass strings with papermill -r name value, or quote them in YAML)" if d.type == "str" else ""
    raise ParameterError(f"parameter {d.name!r} must be {d.type}, got {type(value).__name__} {value!r}{hint}; "
                         f"{d.name}: {d.help or 'see the parameters cell'}")


def validate(declared: dict[str, Declared], given: dict[str, Any], where: str = "this notebook", *,
             listing: bool = True) -> dict[str, Any]:
    """Check ``given`` against ``declared``; return the full parameter set. All problems are reported at
    once, followed (if ``listing``) by the valid parameters with their types, defaults and help."""
    problems, values = [], {k: d.default for k, d in declared.items()}
    for name, value in given.items():
        if name not in declared:
            close = difflib.get_close_matches(name, list(declared), n=1)
            problems.append(f"unknown parameter {name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            continue
        try:
            values[name] = check_value(declared[name], value)
        except ParameterError as e:
            problems.append(str(e))
    if problems:
        raise ParameterError(f"{where}: " + "; ".join(problems)
                             + (f"\nvalid parameters of {where}:\n" + listing_of(declared) if listing else ""))
    return values


class Params(types.SimpleNamespace):
    """The checked parameters of a notebook, as attributes (``P.epochs``)."""

    def asdict(self) -> dict[str, Any]:
        return dict(vars(self))


def declared_parameters(notebook) -> dict[str, Declared]:
    """The parameters a notebook declares, from its cell tagged ``parameters``."""
    nb = nbformat.read(notebook, as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    if len(cells) != 1:
        raise ParameterError(f"{notebook}: needs exactly one cell tagged 'parameters', found {len(cells)}")
    return parse_declarations(cells[0].source)


def sibling_parameters(folder: str = "notebooks") -> set[str]:
    """Every parameter name declared by the chapters in the project's ``folder`` (empty outside a project)."""
    return {n for nb in sorted(project_path(folder).glob("*.ipynb")) for n in declared_parameters(nb)}


def _assigned_names(source: str) -> list[str]:
    """Names a papermill-injected cell assigns (``name = value`` lines)."""
    return [t.id for node in ast.parse(source).body if isinstance(node, ast.Assign)
            for t in node.targets if isinstance(t, ast.Name)]


class ParameterGuard:
    """Put ``guard = ParameterGuard()`` in the cell above ``parameters``, and ``P = guard.check()`` below it.

    It records the source of every cell the kernel runs from then on (an IPython ``pre_run_cell``
    hook, so it works whether or not the runner stores history); ``check()`` reads the parameters
    cell and any cell papermill injected after it.
    """

    def __init__(self):
        from IPython import get_ipython

        self._ip = get_ipython()
        if self._ip is None:
            raise RuntimeError("ParameterGuard works inside a Jupyter kernel; in plain Python call validate()")
        self._cells: list[str] = []
        self._ip.events.register("pre_run_cell", self._record)

    def _record(self, info) -> None:
        self._cells.append(info.raw_cell)

    def check(self) -> Params:
        """The parameter values after papermill's injection, checked against the parameters cell."""
        if self._record in self._ip.events.callbacks["pre_run_cell"]:
            self._ip.events.unregister("pre_run_cell", self._record)
        cells = [c for c in self._cells[:-1] if c.strip()]  # the last one is the cell calling check()
        if not cells:
            raise ParameterError("no parameters cell ran between ParameterGuard() and check()")
        declared = parse_declarations(cells[0])
        injected = list(dict.fromkeys(n for c in cells[1:] for n in _assigned_names(c)))
        undeclared = {n for n in injected if n not in declared}
        others = undeclared & sibling_parameters() if undeclared else set()  # reads the chapters only when needed
        if others:  # a profile (papermill -f) also carries other chapters' sweeps: not for this notebook
            print(f"ignored here, declared by other chapters: {', '.join(sorted(others))}")
        ns = self._ip.user_ns
        given = {n: ns[n] for n in injected if n in ns and n not in others}
        given.update({n: ns[n] for n in declared if n not in injected})
        return Params(**validate(declared, given))
