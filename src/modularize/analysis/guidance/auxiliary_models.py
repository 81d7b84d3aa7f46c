"""Auxiliary models in a batched-CFG step: a model whose output feeds the denoiser in the same step (a ControlNet)
runs once per guider batch, with its inputs paired like the denoiser's.

A ControlNet step in batched CFG (the guess-mode branches are optional):

    latent_model_input = torch.cat([latents] * 2) if self.do_classifier_free_guidance else latents
    latent_model_input = self.scheduler.scale_model_input(latent_model_input, t)
    if guess_mode and self.do_classifier_free_guidance:          # the conditional half only
        control_model_input = self.scheduler.scale_model_input(latents, t)
        controlnet_prompt_embeds = prompt_embeds.chunk(2)[1]
    else:
        control_model_input = latent_model_input
        controlnet_prompt_embeds = prompt_embeds
    down, mid = self.controlnet(control_model_input, t, encoder_hidden_states=controlnet_prompt_embeds, ...)
    if guess_mode and self.do_classifier_free_guidance:          # zeros for the unconditional half
        down = [torch.cat([torch.zeros_like(d), d]) for d in down]
        mid = torch.cat([torch.zeros_like(mid), mid])
    noise_pred = self.unet(latent_model_input, t, ..., down_block_additional_residuals=down, ...)

From the first of these statements to the denoiser call, each guider batch runs them on its own inputs (the
denoiser calls of the batches then merge into one when they can):

    control_model_input = latent_model_input
    controlnet_prompt_embeds = prompt_embeds
    down, mid = self.controlnet(control_model_input, t, encoder_hidden_states=controlnet_prompt_embeds, ...)
    if guess_mode and guider_batch_name(components.guider, guider_state_batch) == "pred_uncond":
        down = [torch.zeros_like(d) for d in down]
        mid = torch.zeros_like(mid)

- An `if <cfg> ...: ... else: ...` there runs its `else` in every batch. That is what the source computes only
  when the `if` side computes, on the doubled batch, the conditional half of what the `else` side computes per
  batch: its halves taken with `.chunk(2)[<conditional>]` and its names read through the step's own definitions
  (`latent_model_input` above is `self.scheduler.scale_model_input(latents, t)` in a batch). Anything else is
  refused.
- An `if <cfg> ...:` without `else` that concatenates for the doubled batch gives each batch its own element: the
  conditional batch keeps its value, the unconditional one gets the fill the source put in its place. Only fills
  that depend on nothing but the shape (`torch.zeros_like(d)`) are the same computed from either batch's `d`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import libcst as cst
import libcst.matchers as m

from ...cst.dataflow import flow_of, names_read
from ...cst.match_filter import matches
from ...cst.substitute import conjuncts, has_conjunct, replace_nodes, same_expression, substitute_names
from ...cst.tree_walk import findall
from ...frontend.parse import SourceModule
from .doubled_batch import FILLS_LIKE, TORCH_CAT, cat_elements, halved_batch

UNCOND_BATCH = 'guider_batch_name(components.guider, guider_state_batch) == "pred_uncond"'
_SHAPE_FILLS = m.Call(func=m.Attribute(value=m.Name("torch"), attr=m.OneOf(*map(m.Name, sorted(FILLS_LIKE)))))
_ASSIGNED_NAME = m.SimpleStatementLine(body=[m.Assign(targets=[m.AssignTarget(m.Name())])])


@dataclass(frozen=True)
class SharedAuxiliaryCall:
    """The one auxiliary call of a step, which the guider batches can make as one call (as the source did).

    Each batch runs `before`, holds its call, the calls run (merged when they can), and each batch takes its
    share of the outputs and runs `after`: nothing `before` computes is read after the call but the call's own
    outputs. A batch for which `skip` holds replaces every output by a fill of its shape, and makes no call."""

    model: str
    statement: cst.SimpleStatementLine  # `down, mid = self.controlnet(...)`
    call: cst.Call  # the call in it, held for each batch
    before: tuple[cst.BaseStatement, ...]
    after: tuple[cst.BaseStatement, ...]
    skip: cst.BaseExpression | None = None


@dataclass(frozen=True)
class AuxiliarySteps:
    start: int  # where the per-batch statements start in the loop body (they end at the denoiser call)
    statements: tuple[cst.BaseStatement, ...]  # what each guider batch runs before its denoiser call
    rewritten: tuple[tuple[cst.If, str], ...] = ()  # (a CFG branch of the source, what each batch runs instead)
    shared: SharedAuxiliaryCall | None = None  # None: each batch makes its auxiliary calls on its own


def auxiliary_steps(
    source: SourceModule,
    body: Sequence[cst.BaseStatement],
    first_call: int,
    call_index: int,
    condition: cst.BaseExpression,
    uncond_index: int,
    models: Sequence[str],
) -> AuxiliarySteps:
    """The per-batch statements of a step whose first auxiliary model call is `body[first_call]` and whose
    denoiser call is `body[call_index]`; they start at the auxiliary call or at the CFG branches before it that
    assign what it reads."""
    read_by_call = set(names_read(body[first_call]))
    feeding = [
        at
        for at, statement in enumerate(body[:first_call])
        if _is_cfg_branch(statement, condition) and set(flow_of([statement]).writes) & read_by_call
    ]
    start = min([*feeding, first_call])
    definitions = _definitions(body[:start], condition)
    statements: list[cst.BaseStatement] = []
    rewritten: list[tuple[cst.If, str]] = []
    for statement in body[start:call_index]:
        if _is_cfg_branch(statement, condition) and isinstance(statement.orelse, cst.Else):
            _check_conditional_half(source, statement, definitions, 1 - uncond_index)
            statements += statement.orelse.body.body
            rewritten.append((statement, "each guider batch runs the `else`: the `if` computes its conditional half"))
        elif _is_cfg_branch(statement, condition) and statement.orelse is None:
            statements.append(_unconditional_fill(source, statement, condition, uncond_index))
            why = "the unconditional guider batch gets the fill, the conditional one keeps its value"
            rewritten.append((statement, why))
        elif any(_mentions(node, condition) for node in findall(statement, m.If() | m.IfExp())):
            raise source.refuse(
                statement, "a CFG-dependent statement between an auxiliary model call and the denoiser's"
            )
        else:
            statements.append(statement)
    shared = _shared_call(statements, body[call_index], models)
    return AuxiliarySteps(start, tuple(statements), tuple(rewritten), shared)


def _shared_call(
    statements: list[cst.BaseStatement], denoiser_call: cst.BaseStatement, models: Sequence[str]
) -> SharedAuxiliaryCall | None:
    """The step's one auxiliary call as a `SharedAuxiliaryCall`, or None when the batches cannot share it (more
    than one such call, a call not assigned on a line of its own, or a value computed before it and read after)."""
    call = m.Call(func=m.Attribute(value=m.Name("self"), attr=m.OneOf(*map(m.Name, models))))
    # `down, mid = self.controlnet(...)` or `samples = self.controlnet(...)[0]`
    calling = m.SimpleStatementLine(body=[m.Assign(value=call | m.Subscript(value=call))])
    holding = [at for at, s in enumerate(statements) if _calls_any(s, models)]
    if len(holding) != 1 or not matches(statements[holding[0]], calling):
        return None
    at = holding[0]
    statement = statements[at]
    before, after = tuple(statements[:at]), tuple(statements[at + 1 :])
    outputs = set(flow_of([statement]).writes)
    if set(flow_of(list(before)).writes) & set(flow_of([*after, denoiser_call]).reads) - outputs:
        return None
    skip = next(
        (
            s.test
            for s in after
            if isinstance(s, cst.If) and _fills(s) and outputs <= set(flow_of(list(s.body.body)).writes)
        ),
        None,
    )
    value = statement.body[0].value
    held = value.value if isinstance(value, cst.Subscript) else value
    return SharedAuxiliaryCall(held.func.attr.value, statement, held, before, after, skip)


def _calls_any(statement: cst.BaseStatement, models: Sequence[str]) -> bool:
    pattern = m.Call(func=m.Attribute(value=m.Name("self"), attr=m.OneOf(*map(m.Name, models))))
    return bool(findall(statement, pattern))


def _fills(branch: cst.If) -> bool:
    """A branch made by `_unconditional_fill`: every value it assigns is built from fills of a shape."""
    return all(
        matches(line, _ASSIGNED_NAME) and findall(line.body[0].value, _SHAPE_FILLS) for line in branch.body.body
    )


def _is_cfg_branch(statement: cst.CSTNode, condition: cst.BaseExpression) -> bool:
    return isinstance(statement, cst.If) and _mentions(statement, condition)


def _mentions(branch: cst.If | cst.IfExp, condition: cst.BaseExpression) -> bool:
    return has_conjunct(branch.test, condition)


def _definitions(statements: Sequence[cst.BaseStatement], condition: cst.BaseExpression) -> dict:
    """What each name holds in one guider batch after `statements`, over names defined before them: single-name
    assignments inlined in order, a CFG expansion (`torch.cat([x] * 2) if cfg else x`) read as its `else`."""
    found: dict[str, cst.BaseExpression] = {}
    for statement in statements:
        if matches(statement, _ASSIGNED_NAME):
            value = statement.body[0].value
            if isinstance(value, cst.IfExp) and same_expression(value.test, condition):
                value = value.orelse
            found[statement.body[0].targets[0].target.value] = substitute_names(value, found)
        else:
            for name in flow_of([statement]).writes:
                found.pop(name, None)
    return found


def _branch_values(statements: Sequence[cst.BaseStatement], known: dict) -> dict[str, cst.BaseExpression] | None:
    values = dict(known)
    assigned: dict[str, cst.BaseExpression] = {}
    for statement in statements:
        if not matches(statement, _ASSIGNED_NAME):
            return None
        name = statement.body[0].targets[0].target.value
        values[name] = assigned[name] = substitute_names(statement.body[0].value, values)
    return assigned


def _check_conditional_half(source: SourceModule, branch: cst.If, definitions: dict, cond_index: int) -> None:
    doubled = _branch_values(branch.body.body, definitions)
    single = _branch_values(branch.orelse.body.body, definitions)
    if doubled is None or single is None or doubled.keys() != single.keys():
        raise source.refuse(
            branch, "a CFG branch before an auxiliary model whose sides do not each only assign the same names"
        )
    for name, value in doubled.items():
        if not same_expression(_whole_batches(value, cond_index), single[name]):
            raise source.refuse(
                branch,
                f"`{name}` is computed under the CFG flag for an auxiliary model as something other than the "
                "conditional half of what the `else` computes for one batch",
            )


def _whole_batches(value: cst.BaseExpression, cond_index: int) -> cst.BaseExpression:
    """`x.chunk(2)[1]` -> `x`: the conditional half of the doubled batch is what one batch holds."""
    halves = {}
    for node in findall(value, m.Subscript(slice=[m.SubscriptElement(m.Index(m.Integer(str(cond_index))))])):
        halved = halved_batch(node.value)
        if halved is not None:
            halves[node] = cst.Name(halved)
    return replace_nodes(value, halves) if halves else value


def _unconditional_fill(
    source: SourceModule, branch: cst.If, condition: cst.BaseExpression, uncond_index: int
) -> cst.If:
    lines = []
    for line in branch.body.body:
        cats = [
            c for c in findall(line, TORCH_CAT) if (elements := cat_elements(c)) is not None and len(elements) == 2
        ]
        if not matches(line, _ASSIGNED_NAME) or not cats:
            raise source.refuse(line, "a CFG branch after an auxiliary model that does not concatenate for CFG")
        fills = {}
        for cat in cats:
            fill = cat_elements(cat)[uncond_index]
            if not matches(fill, _SHAPE_FILLS):
                raise source.refuse(
                    cat,
                    "the unconditional half of an auxiliary model's output is built from the conditional one's "
                    "values; each guider batch runs the model on its own inputs",
                )
            fills[cat] = fill
        lines.append(replace_nodes(line, fills))
    marker = cst.parse_expression(UNCOND_BATCH)
    parts = {part: marker for part in conjuncts(branch.test) if same_expression(part, condition)}
    test = replace_nodes(branch.test, parts)
    return branch.with_changes(test=test, body=branch.body.with_changes(body=lines), leading_lines=())
