"""Analyze pass, part 2c: batched CFG written with an explicit unbatched path (`if cfg: ... else: ...` around the
model call's inputs and around its output), as Z-Image does:

    apply_cfg = self.do_classifier_free_guidance and current_guidance_scale > 0
    if apply_cfg:
        latents_typed = latents.to(self.transformer.dtype)
        latent_model_input = latents_typed.repeat(2, 1, 1, 1)
        prompt_embeds_model_input = prompt_embeds + negative_prompt_embeds
        timestep_model_input = timestep.repeat(2)
    else:
        latent_model_input = latents.to(self.transformer.dtype)
        prompt_embeds_model_input = prompt_embeds
        timestep_model_input = timestep
    latent_model_input_list = list(latent_model_input.unsqueeze(2).unbind(dim=0))
    model_out_list = self.transformer(latent_model_input_list, timestep_model_input, prompt_embeds_model_input)[0]
    if apply_cfg:
        pos_out = model_out_list[:actual_batch_size]
        neg_out = model_out_list[actual_batch_size:]
        ...  # combine, sample by sample
    else:
        noise_pred = torch.stack([t.float() for t in model_out_list], dim=0)

With CFG off the source already computes what one guider batch needs: the `else` branches. So every guider batch
runs the input `else` branch (the paired inputs bound from the batch: `prompt_embeds` / `negative_prompt_embeds`, read
off the `if` branch's `prompt_embeds + negative_prompt_embeds`), what follows it and the model call; the output `if`
becomes a guider subclass: the combine (the two slices bound to the guider's predictions) when CFG is on, the
`else` branch when it is off. What the combine reads besides the predictions is set on the guider for each step.
"""

from __future__ import annotations

from collections.abc import Sequence

import libcst as cst
import libcst.matchers as m

from ...cst.dataflow import flow_of
from ...cst.match_filter import matches
from ...cst.substitute import conjuncts, same_expression, substitute_names
from ...frontend.class_facts import ClassFacts
from ...frontend.parse import SourceModule, code
from ...kinds import CfgKind
from ...planning.plan import GuidanceField
from .batched import CfgPattern, CustomCombine, _condition
from .combine import DIFFUSERS, ORIGINAL, combines_in
from .combine_inputs import COMBINE_GLOBALS, combine_inputs
from .doubled_batch import TORCH_CAT, cat_elements
from .separate_passes import _model_aliases, _model_call, denoiser_fields, step_scales


def find_branched_cfg(
    source: SourceModule,
    facts: ClassFacts,
    top_level: Sequence[cst.BaseStatement],
    loop: cst.For,
    dropped: set[int],
) -> CfgPattern | None:
    """The pattern, or None when the loop has no `if <flag>: ... else: ...` on both sides of one model call."""
    body = [s for s in loop.body.body if id(s) not in dropped]
    aliases = _model_aliases(facts, body)
    calls = [(i, c) for i, c in ((i, _model_call(s, facts, aliases)) for i, s in enumerate(body)) if c is not None]
    if len(calls) != 1:
        return None
    at, call = calls[0]
    before = [(i, s) for i, s in enumerate(body[:at]) if isinstance(s, cst.If) and isinstance(s.orelse, cst.Else)]
    after = [(at + 1 + i, s) for i, s in enumerate(body[at + 1 :]) if isinstance(s, cst.If)]
    pairs = [(b, a) for b in before for a in after if same_expression(b[1].test, a[1].test)]
    if not pairs:
        return None
    (in_at, inputs), (out_at, outputs) = pairs[-1]
    if call.context is not None:
        # guider batches share one call when they can merge; one cache context cannot be right for both
        raise source.refuse(call.statement, "a `cache_context` around a model call that runs both CFG batches")
    if not isinstance(outputs.orelse, cst.Else):
        # `if cfg: u, c = out.chunk(2); out = ...` keeps the output as it is with CFG off: batched CFG's shape
        return None
    condition, extra = _flag(source, facts, body[:in_at], inputs.test)
    condition_name, condition_expression, condition_statement = _condition(source, facts, condition, top_level)
    fields, first_uncond = _paired_inputs(source, inputs)
    combine, scale, formulation, result = _output_combine(source, facts, outputs, call.output, first_uncond)
    scales = step_scales(facts, body[:in_at], scale)
    if extra is not None and not _zero_scale_turns_off(extra, scale, scales, formulation):
        raise source.refuse(
            extra, "a condition on CFG inside the loop that a guider cannot follow (only `<per-step scale> > 0`)"
        )
    read_after = set(flow_of(list(body[out_at + 1 :])).reads)
    if result not in read_after:
        raise source.refuse(outputs, "the guided prediction is not read after the CFG branch")
    return CfgPattern(
        condition=condition,
        condition_name=condition_name,
        condition_expression=condition_expression,
        scale=scale,
        **denoiser_fields(call.call, aliases),
        step_scales=scales,
        call_statement=call.statement,
        model_output=call.output,
        guided=result,
        guidance_statements=(inputs, outputs),
        batch_order=("pred_uncond", "pred_cond") if first_uncond else ("pred_cond", "pred_uncond"),
        fields=fields,
        condition_statement=condition_statement,
        kind=CfgKind.BRANCHED,
        formulation=formulation,
        combine=combine,
        batch_statements=(*inputs.orelse.body.body, *body[in_at + 1 : at]),
        first_statement=inputs,
        model_call=call.call,
    )


def _flag(
    source: SourceModule, facts: ClassFacts, before: Sequence[cst.BaseStatement], test: cst.BaseExpression
) -> tuple[cst.BaseExpression, cst.BaseExpression | None]:
    """(the CFG condition, what else the loop's flag requires): `apply_cfg = self.do_cfg and scale > 0` ->
    (`self.do_cfg`, `scale > 0`); a test that is the condition itself -> (test, None)."""
    if not isinstance(test, cst.Name):
        return test, None
    pattern = m.SimpleStatementLine(body=[m.Assign(targets=[m.AssignTarget(m.Name(test.value))])])
    assignments = [s for s in before if matches(s, pattern)]
    if len(assignments) != 1 or any(test.value in flow_of([s]).writes for s in before if s is not assignments[0]):
        return test, None  # a flag set before the loop: the CFG condition itself
    parts = conjuncts(assignments[0].body[0].value)
    conditions = [p for p in parts if matches(p, m.Attribute(value=m.Name("self"))) or isinstance(p, cst.Name)]
    if len(conditions) != 1 or len(parts) > 2:
        raise source.refuse(assignments[0], "a CFG flag in the loop that is not `<cfg condition> and <test>`")
    extra = [p for p in parts if p is not conditions[0]]
    return conditions[0], extra[0] if extra else None


def _zero_scale_turns_off(
    extra: cst.BaseExpression, scale: cst.BaseExpression, scales: tuple[str, ...], formulation: str
) -> bool:
    """`current_guidance_scale > 0` with a per-step scale and the original formulation: a guider set to scale 0
    turns CFG off for the step itself (`ClassifierFreeGuidance` with `use_original_formulation` does)."""
    pattern = m.Comparison(
        left=m.Name(code(scale).strip()),
        comparisons=[m.ComparisonTarget(operator=m.GreaterThan(), comparator=m.Integer("0") | m.Float("0.0"))],
    )
    return bool(scales) and formulation == "original" and matches(extra, pattern)


def _paired_inputs(source: SourceModule, branch: cst.If) -> tuple[tuple[GuidanceField, ...], bool]:
    """Compare each input the `if` branch batches with what the `else` branch assigns it: a concatenation of two
    variables pairs them (its order says which comes first), a `.repeat(2, ...)` of the `else` value is shared."""
    batched = _assignments(source, branch.body.body)
    plain = _assignments(source, branch.orelse.body.body)
    temporaries = {name: value for name, value in batched.items() if name not in plain}
    fields: dict[str, GuidanceField] = {}
    orders: set[bool] = set()
    for name, value in plain.items():
        if name not in batched:
            raise source.refuse(branch, f"`{name}` is assigned with CFG off only")
        value_on = substitute_names(batched[name], temporaries)
        pair = _concatenated_pair(value_on)
        if pair is not None:
            first, second = pair
            if same_expression(value, first) or same_expression(value, second):
                uncond_first = same_expression(value, second)
                cond, uncond = (second, first) if uncond_first else (first, second)
                fields.setdefault(cond.value, GuidanceField(cond.value, cond.value, uncond.value))
                orders.add(uncond_first)
                continue
        if _repeats(value_on, value):
            continue
        raise source.refuse(
            batched[name], f"`{name}` is batched for CFG in a way that cannot be split per guider batch"
        )
    if len(orders) > 1:
        raise source.refuse(branch, "the CFG batch concatenates conditional and unconditional inputs in both orders")
    if not fields:
        raise source.refuse(branch, "nothing differs between the conditional and unconditional inputs")
    return tuple(fields.values()), orders == {True}


def _assignments(source: SourceModule, statements: Sequence[cst.BaseStatement]) -> dict[str, cst.BaseExpression]:
    pattern = m.SimpleStatementLine(body=[m.Assign(targets=[m.AssignTarget(m.Name())])])
    found = {}
    for statement in statements:
        if not matches(statement, pattern):
            raise source.refuse(statement, "a CFG branch around the model inputs with more than assignments")
        found[statement.body[0].targets[0].target.value] = statement.body[0].value
    return found


def _concatenated_pair(value: cst.BaseExpression) -> tuple[cst.Name, cst.Name] | None:
    """`a + b` (lists) or `torch.cat([a, b])` -> (a, b)."""
    if matches(value, m.BinaryOperation(left=m.Name(), operator=m.Add(), right=m.Name())):
        return value.left, value.right
    if not (matches(value, TORCH_CAT) and value.args and isinstance(value.args[0].value, cst.List)):
        return None  # (a repeat is not a pair: `_repeats`)
    elements = cat_elements(value)
    if elements is not None and len(elements) == 2 and all(isinstance(e, cst.Name) for e in elements):
        return elements[0], elements[1]
    return None


def _repeats(value: cst.BaseExpression, plain: cst.BaseExpression) -> bool:
    """`<plain>.repeat(2, 1, ...)` or `torch.cat([<plain>] * 2)`: the same input for both batches."""
    elements = cat_elements(value)
    return elements is not None and len(elements) == 2 and all(same_expression(e, plain) for e in elements)


def _output_combine(
    source: SourceModule, facts: ClassFacts, branch: cst.If, output: str, uncond_first: bool
) -> tuple[CustomCombine, cst.BaseExpression, str, str]:
    """The output branch as a guider: (the combine, the scale it uses, the formulation, the guided result)."""
    statements = list(branch.body.body)
    slices = [_slice_of(s, output) for s in statements[:2]]
    if None in slices or {kind for _, kind in slices} != {"head", "tail"}:
        raise source.refuse(branch, f"expected `{output}` split into its two halves (`[:n]`, `[n:]`) first")
    head = next(name for name, kind in slices if kind == "head")
    tail = next(name for name, kind in slices if kind == "tail")
    cond, uncond = (tail, head) if uncond_first else (head, tail)
    rest = statements[2:]
    found = _formula(rest, cond, uncond)
    if found is None:
        raise source.refuse(branch, "no `c + s * (c - u)` or `u + s * (c - u)` guidance formula in the CFG branch")
    scale, formulation = found
    off = list(branch.orelse.body.body)
    results = set(flow_of(rest).writes) & set(flow_of(off).writes)
    result = next((n for n in flow_of(off).writes if n in results), None)
    if result is None:
        raise source.refuse(branch, "the two branches around the model output assign no common result")
    bindings = [(cond, "pred_cond"), (uncond, "pred_uncond")]
    if isinstance(scale, cst.Name):
        bindings.append((scale.value, "self.guidance_scale"))
    bindings, inputs = combine_inputs(source, facts, rest, bindings, branch)
    off_reads = [n for n in flow_of(off, bound=[output]).reads if n not in COMBINE_GLOBALS]
    if off_reads:
        raise source.refuse(branch.orelse, f"with CFG off the output branch reads {off_reads}, which a guider lacks")
    combine = CustomCombine(
        tuple(rest),
        tuple(bindings),
        result,
        off_statements=tuple(off),
        off_bindings=((output, "pred_cond"),),
        inputs=tuple(inputs),
    )
    return combine, scale, formulation, result


def _slice_of(statement: cst.BaseStatement, output: str) -> tuple[str, str] | None:
    """`a = out[:n]` -> (a, "head"); `b = out[n:]` -> (b, "tail")."""
    pattern = m.SimpleStatementLine(
        body=[
            m.Assign(
                targets=[m.AssignTarget(m.Name())],
                value=m.Subscript(value=m.Name(output), slice=[m.SubscriptElement(m.Slice())]),
            )
        ]
    )
    if not matches(statement, pattern):
        return None
    piece = statement.body[0].value.slice[0].slice
    name = statement.body[0].targets[0].target.value
    if piece.lower is None and piece.upper is not None:
        return name, "head"
    if piece.lower is not None and piece.upper is None:
        return name, "tail"
    return None


def _formula(statements: Sequence[cst.BaseStatement], cond: str, uncond: str) -> tuple[cst.BaseExpression, str] | None:
    """Where the combine says `L + s * (A - B)`: (s, "original" if L is A else "diffusers"). The halves may be
    taken sample by sample first (`pos = pos_out[j].float()`), so any names qualify."""
    for formula in combines_in(statements):
        if formula.base == formula.minuend:
            return formula.scale, ORIGINAL
        if formula.base == formula.subtrahend:
            return formula.scale, DIFFUSERS
    return None
