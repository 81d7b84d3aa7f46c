"""Drop an assignment that repeats an earlier one: the same name, the same value, over names nothing reassigns.

    do_classifier_free_guidance = guidance_scale > 1.0
    ...
    for i, t in enumerate(self.progress_bar(timesteps)):
        do_classifier_free_guidance = guidance_scale > 1.0
        latent_model_input = torch.cat([latents] * 2) if do_classifier_free_guidance else latents

becomes

    do_classifier_free_guidance = guidance_scale > 1.0
    ...
    for i, t in enumerate(self.progress_bar(timesteps)):
        latent_model_input = torch.cat([latents] * 2) if do_classifier_free_guidance else latents

The same values: the repeat recomputes what the name holds already. Only an assignment of a value that calls
nothing, reads no attribute and reads only names `__call__` never writes (its arguments, left as given), to a name
nothing else writes,
repeating a top-level assignment before it (in a later statement), goes. The CFG flag is then a local set once, as the guidance detectors
read it.
"""

from __future__ import annotations

from collections.abc import Sequence

import libcst as cst
import libcst.matchers as m

from ..cst.dataflow import flow_of, names_read
from ..cst.match_filter import matcher_test
from ..cst.substitute import same_expression
from ..cst.tree_walk import findall

_ASSIGNED = m.SimpleStatementLine(body=[m.Assign(targets=[m.AssignTarget(m.Name())])])
_is_assigned = matcher_test(_ASSIGNED)  # (read once: asked about every statement)


def repeated_assignments(body: Sequence[cst.BaseStatement]) -> list[cst.SimpleStatementLine]:
    """The assignments in `body` (at any depth) that repeat an earlier top-level one."""
    lines = [line for statement in body for line in findall(statement, m.SimpleStatementLine())]
    writers: dict[str, list[cst.CSTNode]] = {}
    for line in lines:
        for name in flow_of([line]).writes:
            writers.setdefault(name, []).append(line)
    for statement in body:
        for node in findall(statement, m.For() | m.With() | m.CompFor()):
            target = node.target if not isinstance(node, cst.With) else None
            for name in names_read(target) if target is not None else ():
                writers.setdefault(name, []).append(node)
    position = {
        id(line): at for at, statement in enumerate(body) for line in findall(statement, m.SimpleStatementLine())
    }
    found = []
    for at, first in enumerate(body):
        # (no calls, no attributes: `self._execution_device` may read state that changes in between)
        if not _is_assigned(first) or findall(first.body[0].value, m.Call() | m.Attribute()):
            continue
        name, value = first.body[0].targets[0].target.value, first.body[0].value
        if any(read in writers for read in names_read(value)):
            continue
        repeats = [
            line
            for line in writers.get(name, [])
            if line is not first
            and position.get(id(line), -1) > at
            and _is_assigned(line)
            and same_expression(line.body[0].value, value)
        ]
        if repeats and len(repeats) + 1 == len(writers[name]):
            found += repeats
    return found
