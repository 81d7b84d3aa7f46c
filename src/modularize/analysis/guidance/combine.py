"""The one matcher for the guidance combine `base + scale * (minuend - subtrahend)`, used by every detector.

    u + s * (c - u)      -> CombineFormula(base="u", minuend="c", subtrahend="u", scale=s)   diffusers' formulation
    c + s * (c - u)      -> CombineFormula(base="c", minuend="c", subtrahend="u", scale=s)   the original one
    s * (c - u) + u      -> the same as the first: `+` and `*` are commutative in IEEE arithmetic, bit for bit,
    u + (c - u) * s         so every operand order computes exactly what `ClassifierFreeGuidance` computes

The detectors decide what the names must be (the halves of a chunked prediction, the outputs of two passes) and
which formulation that makes (`formulation`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import libcst as cst
import libcst.matchers as m

from ...cst.match_filter import matches
from ...cst.tree_walk import findall

DIFFUSERS, ORIGINAL = "diffusers", "original"  # `use_original_formulation` off / on

_DIFFERENCE = m.BinaryOperation(left=m.Name(), operator=m.Subtract(), right=m.Name())
_PRODUCT = m.BinaryOperation(operator=m.Multiply(), right=_DIFFERENCE) | m.BinaryOperation(
    operator=m.Multiply(), left=_DIFFERENCE
)
_SUM = m.BinaryOperation(left=m.Name(), operator=m.Add(), right=_PRODUCT) | m.BinaryOperation(
    left=_PRODUCT, operator=m.Add(), right=m.Name()
)


@dataclass(frozen=True)
class CombineFormula:
    base: str
    minuend: str
    subtrahend: str
    scale: cst.BaseExpression

    def formulation(self, cond: str, uncond: str) -> str | None:
        """DIFFUSERS for `u + s * (c - u)`, ORIGINAL for `c + s * (c - u)`, None for anything else."""
        if (self.minuend, self.subtrahend) != (cond, uncond):
            return None
        return {uncond: DIFFUSERS, cond: ORIGINAL}.get(self.base)


def combine_formula(expression: cst.CSTNode) -> CombineFormula | None:
    """`u + s * (c - u)` in any operand order -> its parts; anything else -> None."""
    if not matches(expression, _SUM):
        return None
    added, product = (
        (expression.left, expression.right)
        if isinstance(expression.left, cst.Name)
        else (expression.right, expression.left)
    )
    difference, scale = (
        (product.right, product.left) if matches(product.right, _DIFFERENCE) else (product.left, product.right)
    )
    return CombineFormula(added.value, difference.left.value, difference.right.value, scale)


def assigned_combine(statement: cst.CSTNode) -> tuple[str, CombineFormula] | None:
    """`g = u + s * (c - u)` (one statement) -> ("g", the formula); anything else -> None."""
    if not matches(statement, m.SimpleStatementLine(body=[m.Assign(targets=[m.AssignTarget(target=m.Name())])])):
        return None
    assign = statement.body[0]
    formula = combine_formula(assign.value)
    return None if formula is None else (assign.targets[0].target.value, formula)


def combines_in(statements: Sequence[cst.BaseStatement]) -> Iterator[CombineFormula]:
    """Every combine anywhere in `statements` (nested in other expressions too), in source order."""
    for found in findall(cst.Module(body=list(statements)), m.BinaryOperation(operator=m.Add())):
        formula = combine_formula(found)
        if formula is not None:
            yield formula
