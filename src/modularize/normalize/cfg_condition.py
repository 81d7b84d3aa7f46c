"""Name a CFG condition written inline: `if guidance_scale > 1.0:` becomes a local set once, as most pipelines
write it (`do_classifier_free_guidance = guidance_scale > 1.0`), so the guidance detectors find one condition
whatever its spelling, and the package decides it once, from the guider:

    if guidance_scale > 1.0:
        prompt_embeds = torch.cat([negative_prompt_embeds, prompt_embeds])
    for t in timesteps:
        model_input = torch.cat([latents] * 2) if guidance_scale > 1.0 else latents
        out = self.transformer(model_input, ...)
        if guidance_scale > 1.0:
            uncond, cond = out.chunk(2)
            out = uncond + guidance_scale * (cond - uncond)

becomes

    do_classifier_free_guidance = guidance_scale > 1.0
    if do_classifier_free_guidance:
        prompt_embeds = torch.cat([negative_prompt_embeds, prompt_embeds])
    for t in timesteps:
        model_input = torch.cat([latents] * 2) if do_classifier_free_guidance else latents
        ...
        if do_classifier_free_guidance:
            ...

Which test is the CFG condition, a guidance detector finds (the test of the branch that combines the prediction's
halves); when it is inline, over call parameters `__call__` never reassigns (so evaluating it once gives its value
everywhere) and made only of comparisons, `and`/`or`/`not` and numbers, the detector raises `InlineCfgCondition`,
and the analysis starts again on `__call__` with every occurrence of the test reading the local, which is set just
before the first of them.
"""

from __future__ import annotations

from collections.abc import Sequence

import libcst as cst
import libcst.matchers as m

from ..analysis.loop_header import fresh_name
from ..cst.dataflow import flow_of
from ..cst.match_filter import matches
from ..cst.substitute import replace_with_origins, same_expression
from ..cst.tree_walk import walk
from ..frontend.class_facts import ClassFacts

PREFERRED_NAME = "do_classifier_free_guidance"

_PURE = (
    cst.Name,
    cst.Integer,
    cst.Float,
    cst.Comparison,
    cst.ComparisonTarget,
    cst.BooleanOperation,
    cst.UnaryOperation,
    cst.BaseCompOp,
    cst.BaseBooleanOp,
    cst.Not,
    cst.Minus,
    cst.LeftParen,
    cst.RightParen,
    cst.BaseParenthesizableWhitespace,
)
_NESTED_SCOPES = (cst.FunctionDef, cst.ClassDef, cst.Lambda)
_SELF_ATTRIBUTE = m.Attribute(value=m.Name("self"), attr=m.Name())


class InlineCfgCondition(Exception):  # noqa: N818 - a signal to the analysis, not an error
    """Raised by a guidance detector whose CFG condition is an inline test (`guidance_scale > 1.0`): the analysis
    names it (`with_named_condition`) and starts again."""

    def __init__(self, test: cst.BaseExpression):
        super().__init__("an inline CFG condition")
        self.test = test


def is_inline_condition(facts: ClassFacts, body: Sequence[cst.BaseStatement], test: cst.BaseExpression) -> bool:
    """A test of comparisons, `and`/`or`/`not` and numbers over call parameters `__call__` never reassigns, or over
    per-call state it sets once (`self.guidance_scale > 1.0`, a property returning `self._guidance_scale`):
    evaluated once, before its first use, it has its value everywhere."""
    reads = _pure_reads(test)
    if not reads:
        return False
    names, attributes = reads
    parameters = {p.name for p in facts.call_parameters if not p.star}
    if not names <= parameters - set(flow_of(list(body)).writes):
        return False
    return all(_set_once(facts, body, attribute) for attribute in attributes)


def _pure_reads(test: cst.BaseExpression) -> tuple[set[str], set[str]] | None:
    """(names, `self` attributes) a test of comparisons over names, `self.<name>` and numbers reads; None for any
    other test."""
    nodes = list(walk(test))
    if not any(isinstance(node, cst.Comparison) for node in nodes):
        return None
    attributes = [node for node in nodes if matches(node, _SELF_ATTRIBUTE)]
    inside = {id(part) for attribute in attributes for part in walk(attribute) if part is not attribute}
    if not all(isinstance(node, _PURE) or matches(node, _SELF_ATTRIBUTE) for node in nodes if id(node) not in inside):
        return None
    names = {node.value for node in nodes if isinstance(node, cst.Name) and id(node) not in inside}
    return names, {attribute.attr.value for attribute in attributes}


def _set_once(facts: ClassFacts, body: Sequence[cst.BaseStatement], attribute: str) -> bool:
    """`self.<attribute>` is per-call state (or a property returning it) that `__call__` assigns exactly once, at its
    top level (`self._guidance_scale = guidance_scale`)."""
    if attribute not in facts.per_call:
        return False
    state = {attribute, *(name for name, value in facts.per_call.items() if value == facts.per_call[attribute])}
    assigned = [
        statement
        for statement in body
        for node in _walk_statements([statement])
        if matches(node, m.AssignTarget(m.Attribute(m.Name("self"), m.Name()))) and node.target.attr.value in state
    ]
    on_its_own_line = m.SimpleStatementLine([m.Assign([m.AssignTarget(m.Attribute(m.Name("self")))])])
    return len(assigned) == 1 and matches(assigned[0], on_its_own_line)


def with_named_condition(
    facts: ClassFacts, body: Sequence[cst.BaseStatement], condition: cst.BaseExpression, taken: set[str]
) -> tuple[list[cst.BaseStatement], dict[cst.CSTNode, cst.CSTNode]]:
    """`body` with every occurrence of `condition` reading a local set just before the first one, and the origin
    of every new node ({new: old}, so that errors report the lines the nodes came from)."""
    name = fresh_name(PREFERRED_NAME, taken | {p.name for p in facts.call_parameters})
    # `guidance_scale == 1.0` where the condition is `guidance_scale != 1.0` reads `not <name>`
    negation = _negation(condition)
    occurrences: list[cst.BaseExpression] = []
    replacements: dict[cst.CSTNode, cst.CSTNode] = {}
    for node in _walk_statements(body):
        if type(node) is not type(condition):
            continue
        if same_expression(node, condition):
            occurrences.append(node)
            replacements[node] = cst.Name(name, lpar=node.lpar, rpar=node.rpar)
        elif negation is not None and same_expression(node, negation):
            replacements[node] = cst.UnaryOperation(cst.Not(), cst.Name(name), lpar=node.lpar, rpar=node.rpar)
    new_body, origins = replace_with_origins(body, replacements)
    origins.update({new: old for old, new in replacements.items()})
    first = next(at for at, (old, new) in enumerate(zip(body, new_body, strict=True)) if old is not new)
    statement = new_body[first]
    value = occurrences[0].with_changes(lpar=(), rpar=())
    assignment = cst.SimpleStatementLine(
        [cst.Assign([cst.AssignTarget(cst.Name(name))], value)], leading_lines=statement.leading_lines
    )
    moved = statement.with_changes(leading_lines=())  # the stage's comment stays above the stage's first line
    origins.update({assignment: body[first], moved: body[first], value: occurrences[0]})
    return [*new_body[:first], assignment, moved, *new_body[first + 1 :]], origins


_NEGATED = {
    cst.Equal: cst.NotEqual,
    cst.NotEqual: cst.Equal,
    cst.GreaterThan: cst.LessThanEqual,
    cst.LessThanEqual: cst.GreaterThan,
    cst.LessThan: cst.GreaterThanEqual,
    cst.GreaterThanEqual: cst.LessThan,
}


def _negation(condition: cst.BaseExpression) -> cst.Comparison | None:
    """`a != b` -> `a == b` (one comparison of two operands; for numbers, the negation)."""
    if not isinstance(condition, cst.Comparison) or len(condition.comparisons) != 1:
        return None
    target = condition.comparisons[0]
    negated = _NEGATED.get(type(target.operator))
    if negated is None:
        return None
    return condition.with_changes(comparisons=[target.with_changes(operator=negated())])


def _walk_statements(body: Sequence[cst.BaseStatement]):
    """Every node of `body` outside nested functions, classes and lambdas (which may bind the names anew)."""
    for statement in body:
        yield from walk(statement, skip=lambda node: type(node) in _NESTED_SCOPES)
