"""Turn an early `return` after the loop into the outputs it returns, with the code it skipped in the other branch.

Blocks do not return: the pipeline's outputs are read from the state, so every `return` is dropped. That is right
for a return of the same values the final `return` gives (`if not return_dict: return (image,)`), and wrong for
one that returns something else and skips the rest:

    if not output_type == "latent":
        image = self.vae.decode(latents, return_dict=False)[0]
    else:
        return StableDiffusionXLPipelineOutput(images=latents)
    image = self.image_processor.postprocess(image, output_type=output_type)
    return StableDiffusionXLPipelineOutput(images=image)

becomes (the final return names `image` as the `images` output):

    if not output_type == "latent":
        image = self.vae.decode(latents, return_dict=False)[0]
        image = self.image_processor.postprocess(image, output_type=output_type)
        return StableDiffusionXLPipelineOutput(images=image)
    else:
        image = latents
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import libcst as cst
import libcst.matchers as m

from ..cst.match_filter import matches
from ..cst.substitute import same_expression
from ..cst.tree_walk import findall


@dataclass(frozen=True)
class EarlyReturnProblem:
    node: cst.CSTNode
    reason: str


def returned_values(node: cst.Return, fields: Sequence[str]) -> dict[str, cst.BaseExpression] | None:
    """`return Output(images=x)` / `return (x, y)` / `return x` -> {field: expression}; None when unreadable."""
    value = node.value
    if isinstance(value, cst.Call) and not any(a.star for a in value.args):
        positional = [a.value for a in value.args if a.keyword is None]
        if len(positional) > len(fields):
            return None
        named = {a.keyword.value: a.value for a in value.args if a.keyword is not None}
        return {**dict(zip(fields[: len(positional)], positional, strict=True)), **named}
    if isinstance(value, cst.Tuple) and len(value.elements) <= len(fields):
        return {f: e.value for f, e in zip(fields[: len(value.elements)], value.elements, strict=True)}
    if value is not None and not isinstance(value, cst.Tuple):
        return {fields[0]: value} if fields else None
    return None


_CONSTANT_NAMES = frozenset({"None", "True", "False"})


def is_constant(value: cst.BaseExpression) -> bool:
    """`None`, `True`, `False`, a number or a string: a value no block computes."""
    if isinstance(value, cst.Name):
        return value.value in _CONSTANT_NAMES
    if isinstance(value, cst.UnaryOperation):
        return is_constant(value.expression)
    return isinstance(value, (cst.Integer, cst.Float, cst.Imaginary, cst.SimpleString, cst.ConcatenatedString))


def is_early(node: cst.Return, outputs: Mapping[str, str]) -> bool:
    """A return of anything but the final return's locals (constant fields that are no output aside)."""
    values = returned_values(node, list(outputs))
    if values is None:
        return True
    return any(
        not matches(v, m.Name(outputs.get(field, "")))
        for field, v in values.items()
        if outputs.get(field) or not is_constant(v)
    )


@dataclass(frozen=True)
class Lowered:
    statements: list[cst.BaseStatement]  # the statements with the `if` lowered and what followed it inside
    old: cst.If
    new: cst.If
    handled: tuple[cst.Return, ...]  # returns of the same values left in the branch: dropped like any return


def lower_early_return(
    statements: Sequence[cst.BaseStatement], outputs: Mapping[str, str], handled: Sequence[cst.Return] = ()
) -> Lowered | EarlyReturnProblem | None:
    """`statements` with their first early return lowered (returns in `handled` are not looked at again); None
    when there is none.

    The early return must end a branch of a top-level `if`; other returns in that branch must return the same
    values (`if not return_dict: return (latents,)` ahead of `return Output(images=latents)`).
    """
    fields = list(outputs)
    for index, statement in enumerate(statements):
        early = [
            r for r in findall(statement, m.Return()) if is_early(r, outputs) and not any(r is h for h in handled)
        ]
        if not early:
            continue
        if not isinstance(statement, cst.If):
            return EarlyReturnProblem(early[0], "an early `return` that is not the last statement of an `if` branch")
        branches = [statement.body]
        if isinstance(statement.orelse, cst.Else):
            branches.append(statement.orelse.body)
        ending = [(b, _final_return(b)) for b in branches]
        terminal = [(b, r) for b, r in ending if r is not None and is_early(r, outputs)]
        if len(terminal) != 1 or isinstance(statement.orelse, cst.If):
            return EarlyReturnProblem(early[0], "an early `return` that is not the last statement of an `if` branch")
        block, node = terminal[0]
        values = returned_values(node, fields)
        # a field the final return fills with a constant (`audio=None`, mapped to no local) takes only constants
        if values is None or any(f not in outputs or not (outputs[f] or is_constant(v)) for f, v in values.items()):
            return EarlyReturnProblem(node, "an early `return` of values the final `return` does not name")
        for other in early:
            if other is node:
                continue
            other_values = returned_values(other, fields)
            inside = any(found is other for found in findall(block, m.Return()))
            same = other_values is not None and other_values.keys() == values.keys()
            if not (inside and same and all(same_expression(other_values[f], values[f]) for f in values)):
                return EarlyReturnProblem(other, "an early `return` of other values than the branch it is in")
        assignments = [
            cst.SimpleStatementLine([cst.Assign([cst.AssignTarget(cst.Name(outputs[f]))], v)])
            for f, v in values.items()
            if outputs[f]
        ]
        lowered = _lowered(statement, block, assignments, list(statements[index + 1 :]))
        return Lowered([*statements[:index], lowered], statement, lowered, tuple(early))
    return None


def _final_return(block: cst.BaseSuite) -> cst.Return | None:
    body = block.body
    if body and isinstance(body[-1], cst.SimpleStatementLine) and isinstance(body[-1].body[-1], cst.Return):
        return body[-1].body[-1]
    return None


def _lowered(
    branch: cst.If, returning: cst.BaseSuite, assignments: list[cst.BaseStatement], rest: list[cst.BaseStatement]
) -> cst.If:
    def without_return(block: cst.IndentedBlock) -> cst.IndentedBlock:
        last = block.body[-1]
        kept = [*last.body[:-1]]
        head = [last.with_changes(body=kept)] if kept else []
        return block.with_changes(body=[*block.body[:-1], *head, *assignments])

    def with_rest(block: cst.IndentedBlock) -> cst.IndentedBlock:
        return block.with_changes(body=[*block.body, *rest])

    orelse = branch.orelse
    if returning is branch.body:
        if orelse is None:
            new_else = cst.Else(cst.IndentedBlock(rest)) if rest else None
            return branch.with_changes(body=without_return(branch.body), orelse=new_else)
        return branch.with_changes(
            body=without_return(branch.body), orelse=orelse.with_changes(body=with_rest(orelse.body))
        )
    return branch.with_changes(
        body=with_rest(branch.body), orelse=orelse.with_changes(body=without_return(orelse.body))
    )
