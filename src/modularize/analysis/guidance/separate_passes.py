"""Analyze pass, part 2b: classifier-free guidance done in separate passes (one denoiser call per condition).

    with self.transformer.cache_context("cond"):
        noise_pred = self.transformer(hidden_states=latents, encoder_hidden_states=prompt_embeds, ...)[0]
    if do_true_cfg:
        with self.transformer.cache_context("uncond"):
            neg_noise_pred = self.transformer(hidden_states=latents, encoder_hidden_states=negative_prompt_embeds, ...)[0]
        noise_pred = neg_noise_pred + true_cfg_scale * (noise_pred - neg_noise_pred)

The two calls are compared argument by argument: what differs is paired and becomes a guider field
(`encoder_hidden_states`: `prompt_embeds` / `negative_prompt_embeds`), what is the same is shared. The combine picks
the guider: `u + s * (c - u)` is `ClassifierFreeGuidance`, `c + s * (c - u)` the same with
`use_original_formulation=True`, both bit for bit; anything more (a norm rescale after it) becomes a guider subclass
whose `forward` holds the source's statements verbatim (`CustomCombine`). The `cache_context` labels go with the
guider batches ("cond" for the conditional one, "uncond" for the other).
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from dataclasses import dataclass

import libcst as cst
import libcst.matchers as m

from ...cst.ast_key import ast_key
from ...cst.dataflow import flow_of, names_read
from ...cst.match_filter import matches
from ...cst.substitute import conjuncts, replace_nodes, same_expression, substitute_names
from ...cst.tree_walk import findall, walk
from ...frontend.class_facts import ClassFacts
from ...frontend.parse import SourceModule, code, snippet
from ...kinds import CfgKind
from ...normalize.cfg_condition import InlineCfgCondition, is_inline_condition
from ...planning.plan import GuidanceField
from .batched import CfgPattern, CustomCombine, _condition
from .combine import assigned_combine
from .combine_inputs import combine_inputs

_ASSIGNED = m.SimpleStatementLine(body=[m.Assign(targets=[m.AssignTarget(m.Name())])])


# names a verbatim combine may read besides the predictions and the scale
@dataclass(frozen=True)
class _ModelCall:
    statement: cst.BaseStatement  # as it sits in the loop (a `with` around the assignment, or the assignment)
    call: cst.Call
    output: str
    context: str | None  # the `cache_context` label
    post: tuple[cst.BaseStatement, ...] = ()  # inside the `with`, after the call: `out = out[:, : n]`


def find_separate_cfg(
    source: SourceModule,
    facts: ClassFacts,
    top_level: Sequence[cst.BaseStatement],
    loop: cst.For,
    dropped: set[int],
) -> CfgPattern | None:
    """The separate-passes pattern of this loop; None when the loop has no `if <cfg>:` around a second model call."""
    body = [s for s in loop.body.body if id(s) not in dropped]
    aliases = _model_aliases(facts, body)
    for position, branch in enumerate(body):
        if not isinstance(branch, cst.If):
            continue
        inner = list(branch.body.body)
        found = [(i, _model_call(s, facts, aliases)) for i, s in enumerate(inner)]
        found = [(i, call) for i, call in found if call is not None]
        flag, required = _flag_and_requirements(branch.test, [call for _, call in found])
        if found and not _may_be_cfg_flag(flag) and is_inline_condition(facts, top_level, flag):
            raise InlineCfgCondition(flag)  # `if self.guidance_scale > 1.0:`: named, and read again
        if not found or not _may_be_cfg_flag(flag):
            continue  # `if t < t_last: ... model(...)`: a branch, not guidance
        earlier = [(i, _model_call(s, facts, aliases)) for i, s in enumerate(body[:position])]
        earlier = [(i, call) for i, call in earlier if call is not None]
        if not earlier:
            raise source.refuse(branch, "an unconditional denoiser pass with no conditional one before it")
        if len(found) > 1:
            raise source.refuse(branch, "unrecognized separate-pass guidance (several calls under the CFG flag)")
        cond_output = earlier[-1][1].output
        if branch.orelse is not None and not _inert_else(branch, body, position, top_level, loop, cond_output):
            raise source.refuse(
                branch.orelse,
                "an `else` after the unconditional pass that computes what later code reads (with CFG off the "
                "guider returns the conditional prediction as it is)",
            )
        cond_at, cond = earlier[-1]
        uncond_at, uncond = found[0]
        # what the source does to each prediction right after its call (`out = out[:, : latents.size(1)]`)
        cond_post = [*cond.post, *body[cond_at + 1 : position]]
        uncond_post = [*uncond.post]
        while uncond_at + 1 < len(inner) and len(uncond_post) < len(cond_post):
            uncond_post.append(inner[uncond_at + 1])
            inner = [*inner[: uncond_at + 1], *inner[uncond_at + 2 :]]
        for mine, theirs in zip(cond_post, [*uncond_post, *[None] * len(cond_post)], strict=False):
            if theirs is None or not _same_for_output(mine, theirs, cond.output, uncond.output):
                raise source.refuse(mine, "a statement between the conditional and unconditional passes")
        cond = _ModelCall(cond.statement, cond.call, cond.output, cond.context, tuple(body[cond_at + 1 : position]))
        passes = (cond, uncond, inner, uncond_at)
        return _pattern(source, facts, top_level, body, branch, passes, aliases, flag, required)
    return None


_PRESENT = m.Comparison(left=m.Name(), comparisons=[m.ComparisonTarget(m.IsNot(), m.Name("None"))])


def _flag_and_requirements(
    test: cst.BaseExpression, calls: Sequence[_ModelCall]
) -> tuple[cst.BaseExpression, tuple[cst.BaseExpression, ...]]:
    """The CFG flag of a separate pass's test, and what the test requires besides: that an input of the
    unconditional call is there (Kandinsky 5 guides only when its negative embeddings are):

        if self.guidance_scale > 1.0 and negative_embeds is not None:  ->  (`self.guidance_scale > 1.0`,
            uncond = self.transformer(..., negative_embeds, ...)            (`negative_embeds is not None`,))

    The guider decides CFG from its scale alone: the package raises where the requirement fails with CFG on
    (`_requirement_gate`). Any other test is the flag itself, with no requirement."""
    parts = conjuncts(test)
    read = {name for call in calls for name in names_read(call.call)}
    required = tuple(p for p in parts if matches(p, _PRESENT) and p.left.value in read)
    flags = [p for p in parts if p not in required]
    if not required or len(flags) != 1:
        return test, ()
    return flags[0], required


def _inert_else(
    branch: cst.If,
    body: Sequence[cst.BaseStatement],
    position: int,
    top_level: Sequence[cst.BaseStatement],
    loop: cst.For,
    cond_output: str,
) -> bool:
    """An `else` the guider makes unnecessary: each statement in it assigns a name to itself, a name no later
    code reads before assigning it again (the rest of the step, the next steps, what follows the loop), or a name
    the branch assigns the conditional prediction (`cond_output`): with CFG off the guider's prediction is it.

        if do_cfg:                                  if do_cfg:
            neg = self.model(...)                       neg = self.model(...)
            pred = neg + s * (pred - neg)               pred = neg + s * (pred - neg)
        else:                                       (the `else` goes with the branch)
            pred = pred
            neg = None
            guided = pred                           (`guided`, assigned in the branch too)
    """
    statements = list(branch.orelse.body.body) if isinstance(branch.orelse, cst.Else) else None
    if statements is None or not all(matches(s, _ASSIGNED) and len(s.body) == 1 for s in statements):
        return False
    next_steps = [*body[position + 1 :], *body[:position], branch.with_changes(orelse=None)]
    after_loop = list(top_level)[list(top_level).index(_holding(top_level, loop)) + 1 :]
    live = set(flow_of(next_steps).reads) | {name for s in after_loop for name in names_read(s)}
    assigned_in_branch = set(flow_of(list(branch.body.body)).writes)
    for statement in statements:
        assign = statement.body[0]
        target = assign.targets[0].target.value
        conditional = matches(assign.value, m.Name(cond_output)) and target in assigned_in_branch
        if not (matches(assign.value, m.Name(target)) or target not in live or conditional):
            return False
    return True


def _holding(top_level: Sequence[cst.BaseStatement], node: cst.CSTNode) -> cst.BaseStatement:
    """The top-level statement `node` sits in."""
    return next(s for s in top_level if any(n is node for n in walk(s)))


def _may_be_cfg_flag(test: cst.BaseExpression) -> bool:
    """A CFG condition is a flag: a local (`do_true_cfg`) or a pipeline property (`self.do_classifier_free_guidance`)."""
    return isinstance(test, cst.Name) or matches(test, m.Attribute(value=m.Name("self"), attr=m.Name()))


def _same_for_output(cond: cst.CSTNode, uncond: cst.CSTNode, cond_output: str, uncond_output: str) -> bool:
    """The same statement, one on the conditional prediction, the other on the unconditional one."""
    assigned = m.SimpleStatementLine(body=[m.Assign(targets=[m.AssignTarget(m.Name(cond_output))])])
    renamed = substitute_names(uncond, {uncond_output: cst.Name(cond_output)}, rename_targets=True)
    return matches(cond, assigned) and _normalized(cond) == _normalized(renamed)


def _normalized(node: cst.CSTNode) -> object:
    return ast_key(ast.parse(code(node).strip()))


def _model_aliases(facts: ClassFacts, body: Sequence[cst.BaseStatement]) -> dict[str, tuple[str, ...]]:
    """Loop locals that only ever hold a denoiser component: `current_model = self.transformer` in one branch,
    `current_model = self.transformer_2` in the other -> {"current_model": ("transformer", "transformer_2")}."""
    values: dict[str, list[cst.BaseExpression]] = {}
    for statement in body:
        for assign in findall(statement, m.Assign(targets=[m.AssignTarget(m.Name())])):
            values.setdefault(assign.targets[0].target.value, []).append(assign.value)
    aliases = {}
    for name, assigned in values.items():
        components = [
            value.attr.value
            for value in assigned
            if matches(value, m.Attribute(value=m.Name("self"), attr=m.Name()))
            and value.attr.value in facts.init.models
        ]
        if len(components) == len(assigned):
            aliases[name] = tuple(dict.fromkeys(components))
    return aliases


def _model_call(
    statement: cst.BaseStatement, facts: ClassFacts, aliases: dict[str, tuple[str, ...]]
) -> _ModelCall | None:
    """`[with self.m.cache_context("cond"):] out = self.m(...)[0]` with `m` a component (not the scheduler), or a
    local alias of components (`current_model`)."""
    node, context, owner = statement, None, None
    post: tuple[cst.BaseStatement, ...] = ()
    if isinstance(node, cst.With):
        if len(node.items) != 1:
            return None
        post = tuple(node.body.body[1:])
        item = node.items[0].item
        context_call = m.Call(
            func=m.Attribute(attr=m.Name("cache_context")), args=[m.Arg(m.SimpleString()), m.ZeroOrMore()]
        )
        if not matches(item, context_call):
            return None
        context, owner = item.args[0].value.evaluated_value, item.func.value
        node = node.body.body[0]
    if not matches(node, _ASSIGNED):
        return None
    calls = [
        c
        for c in findall(node, m.Call(func=m.Attribute(value=m.Name("self"), attr=m.Name())))
        if c.func.attr.value in facts.init.models
    ]
    calls += [c for c in findall(node, m.Call(func=m.Name())) if c.func.value in aliases]
    if len(calls) != 1 or (owner is not None and not same_expression(owner, calls[0].func)):
        return None
    output = node.body[0].targets[0].target.value
    after = m.SimpleStatementLine(body=[m.Assign(targets=[m.AssignTarget(m.Name(output))])])
    if not all(matches(p, after) for p in post):
        return None
    return _ModelCall(statement, calls[0], output, context, post)


def _pattern(
    source: SourceModule,
    facts: ClassFacts,
    top_level: Sequence[cst.BaseStatement],
    body: Sequence[cst.BaseStatement],
    branch: cst.If,
    passes: tuple[_ModelCall, _ModelCall, list[cst.BaseStatement], int],
    aliases: dict[str, tuple[str, ...]],
    flag: cst.BaseExpression,
    required: Sequence[cst.BaseExpression],
) -> CfgPattern:
    cond, uncond, inner, uncond_at = passes
    if not same_expression(cond.call.func, uncond.call.func):
        raise source.refuse(uncond.call, "the unconditional pass calls another model than the conditional one")
    fields = _paired_arguments(source, cond.call, uncond.call, facts)
    uncond_statement = _uncond_call(cond, uncond, fields)
    condition_name, condition_expression, condition_statement = _condition(source, facts, flag, top_level)
    gates = tuple((statement, _gate(source, facts, statement)) for statement in inner[:uncond_at])
    gates += tuple((requirement, _requirement_gate(facts, requirement)) for requirement in required)
    combine_at = uncond_at + 1
    if combine_at >= len(inner):
        raise source.refuse(branch, "no guidance combine after the unconditional pass")
    parsed = _combine(inner[combine_at], cond.output, uncond.output)
    if parsed is None:
        raise source.refuse(
            inner[combine_at],
            "unrecognized guidance combine: expected `pred = uncond + scale * (cond - uncond)` "
            "(or `cond + scale * (cond - uncond)`)",
        )
    target, scale, formulation = parsed
    scales = step_scales(facts, body[: list(body).index(branch)], scale)
    after = body[list(body).index(branch) + 1 :]
    read_after = set(flow_of(list(after)).reads)
    results = [n for n in flow_of(inner[combine_at:]).writes if n in read_after]
    # the combine may name the guided prediction anew when, with CFG off, the `else` names the conditional one so
    # (`else: noise_pred = noise_pred_cond`, checked by `_inert_else`): with CFG off the guider's prediction is it
    renamed = target != cond.output and results == [target] and branch.orelse is not None
    if results != [cond.output] and not renamed:
        raise source.refuse(
            branch, f"the guided prediction must replace `{cond.output}` (the conditional prediction) after CFG"
        )
    guided = target if renamed else cond.output
    combine = None
    if len(inner) > combine_at + 1 or (target != cond.output and not renamed):
        if scales:
            raise source.refuse(inner[combine_at], "a custom guidance combine with a guidance scale chosen per step")
        combine = _custom_combine(source, facts, inner[combine_at:], cond.output, uncond.output, scale, guided)
    contexts = ()
    if cond.context is not None or uncond.context is not None:
        if cond.context is None or uncond.context is None:
            raise source.refuse(branch, "only one of the two passes runs in a `cache_context`")
        contexts = (("pred_cond", cond.context), ("pred_uncond", uncond.context))
    return CfgPattern(
        condition=flag,
        condition_name=condition_name,
        condition_expression=condition_expression,
        scale=scale,
        **denoiser_fields(cond.call, aliases),
        step_scales=scales,
        call_statement=cond.statement,
        model_output=cond.output,
        guided=guided,
        guidance_statements=(branch,),
        batch_order=("pred_cond", "pred_uncond"),
        fields=fields,
        condition_statement=condition_statement,
        kind=CfgKind.SEPARATE,
        formulation=formulation,
        combine=combine,
        cache_contexts=contexts,
        uncond_gates=gates,
        batch_after=cond.post,
        uncond_call_statement=uncond_statement,
    )


def _uncond_call(cond: _ModelCall, uncond: _ModelCall, fields: Sequence[GuidanceField]) -> cst.BaseStatement | None:
    """The unconditional pass as each guider batch makes it, when the passes give other keywords (None when they
    give the same: one call serves both): its paired variables and its prediction named as the conditional pass
    names them, which the batch binds to its own values:

        noise_pred = self.transformer(x, guidance=guidance, encoder_hidden_states=embeds)[0]
        neg_noise_pred = self.transformer(x, encoder_hidden_states=negative_embeds)[0]
    ->  noise_pred = self.transformer(x, encoder_hidden_states=embeds)[0]          (the unconditional batch's)
    """
    given = [{a.keyword.value for a in call.args if a.keyword is not None} for call in (cond.call, uncond.call)]
    if given[0] == given[1]:
        return None
    renamed = {field.uncond: cst.Name(field.cond) for field in fields}
    renamed[uncond.output] = cst.Name(cond.output)
    return substitute_names(uncond.statement, renamed, rename_targets=True)


def denoiser_fields(call: cst.Call, aliases: dict[str, tuple[str, ...]]) -> dict[str, object]:
    """The `CfgPattern` fields naming the denoiser a model call reaches: the component called (or the first one an
    alias holds), the alias if the call goes through one (`current_model`), and the components the alias can be."""
    if isinstance(call.func, cst.Name):
        local = call.func.value
        return {"denoiser": aliases[local][0], "denoiser_local": local, "denoisers": aliases.get(local, ())}
    return {"denoiser": call.func.attr.value, "denoiser_local": None, "denoisers": ()}


def step_scales(facts: ClassFacts, before: Sequence[cst.BaseStatement], scale: cst.BaseExpression) -> tuple[str, ...]:
    """A scale the loop picks per step: the `__call__` arguments it takes, in order; () for any other scale.

    `current_guidance_scale = guidance_scale` / `= guidance_scale_2` in the branches that pick the model (Wan), or
    `= self.guidance_scale` then `= 0.0` past a truncation point (Z-Image): arguments, per-call state over them and
    numbers.
    """
    arguments = {p.name for p in facts.call_parameters}
    if not isinstance(scale, cst.Name) or scale.value in arguments:
        return ()
    pattern = m.Assign(targets=[m.AssignTarget(m.Name(scale.value))])
    taken: list[str] = []
    for value in (a.value for statement in before for a in findall(statement, pattern)):
        if isinstance(value, (cst.Float, cst.Integer)):
            continue
        if matches(value, m.Attribute(value=m.Name("self"), attr=m.Name())):
            value = cst.Name(facts.per_call.get(value.attr.value, ""))
        if not (isinstance(value, cst.Name) and value.value in arguments):
            return ()
        taken.append(value.value)
    return tuple(dict.fromkeys(taken))


def _paired_arguments(
    source: SourceModule, cond: cst.Call, uncond: cst.Call, facts: ClassFacts
) -> tuple[GuidanceField, ...]:
    """The arguments that differ between the two calls, as (conditional, unconditional) variables. Per-call state
    read through its property in one pass and directly in the other (`self.attention_kwargs` /
    `self._attention_kwargs`) is one value."""
    if any(a.star for a in (*cond.args, *uncond.args)):
        raise source.refuse(uncond, "a denoiser pass called with `*args` / `**kwargs`")
    positional = [a for a in cond.args if a.keyword is None], [a for a in uncond.args if a.keyword is None]
    keywords = (
        {a.keyword.value: a for a in cond.args if a.keyword is not None},
        {a.keyword.value: a for a in uncond.args if a.keyword is not None},
    )
    if len(positional[0]) != len(positional[1]):
        raise source.refuse(uncond, "the two denoiser passes take different positional arguments")
    # (a keyword only one pass gives, `guidance=guidance`, stays in that pass's own call: `_uncond_call`)
    common = [k for k in keywords[0] if k in keywords[1]]
    pairs = list(zip(*positional, strict=True)) + [(keywords[0][k], keywords[1][k]) for k in common]
    fields: dict[str, GuidanceField] = {}
    for first, second in pairs:
        if same_expression(first.value, second.value):
            continue
        if same_expression(_per_call_read(first.value, facts), _per_call_read(second.value, facts)):
            continue
        renamed = _renamed_variables(first.value, second.value)
        if (
            renamed is None
            or renamed.keys() & set(names_read(uncond))
            or set(renamed.values()) & set(names_read(cond))
        ):
            raise source.refuse(
                second.value,
                f"the passes differ in `{code(first.value).strip()}` / `{code(second.value).strip()}`, which are not "
                "the same expression of variables a guider can pair",
            )
        for name, other in renamed.items():
            fields.setdefault(name, GuidanceField(name, name, other))
    return tuple(fields.values())


def _per_call_read(expression: cst.BaseExpression, facts: ClassFacts) -> cst.BaseExpression:
    """`self._attention_kwargs` and `self.attention_kwargs` (its property) -> `attention_kwargs`, the argument the
    per-call state holds."""
    attributes = findall(expression, m.Attribute(value=m.Name("self"), attr=m.Name()))
    found = {
        node: cst.Name(facts.per_call[node.attr.value]) for node in attributes if node.attr.value in facts.per_call
    }
    return replace_nodes(expression, found) if found else expression


def _renamed_variables(first: cst.BaseExpression, second: cst.BaseExpression) -> dict[str, str] | None:
    """{conditional variable: unconditional one} when `second` is `first` with some variables renamed, or None:

        `embeds`            / `negative_embeds`             -> {"embeds": "negative_embeds"}
        `embeds.to(dtype)`  / `negative_embeds.to(dtype)`   -> {"embeds": "negative_embeds"}
        `embeds.to(dtype)`  / `negative_embeds.float()`     -> None

    Each batch's call then computes the expression of its own value, as each pass did."""
    names = [[n.value for n in walk(e) if isinstance(n, cst.Name)] for e in (first, second)]
    if len(names[0]) != len(names[1]):
        return None
    renamed: dict[str, str] = {}
    for mine, theirs in zip(*names, strict=True):
        if mine != theirs and renamed.setdefault(mine, theirs) != theirs:
            return None
    back = {theirs: cst.Name(mine) for mine, theirs in renamed.items()}
    if not renamed or len(back) != len(renamed) or not same_expression(substitute_names(second, back), first):
        return None
    return renamed


def _combine(statement: cst.CSTNode, cond: str, uncond: str) -> tuple[str, cst.BaseExpression, str] | None:
    """`g = u + s * (c - u)` -> (g, s, "diffusers"); `g = c + s * (c - u)` -> (g, s, "original")."""
    found = assigned_combine(statement)
    formulation = found[1].formulation(cond, uncond) if found else None
    if formulation is None:
        return None
    return found[0], found[1].scale, formulation


def _custom_combine(
    source: SourceModule,
    facts: ClassFacts,
    statements: Sequence[cst.BaseStatement],
    cond: str,
    uncond: str,
    scale: cst.BaseExpression,
    guided: str,
) -> CustomCombine:
    """The combine the guider subclass runs verbatim; it returns `guided` (the conditional prediction's name, or the
    one the combine and the `else` both assign: `noise_pred = noise_pred_text` with CFG off)."""
    bindings = [(cond, "pred_cond"), (uncond, "pred_uncond")]
    if isinstance(scale, cst.Name):
        bindings.append((scale.value, "self.guidance_scale"))
    elif not matches(scale, m.Attribute(value=m.Name("self"), attr=m.Name("guidance_scale"))):
        raise source.refuse(scale, "a guidance scale a guider subclass cannot read (a name or `self.guidance_scale`)")
    bindings, inputs = combine_inputs(source, facts, statements, bindings, statements[0])
    return CustomCombine(tuple(statements), bindings, guided, inputs=inputs)


def _requirement_gate(facts: ClassFacts, requirement: cst.BaseExpression) -> cst.If:
    """With CFG on, an error where the source would have skipped its unconditional pass (`negative is not None`
    false): the guider would run it."""
    message = (
        f"{facts.name} skips classifier-free guidance unless `{snippet(requirement)}`; this generated package's "
        f"guider does not. Give it, or use {facts.name} for these inputs."
    )
    test = cst.UnaryOperation(cst.Not(), requirement.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()]))
    return cst.If(test=test, body=cst.IndentedBlock(body=[cst.parse_statement(f"raise ValueError({message!r})\n")]))


def _gate(source: SourceModule, facts: ClassFacts, statement: cst.BaseStatement) -> cst.If:
    """A statement the source ran only before its unconditional pass: an error wherever it would have acted."""
    if not isinstance(statement, cst.If) or statement.orelse is not None:
        raise source.refuse(statement, "a statement before the unconditional pass that is not an `if`")
    message = (
        f"{facts.name} runs `{snippet(statement)}` before its unconditional pass, which this generated package "
        f"does not reproduce. Use {facts.name} for these inputs."
    )
    raise_statement = cst.parse_statement(f"raise ValueError({message!r})\n")
    return statement.with_changes(body=cst.IndentedBlock(body=[raise_statement]))
