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
        if branch is gate.statement or not same_expression(branch.test, guard):
            continue
        orelse = branch.orelse
        if orelse is None:
            replacements[branch] = cst.RemoveFromParent()
        elif isinstance(orelse, cst.If):
            replacements[branch] = orelse
        else:
            replacements[branch] = cst.FlattenSentinel(orelse.body.body)
    for choice in index.find(cst.IfExp):
        if same_expression(choice.test, guard):
            replacements[choice] = choice.orelse.with_changes(lpar=[], rpar=[])
    return replacements
