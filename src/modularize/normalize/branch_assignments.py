"""Write a CFG branch that only assigns the model's inputs as one conditional expression per input, the shape the
batched-CFG detector reads (`x = torch.cat([latents] * 2) if cfg else latents`):

    for i, t in enumerate(timesteps):
        if do_cfg:
            model_input = torch.cat([latents, latents])
            embeds = torch.cat([negative_prompt_embeds, prompt_embeds])
        else:
            model_input = latents
            embeds = prompt_embeds
        out = self.transformer(model_input, encoder_hidden_states=embeds)
        if do_cfg:
            uncond, cond = out.chunk(2)
            out = uncond + guidance_scale * (cond - uncond)

becomes, in the loop,

        model_input = torch.cat([latents, latents]) if do_cfg else latents
        embeds = torch.cat([negative_prompt_embeds, prompt_embeds]) if do_cfg else prompt_embeds

The same values: both branches assign the same names in the same order and nothing else, the test is a name or a
`self.` attribute (or `not` one, the branches then swapped) neither branch assigns, so testing it again before each
assignment gives the same branch. Only
an input branch whose test guards a later `if` without an `else` in the loop is rewritten (with CFG off that `if`
keeps the model output as it is: the batched shape); an output `if` with an `else` is the branched detector's
shape (`analysis.guidance.branched`), which reads the input branch as written.
"""

from __future__ import annotations

from collections.abc import Sequence

import libcst as cst
import libcst.matchers as m

from ..analysis.segment import find_timestep_loop
from ..cst.match_filter import matches
from ..cst.substitute import same_expression
from ..cst.tree_walk import walk

_ASSIGNMENT = m.SimpleStatementLine(body=[m.Assign(targets=[m.AssignTarget(m.Name())])])
_FLAG = m.Name() | m.Attribute(value=m.Name("self"), attr=m.Name())
_TEST = _FLAG | m.UnaryOperation(operator=m.Not(), expression=_FLAG)


def branch_assignments(body: Sequence[cst.BaseStatement]) -> list[cst.If]:
    """The input branches of the denoising loop to write as conditional expressions (see the module docstring)."""
    found: list[cst.If] = []
    for statement in body:
        loop = find_timestep_loop(statement)
        if loop is None:
            continue
        for block in walk(loop.body, skip=lambda node: type(node) in (cst.FunctionDef, cst.Lambda)):
            if not isinstance(block, cst.IndentedBlock):
                continue
            statements = list(block.body)
            for at, branch in enumerate(statements):
                if _assignments_only(branch) and any(
                    isinstance(later, cst.If) and later.orelse is None and same_expression(later.test, _flag(branch))
                    for later in statements[at + 1 :]
                ):
                    found.append(branch)
    return found


def _assignments_only(branch: cst.CSTNode) -> bool:
    if not (isinstance(branch, cst.If) and isinstance(branch.orelse, cst.Else) and matches(branch.test, _TEST)):
        return False
    on, off = list(branch.body.body), list(branch.orelse.body.body)
    if not on or not all(matches(s, _ASSIGNMENT) for s in [*on, *off]):
        return False
    targets = [_target(s) for s in on]
    if targets != [_target(s) for s in off] or len(set(targets)) != len(targets):
        return False
    flag = _flag(branch)
    tested = flag.value if isinstance(flag, cst.Name) else None
    return tested not in targets


def _flag(branch: cst.If) -> cst.BaseExpression:
    """The flag a branch tests, `x` for `if not x:` too."""
    return branch.test.expression if isinstance(branch.test, cst.UnaryOperation) else branch.test


def _target(statement: cst.SimpleStatementLine) -> str:
    return statement.body[0].targets[0].target.value


def as_conditional_expressions(branch: cst.If) -> list[tuple[cst.SimpleStatementLine, cst.SimpleStatementLine]]:
    """One `name = <if value> if <test> else <else value>` per assignment, in order, each with the assignment of
    the flag's branch it comes from; the branch's comment lines stay above the first."""
    statements = []
    pairs = zip(branch.body.body, branch.orelse.body.body, strict=True)
    if isinstance(branch.test, cst.UnaryOperation):  # `if not cfg: a = x else: a = y` -> `a = y if cfg else x`
        pairs = ((off, on) for on, off in pairs)
    for at, (on, off) in enumerate(pairs):
        value = cst.IfExp(
            test=_flag(branch),
            body=_parenthesized(on.body[0].value),
            orelse=_parenthesized(off.body[0].value),
        )
        leading = branch.leading_lines if at == 0 else on.leading_lines
        statements.append((on.with_changes(body=[on.body[0].with_changes(value=value)], leading_lines=leading), on))
    return statements


def _parenthesized(value: cst.BaseExpression) -> cst.BaseExpression:
    """Conditional expressions and lambdas bind looser than `x if c else y`'s operands."""
    if isinstance(value, (cst.IfExp, cst.Lambda, cst.NamedExpr)) and not value.lpar:
        return value.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])
    return value
