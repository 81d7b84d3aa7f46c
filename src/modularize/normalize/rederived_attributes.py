"""Drop what `__call__` derives again exactly as `__init__` derived it from the components:

    # __init__
    self.vae_scale_factor = 2 ** len(self.vae.temperal_downsample) if getattr(self, "vae", None) else 8
    # __call__
    self.vae_scale_factor = 2 ** len(self.vae.temperal_downsample)
    latents = self.encode(image) ...

becomes, in `__call__`,

    latents = self.encode(image) ...

A generated pipeline computes its derived attributes from its components, as properties (`derivation`): the
assignment would fail there (no setter), and it assigns nothing new. It is the same value when its expression is
`__init__`'s, or the side `__init__` takes once the component it tests for is there (`getattr(self, "vae", None)`,
`self.vae is not None`): at call time the components are there. Any other assignment of a derived attribute stays,
and the analysis refuses it (`_check_kept_attributes`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import libcst as cst
import libcst.matchers as m

from ..cst.match_filter import matches
from ..cst.substitute import replace_with_origins, same_expression
from ..cst.tree_walk import findall
from ..frontend.class_facts import ClassFacts

_SELF_ATTRIBUTE = m.Attribute(value=m.Name("self"), attr=m.Name())
_COMPONENT_THERE = m.Call(
    func=m.Name("getattr"), args=[m.Arg(m.Name("self")), m.Arg(m.SimpleString()), m.Arg(m.Name("None"))]
) | m.Comparison(left=_SELF_ATTRIBUTE, comparisons=[m.ComparisonTarget(m.IsNot(), m.Name("None"))])


def rederived_attributes(facts: ClassFacts, body: Sequence[cst.BaseStatement]) -> list[cst.SimpleStatementLine]:
    """The lines of `body` assigning a derived attribute the value `__init__` gives it with its components."""
    found = []
    assignment = m.SimpleStatementLine(body=[m.Assign(targets=[m.AssignTarget(_SELF_ATTRIBUTE)])])
    for line in findall(cst.Module(body=list(body)), assignment):
        name = line.body[0].targets[0].target.attr.value
        derived = facts.init.derived.get(name)
        if derived is not None and any(
            same_expression(line.body[0].value, value) for value in _with_components(derived)
        ):
            found.append(line)
    return found


def _with_components(derived: cst.BaseExpression) -> list[cst.BaseExpression]:
    """`__init__`'s value, and the side of `X if <component there> else default` it takes with its components."""
    if isinstance(derived, cst.IfExp) and matches(derived.test, _COMPONENT_THERE):
        return [derived, derived.body]
    return [derived]


def without_rederived_attributes(
    facts: ClassFacts, body: Sequence[cst.BaseStatement]
) -> tuple[ClassFacts, list[cst.BaseStatement], dict[cst.CSTNode, cst.CSTNode], tuple[cst.SimpleStatementLine, ...]]:
    """The class's helpers and `__call__`'s `body` without their re-derivations, the origin of every node rebuilt
    ({new: old}) and the lines dropped."""
    if not facts.kept_attributes:  # (nothing derived is assigned again: most pipelines, found without a walk each)
        return facts, list(body), {}, ()
    dropped = rederived_attributes(facts, body)
    body, origins = replace_with_origins(body, {line: cst.RemoveFromParent() for line in dropped}, prune=True)
    methods = dict(facts.methods)
    for name, method in facts.methods.items():
        lines = rederived_attributes(facts, method.body.body)
        if lines:
            (methods[name],), found = replace_with_origins(
                [method], dict.fromkeys(lines, cst.RemoveFromParent()), True
            )
            origins.update(found)
            dropped += lines
    # (and `__call__` itself, which the class's facts read: `kept_attributes`)
    call = facts.call
    lines = rederived_attributes(facts, call.body.body)
    if lines:
        (call,), found = replace_with_origins([call], dict.fromkeys(lines, cst.RemoveFromParent()), True)
        origins.update(found)
    return replace(facts, call=call, methods=methods), body, origins, tuple(dropped)
