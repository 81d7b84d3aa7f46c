"""Runtime code that generated packages carry, kept here as real Python: linted, unit-tested, copied by name.

The modules of this package are ordinary Python (they import torch and diffusers, and `tests/test_runtime.py`
calls them). The converter never imports them: converting needs neither torch nor diffusers. It reads a module's
source with LibCST and copies top-level definitions by name, each preceded by a line naming where it came from:

    runtime_definitions(["merge_guider_batches"])
    -> [# Copied from modularize.emit.runtime.guider_calls._UNMERGEABLE
        _UNMERGEABLE = object(),
        # Copied from modularize.emit.runtime.guider_calls._merge_order
        def _merge_order(guider, guider_batches, order): ...,
        ...,
        # Copied from modularize.emit.runtime.guider_calls.merge_guider_batches
        def merge_guider_batches(guider, guider_state, order): ...]

A public name (no leading underscore) is an entry point generated code may call; what it reads from its own module
comes along (private helpers included), in the module's order, modules in `MODULES` order. Comments above a
definition here document it for this project and are not copied: the `# Copied from` line takes their place.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import libcst as cst

from ...cst.dataflow import flow_of
from ...frontend.parse import code

PACKAGE = __name__  # "modularize.emit.runtime"
# the modules generated code may copy from, in the order their definitions appear in a generated file
MODULES = (
    "guider_calls",
    "guider_state",
    "many_batches",
    "explicit_none",
    "package_blocks",
    "saved_package",
    "standard_guider",
    "perturbed_attention",
    "sub_pipeline",
    "family",
)


@functools.cache
def _module(name: str) -> tuple[tuple[str, cst.BaseStatement], ...]:
    """The top-level definitions of one module, in order: (bound name, statement)."""
    tree = cst.parse_module(Path(__file__).with_name(f"{name}.py").read_text(encoding="utf-8"))
    return tuple((bound, statement) for statement in tree.body if (bound := defined_name(statement)) is not None)


def defined_name(statement: cst.BaseStatement) -> str | None:
    """The name a top-level statement defines: a function, a class, or one name assigned (`_UNMERGEABLE = ...`)."""
    if isinstance(statement, (cst.FunctionDef, cst.ClassDef)):
        return statement.name.value
    if isinstance(statement, cst.SimpleStatementLine) and len(statement.body) == 1:
        assign = statement.body[0]
        if isinstance(assign, cst.Assign) and len(assign.targets) == 1:
            target = assign.targets[0].target
            if isinstance(target, cst.Name):
                return target.value
    return None


@functools.cache
def entry_points() -> dict[str, str]:
    """Public name -> qualified name (`merge_guider_batches` -> `modularize.emit.runtime.guider_calls.merge_...`)."""
    names: dict[str, str] = {}
    for module in MODULES:
        for name, _ in _module(module):
            if name.startswith("_"):
                continue
            if name in names:
                raise ValueError(f"{name} is defined in two runtime modules: {names[name]} and {module}")
            names[name] = f"{PACKAGE}.{module}.{name}"
    return names


def runtime_definitions(names: Iterable[str]) -> list[cst.BaseStatement]:
    """The definitions generated code reading `names` needs, each with its `# Copied from` line.

    `names` may hold anything (the free names of generated code, say): only public runtime names are copied, plus
    what they read from their own module.
    """
    points = entry_points()
    wanted: dict[str, set[str]] = {}
    for name in names:
        if name in points:
            module = points[name][len(PACKAGE) + 1 :].rpartition(".")[0]
            wanted.setdefault(module, set()).add(name)
    copied: list[cst.BaseStatement] = []
    for module in MODULES:
        if module in wanted:
            copied += _closure(module, wanted[module])
    return copied


def copied_definition(qualified_name: str) -> cst.BaseStatement:
    """One definition by its qualified name (`modularize.emit.runtime.explicit_none.ExplicitNoneInputs`), alone."""
    module, _, name = qualified_name.removeprefix(PACKAGE + ".").rpartition(".")
    definitions = dict(_module(module)) if module in MODULES else {}
    if name not in definitions:
        raise KeyError(f"no top-level definition {qualified_name}")
    return _copied(module, name).statement


def _closure(module: str, names: set[str]) -> list[cst.BaseStatement]:
    definitions = dict(_module(module))
    needed, pending = set(), list(names)
    while pending:
        name = pending.pop()
        if name in needed:
            continue
        needed.add(name)
        pending += [read for read in _copied(module, name).reads if read in definitions]
    return [_copied(module, name).statement for name, _ in _module(module) if name in needed]


@dataclass(frozen=True)
class Copied:
    """A copied definition (with its `# Copied from` line) and what every file copying it needs of it: its code
    and the names it reads and binds. The runtime's source does not change while the converter runs, so each is
    made once a process: the same statement every time, whose code and names are not computed again."""

    statement: cst.BaseStatement
    code: str
    reads: tuple[str, ...]
    writes: tuple[str, ...]


@functools.cache
def _copied(module: str, name: str) -> Copied:
    origin = f"{PACKAGE}.{module}.{name}"
    comment = cst.EmptyLine(comment=cst.Comment(f"# Copied from {origin}"))
    statement = dict(_module(module))[name].with_changes(leading_lines=[comment])
    flow = flow_of([statement])
    copied = Copied(statement, code(statement), flow.reads, flow.writes)
    _COPIED[id(statement)] = copied
    return copied


# the copied definitions made, by the id of their statement (kept alive by `_copied`'s cache)
_COPIED: dict[int, Copied] = {}


def copied(statement: cst.CSTNode) -> Copied | None:
    """What is known of a statement when it is a copied runtime definition (None for any other)."""
    found = _COPIED.get(id(statement))
    return found if found is not None and found.statement is statement else None
