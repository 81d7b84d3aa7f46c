"""Name a part of a CFG concatenation computed in place, so the guider can pair it as it pairs named values:

    effnet = torch.cat([image_embeddings, torch.zeros_like(image_embeddings)]) if cfg else image_embeddings

becomes

    effnet_part1 = torch.zeros_like(image_embeddings)
    effnet = torch.cat([image_embeddings, effnet_part1]) if cfg else image_embeddings

The batched-CFG detector raises `ComputedCatPart` at such a part; the analysis names it (`with_named_part`) and starts
again. Only a part that computes without side effects is named: it is computed ahead of the statement, CFG on or
off (it calls no model or method of the pipeline, draws no random numbers, and reads only names and constants).
"""

from __future__ import annotations

from collections.abc import Sequence

import libcst as cst
import libcst.matchers as m

from ..analysis.loop_header import fresh_name
from ..cst.match_filter import matches
from ..cst.substitute import replace_nodes, replace_with_origins
from ..cst.tree_walk import walk

# functions that only shape a new tensor from others: safe to compute ahead, CFG on or off
_CONSTRUCTORS = frozenset({"zeros_like", "ones_like", "full_like", "zeros", "ones", "full"})


class ComputedCatPart(Exception):  # noqa: N818 - a signal to the analysis, not an error
    """Raised by the batched-CFG detector at a part of a CFG concatenation that is computed in place."""

    def __init__(self, part: cst.BaseExpression, target: str, position: int):
        super().__init__("a CFG concatenation part computed in place")
        self.part = part
        self.target = target
        self.position = position


def nameable(part: cst.BaseExpression) -> bool:
    """`torch.zeros_like(x)`, `torch.ones(shape)`: a tensor constructor over names and constants."""
    if not matches(part, m.Call(func=m.Attribute(value=m.Name("torch"), attr=m.Name()))):
        return False
    if part.func.attr.value not in _CONSTRUCTORS:
        return False
    allowed = (cst.Name, cst.Attribute, cst.Integer, cst.Float, cst.Arg, cst.Tuple, cst.Element, cst.Comma)
    return all(
        isinstance(node, allowed) or isinstance(node, cst.BaseParenthesizableWhitespace) for node in _inner(part)
    )


def _inner(part: cst.Call):
    for argument in part.args:
        yield from walk(argument)


def with_named_part(
    body: Sequence[cst.BaseStatement], found: ComputedCatPart, taken: set[str]
) -> tuple[list[cst.BaseStatement], dict[cst.CSTNode, cst.CSTNode]]:
    """`body` with the part assigned to a fresh local just before the statement holding it, and read from there."""
    statement = next(
        node
        for top in body
        for node in walk(top)
        if isinstance(node, cst.SimpleStatementLine) and any(child is found.part for child in walk(node))
    )
    name = fresh_name(f"{found.target}_part{found.position}", taken)
    assign = cst.SimpleStatementLine([cst.Assign([cst.AssignTarget(cst.Name(name))], found.part)])
    reading = replace_nodes(statement, {found.part: cst.Name(name)})
    moved = assign.with_changes(leading_lines=statement.leading_lines)
    reading = reading.with_changes(leading_lines=[])
    return replace_with_origins(body, {statement: cst.FlattenSentinel([moved, reading])})
