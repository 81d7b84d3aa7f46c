"""Turn an input the package cannot serve exactly into a clear error at the point it is used.

Some inputs are batched for classifier-free guidance inside a helper method (the helper receives the CFG flag and
concatenates `[negative, positive]` itself), which cannot be paired for the guider from outside. Rather than
silently produce something different, the package raises when such an input is given.

Before:

    if ip_adapter_image is not None or ip_adapter_image_embeds is not None:
        image_embeds = self.prepare_ip_adapter_image_embeds(..., self.do_classifier_free_guidance)
    added_cond_kwargs = {"image_embeds": image_embeds} if (ip_adapter_image is not None or ...) else None

After:

    if ip_adapter_image is not None or ip_adapter_image_embeds is not None:
        raise ValueError("`ip_adapter_image` / `ip_adapter_image_embeds` cannot be used with ...")
    added_cond_kwargs = None

Every later branch on the same guard takes its `else` side, since the guard can no longer be true there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import libcst as cst

from ..cst.node_index import NodeIndex
from ..cst.substitute import Replacement, same_expression


@dataclass(frozen=True)
class FeatureGate:
    statement: cst.If  # the top-level `if <guard>:` around the helper call
    helper: str
    inputs: tuple[str, ...]  # `__call__` arguments the guard reads
    message: str


def gate_message(inputs: Sequence[str], pipeline: str, helper: str) -> str:
    names = " / ".join(f"`{name}`" for name in inputs)
    return (
        f"{names} cannot be used with this generated package yet: {pipeline}.{helper} batches them with their "
        f"negatives for classifier-free guidance, which modularize does not convert to guider inputs yet. "
        f"Use {pipeline} for this input."
    )


def gate_replacements(gate: FeatureGate, index: NodeIndex) -> dict[cst.CSTNode, Replacement]:
    """Replacements for the gated branch and every later branch on the same guard (`index`: the `__call__` body)."""
    guard = gate.statement.test
    raise_statement = cst.parse_statement(f"raise ValueError({gate.message!r})\n")
    replacements: dict[cst.CSTNode, Replacement] = {
        gate.statement: gate.statement.with_changes(body=cst.IndentedBlock(body=[raise_statement]))
    }
    for branch in index.find(cst.If):
        if branch is gate.statement or not false_once_gated(branch.test, guard):
            continue
        orelse = branch.orelse
        if orelse is None:
            replacements[branch] = cst.RemoveFromParent()
        elif isinstance(orelse, cst.If):
            replacements[branch] = orelse
        else:
            replacements[branch] = cst.FlattenSentinel(orelse.body.body)
    for choice in index.find(cst.IfExp):
        if false_once_gated(choice.test, guard):
            replacements[choice] = choice.orelse.with_changes(lpar=[], rpar=[])
    return replacements


def false_once_gated(test: cst.BaseExpression, guard: cst.BaseExpression) -> bool:
    """Past `if a or b: raise ...`, `a` and `b` are false, and so is any test made of them with `or`, or with `and`
    around one of them:

        false_once_gated(`a`, `a or b`)              -> True   (LDM3D: `... if ip_adapter_image is not None else`)
        false_once_gated(`b or a`, `a or b`)         -> True
        false_once_gated(`a and c`, `a or b`)        -> True
        false_once_gated(`c`, `a or b`)              -> False
    """
    if any(same_expression(test, part) for part in (guard, *_disjuncts(guard))):
        return True
    if isinstance(test, cst.BooleanOperation):
        left = false_once_gated(test.left, guard)
        right = false_once_gated(test.right, guard)
        return (left and right) if isinstance(test.operator, cst.Or) else (left or right)
    return False


def _disjuncts(test: cst.BaseExpression) -> list[cst.BaseExpression]:
    """`a or b or c` -> [a, b, c]."""
    if isinstance(test, cst.BooleanOperation) and isinstance(test.operator, cst.Or):
        return [*_disjuncts(test.left), *_disjuncts(test.right)]
    return [test]
