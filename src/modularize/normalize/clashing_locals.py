"""Locals of `__call__` named like what generated blocks bind themselves, renamed.

A block's `__call__` binds `components`, `state` and `block_state`, and a guider-driven denoiser `guider_state`,
`denoiser_calls`, ...: a local of the standard `__call__` with one of those names would be overwritten (or would
overwrite them) once its code is in a block. A local is private to `__call__`, so it is renamed, everywhere
`__call__` reads or writes it, to a name nothing in `__call__` uses:

    state = self.scheduler.step(noise_pred, t, latents)     # `state` is a name blocks bind
    latents = state.prev_sample
    # ->
    state_ = self.scheduler.step(noise_pred, t, latents)
    latents = state_.prev_sample

Attribute names (`x.state`), keyword names (`f(state=1)`) and what nested functions bind are not the local and stay.
An argument of `__call__` with such a name is part of the pipeline's interface and is not renamed (it is refused).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import libcst as cst

from ..analysis.loop_header import fresh_name
from ..cst.dataflow import flow_of
from ..cst.substitute import replace_with_origins
from ..cst.tree_walk import walk


class ClashingLocals(Exception):
    """Raised by the analysis for the locals of `__call__` a block binds itself: rename them and start again."""

    def __init__(self, names: Sequence[str]):
        super().__init__(", ".join(names))
        self.names = tuple(names)


def renamable(body: Sequence[cst.BaseStatement], names: Iterable[str]) -> bool:
    """Whether the locals can be renamed: no nested function or lambda of `__call__` binds one of them itself, and
    no import does (an import's name is the module's too)."""
    names = set(names)
    for statement in body:
        for node in walk(statement):
            bound: set[str] = set()
            if isinstance(node, (cst.FunctionDef, cst.Lambda)):
                bound = {p.name.value for p in _params(node.params)}
                if isinstance(node, cst.FunctionDef):
                    bound.add(node.name.value)
            elif isinstance(node, (cst.Import, cst.ImportFrom)):
                bound = set(flow_of([cst.SimpleStatementLine([node])]).writes)
            if bound & names:
                return False
    return True


def with_renamed_locals(
    body: Sequence[cst.BaseStatement], names: Sequence[str], taken: set[str]
) -> tuple[list[cst.BaseStatement], dict[cst.CSTNode, cst.CSTNode]]:
    """`body` with each of the locals renamed (`state` -> `state_`), and the origin of every new node ({new: old})."""
    new_names: dict[str, str] = {}
    for name in names:
        new_names[name] = fresh_name(f"{name}_", taken | set(new_names.values()))
    not_variables: set[int] = set()
    for statement in body:
        for node in walk(statement):
            if isinstance(node, cst.Attribute):
                not_variables.add(id(node.attr))
            elif isinstance(node, cst.Arg) and node.keyword is not None:
                not_variables.add(id(node.keyword))
    replacements: dict[cst.CSTNode, cst.CSTNode] = {}
    for statement in body:
        for node in walk(statement):
            if isinstance(node, cst.Name) and node.value in new_names and id(node) not in not_variables:
                replacements[node] = node.with_changes(value=new_names[node.value])
    new_body, origins = replace_with_origins(body, replacements)
    origins.update({new: old for old, new in replacements.items()})
    return new_body, origins


def _params(params: cst.Parameters) -> list[cst.Param]:
    found = [*params.posonly_params, *params.params, *params.kwonly_params]
    found += [p for p in (params.star_arg, params.star_kwarg) if isinstance(p, cst.Param)]
    return found
