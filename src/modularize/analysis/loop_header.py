"""What the denoising loop's header binds, by position, whatever the names and wrappers are.

    for i, t in enumerate(timesteps):                      step "i", timestep "t", sequence `timesteps`
    for i, t in enumerate(self.progress_bar(timesteps)):   the same
    for t in self.progress_bar(ticks):                     no step index, timestep "t", sequence `ticks`
    for i, (t, sigma) in enumerate(zip(timesteps, s)):     step "i", no single timestep name

A guider counts steps (`set_state(step=...)` decides whether guidance is on at this step), so a loop without an
index is given one by `with_step_index`:

    for t in self.progress_bar(ticks):   ->   for step_index, t in enumerate(self.progress_bar(ticks)):
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import libcst as cst
import libcst.matchers as m

from ..cst.dataflow import names_read
from ..cst.match_filter import matches

_ENUMERATE = m.Call(func=m.Name("enumerate"), args=[m.Arg(keyword=None)])


@dataclass(frozen=True)
class LoopHeader:
    targets: tuple[str, ...]  # every name the header binds, in source order
    step: str | None  # the enumerate index, when the header has one counting from 0
    timestep: str | None  # the name bound to each element of the sequence, when it is one name
    sequence: cst.BaseExpression  # what is iterated, with `enumerate` and one-argument wrappers taken off


def loop_header(loop: cst.For) -> LoopHeader:
    """The header's names by position: an `enumerate(...)` anywhere in the chain of one-argument calls around the
    sequence (`self.progress_bar(...)`, `tqdm(...)`) numbers the steps; its first target is the step index."""
    targets = tuple(names_read(loop.target))
    iterable, enumerated = loop.iter, False
    while isinstance(iterable, cst.Call) and len(iterable.args) == 1 and iterable.args[0].keyword is None:
        if matches(iterable, _ENUMERATE):
            enumerated = True
        elif not _is_wrapper(iterable.func):
            break
        iterable = iterable.args[0].value
    element: cst.BaseExpression = loop.target
    step = None
    if enumerated and isinstance(loop.target, cst.Tuple) and len(loop.target.elements) == 2:
        first, second = (e.value for e in loop.target.elements)
        if isinstance(first, cst.Name):
            step, element = first.value, second
    elif enumerated:
        element = cst.Ellipsis()  # an enumerate whose index is not a name of its own: no single timestep
    timestep = element.value if isinstance(element, cst.Name) else None
    return LoopHeader(targets, step, timestep, iterable)


def _is_wrapper(func: cst.BaseExpression) -> bool:
    """A progress display around the sequence (`self.progress_bar`, `tqdm`): it yields the sequence's items."""
    name = func.attr.value if isinstance(func, cst.Attribute) else func.value if isinstance(func, cst.Name) else ""
    return name in ("progress_bar", "tqdm")


def fresh_name(preferred: str, taken: Iterable[str]) -> str:
    """`preferred`, or `preferred_2`, `preferred_3`, ... : the first one not in `taken`."""
    taken = set(taken)
    name, number = preferred, 1
    while name in taken:
        number += 1
        name = f"{preferred}_{number}"
    return name


def with_step_index(loop: cst.For, index: str) -> cst.For:
    """`for t in xs:` -> `for <index>, t in enumerate(xs):` (the body unchanged)."""
    target = cst.Tuple(elements=[cst.Element(cst.Name(index)), cst.Element(loop.target)], lpar=[], rpar=[])
    return loop.with_changes(target=target, iter=cst.Call(cst.Name("enumerate"), args=[cst.Arg(loop.iter)]))
