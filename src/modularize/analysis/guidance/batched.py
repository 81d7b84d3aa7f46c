"""Analyze pass, part 2: find how the standard pipeline does classifier-free guidance.

Batched CFG (the pattern this module recognizes) looks like this in a standard `__call__`:

    if self.do_classifier_free_guidance:                                   # cat site: paired conditionings
        prompt_embeds = torch.cat([negative_prompt_embeds, prompt_embeds])
    for i, t in enumerate(timesteps):
        latent_model_input = torch.cat([latents] * 2) if self.do_classifier_free_guidance else latents
        noise_pred = self.unet(latent_model_input, t, encoder_hidden_states=prompt_embeds)[0]
        if self.do_classifier_free_guidance:                               # chunk + combine
            noise_pred_uncond, noise_pred_text = noise_pred.chunk(2)
            noise_pred = noise_pred_uncond + self.guidance_scale * (noise_pred_text - noise_pred_uncond)
        if self.do_classifier_free_guidance and self.guidance_rescale > 0.0:   # rescale
            noise_pred = rescale_noise_cfg(noise_pred, noise_pred_text, guidance_rescale=self.guidance_rescale)

`find_batched_cfg` locates every piece (as nodes of the original tree, so errors point at source lines), checks
that the concatenation order agrees with the combine formula, and returns what the guidance transform needs. A
pattern it does not recognize is refused with its location, never approximated.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import libcst as cst
import libcst.matchers as m

from ...cst.dataflow import flow_of, names_read
from ...cst.match_filter import matches
from ...cst.node_index import NodeIndex
from ...cst.substitute import conjuncts, has_conjunct, same_expression
from ...cst.tree_walk import findall, walk
from ...frontend.class_facts import ClassFacts
from ...frontend.parse import SourceModule, code
from ...kinds import CfgKind
from ...normalize.cfg_condition import InlineCfgCondition, is_inline_condition
from ...normalize.computed_cat_part import ComputedCatPart, nameable
from ...normalize.early_return import is_constant
from ...normalize.halved_results import HelperDoublesResults
from ...normalize.outside_helper_gate import HelperOutsideTheFile
from ...planning.plan import GuidanceField
from ...transforms.feature_gates import false_once_gated
from ...transforms.halving import halving_after, split_after
from ..loop_header import fresh_name
from .auxiliary_models import SharedAuxiliaryCall, auxiliary_steps
from .combine import assigned_combine
from .combine_inputs import combine_inputs
from .doubled_batch import (
    BATCH_REPEAT,
    LIST_CAT,
    TORCH_CAT,
    cat_elements,
    doubles,
    halved_batch,
    halved_per_item,
    paired_per_item,
    repeated_per_item,
    split_batch,
)
from .helper_results import LISTED, doubled_results, kept_positions
from .kept_repeats import kept_repeat
from .many_batches import (
    conditional_part,
    conditional_positions,
    guider_positions,
    in_source_order,
    many_batch_branch,
    split_parts,
)
from .pairing import (
    PER_SAMPLE_CALL,
    drawn_after_repeat,
    draws_at_random,
    merged_mirrors,
    propagate_pairs,
)
from .rescale import rescale_call


@dataclass(frozen=True)
class CatSite:
    """`if <cfg>: name = torch.cat([uncond, cond])`, or the `IfExp` form of it."""

    node: cst.CSTNode  # the statement (or IfExp) to replace
    target: str
    cond: str
    uncond: str
    # `.to(...)` calls the source applied to the concatenation, innermost first: applied to each half instead
    applied: tuple[cst.Call, ...] = ()
    layers: bool = False  # a list of batched tensors, one per layer, doubled item by item
    # a size or repeat for the doubled batch inside an expression (`x.expand(2 * n if cfg else n, -1)`): what
    # replaces the conditional expression `node`, its one-batch side; `target` is then a value both conditions share
    single: cst.BaseExpression | None = None
    # guidance over more than two batches: the values of the further batches, in the guider's batch order, and
    # the concatenated names in the source's order
    others: tuple[str, ...] = ()
    elements: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        """The concatenated names in the source's order (`[uncond, cond]` where only two are)."""
        return self.elements or (self.uncond, self.cond)


@dataclass(frozen=True)
class HelperUse:
    """A helper method called with the CFG flag that concatenates for CFG inside itself."""

    call: cst.Call
    helper: str
    flag: cst.Arg  # the argument passing the flag
    parameter: str  # the helper's parameter receiving it
    pairs: bool  # True: it concatenates `[negative, positive]`; False: it only repeats (`[mask] * 2`)


@dataclass(frozen=True)
class CustomCombine:
    """A combine formula `ClassifierFreeGuidance` does not compute bit for bit: the package gets a guider subclass
    whose `forward` runs these statements verbatim, the source's names bound to the guider's arguments."""

    statements: tuple[cst.BaseStatement, ...]
    bindings: tuple[tuple[str, str], ...]  # (source name, guider expression): ("noise_pred", "pred_cond"), ...
    result: str  # the source name holding the guided prediction at the end
    # with CFG off: what the source does to the conditional prediction (nothing, or its `else` branch)
    off_statements: tuple[cst.BaseStatement, ...] = ()
    off_bindings: tuple[tuple[str, str], ...] = ()
    # what else the combine reads, set on the guider for each step: (guider attribute, the block's expression)
    inputs: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class CfgPattern:
    """Everything the conversion needs to know about how a pipeline does classifier-free guidance.

    `kind` is "batched" (one denoiser call on `[uncond, cond]`, split with `.chunk(2)`), "separate" (one call
    per condition, `if do_cfg:` around the unconditional one) or "branched" (one call on both, with an explicit
    `else` path for CFG off around its inputs and its output).
    """

    condition: cst.BaseExpression  # the CFG test as written (`self.do_classifier_free_guidance`)
    condition_name: str  # `do_classifier_free_guidance`
    condition_expression: cst.BaseExpression  # what it computes (the property's return expression)
    scale: cst.BaseExpression
    denoiser: str
    call_statement: cst.BaseStatement
    model_output: str
    guided: str
    guidance_statements: tuple[cst.BaseStatement, ...]  # chunk/combine and rescale `if`s, removed
    batch_order: tuple[str, ...]  # guider identifiers in the source's concatenation order
    fields: tuple[GuidanceField, ...]  # what the denoiser call reads, paired (conditional, unconditional)
    condition_statement: cst.CSTNode | None  # `do_cfg = guidance_scale > 1.0`, when the condition is a local
    # what only batched CFG has: the concatenations undone, and what they touch
    rescale: cst.BaseExpression | None = None
    rescale_test: cst.BaseExpression | None = None
    between: tuple[cst.BaseStatement, ...] = ()  # statements between the model call and the chunk (run per batch)
    cat_sites: tuple[CatSite, ...] = ()
    expansions: tuple[cst.IfExp, ...] = ()  # `torch.cat([latents] * 2) if cfg else latents`
    repeated: tuple[str, ...] = ()  # the locals those expansions assign (`latent_model_input`)
    pairing_helpers: tuple[HelperUse, ...] = ()  # helpers that pair inside: their inputs cannot be served yet
    gated: tuple[cst.BaseStatement, ...] = ()  # CFG-branch statements after the combine, features turned into errors
    feature_guards: tuple[tuple[cst.BaseExpression, str], ...] = ()  # (`skip_guidance_layers is not None`, message)
    mirrored: tuple[tuple[cst.CSTNode, cst.FlattenSentinel], ...] = ()  # statements mirrored onto the counterparts
    rewrites: tuple[
        tuple[cst.CSTNode, cst.CSTNode], ...
    ] = ()  # repeat-only helpers get `False`, un-repeats their else
    kind: CfgKind = CfgKind.BATCHED
    formulation: str = "diffusers"  # "diffusers": `u + s * (c - u)`; "original": `c + s * (c - u)`
    combine: CustomCombine | None = None
    cache_contexts: tuple[tuple[str, str], ...] = ()  # guider batch -> the source's `cache_context` label
    denoiser_local: str | None = None  # a loop local holding the denoiser (`current_model`), when it is one
    denoisers: tuple[str, ...] = ()  # the components that local holds
    step_scales: tuple[str, ...] = ()  # the scale is a loop local taking these `__call__` arguments per step
    # "branched": what each guider batch runs before the model call (the input branch's `else`, and what follows)
    batch_statements: tuple[cst.BaseStatement, ...] = ()
    first_statement: cst.BaseStatement | None = None  # where the denoiser step starts, when not at the call
    batch_after: tuple[cst.BaseStatement, ...] = ()  # what each batch runs on its prediction after the call
    # "separate": the unconditional pass on the conditional one's names, when the two take other keywords
    uncond_call_statement: cst.BaseStatement | None = None
    # what the source ran before its unconditional pass: (statement, the same `if` raising instead)
    uncond_gates: tuple[tuple[cst.If, cst.If], ...] = ()
    model_call: cst.Call | None = None  # "branched": the denoiser call in `call_statement`, whose batches can merge
    auxiliaries: tuple[str, ...] = ()  # models each guider batch runs before its denoiser call (a ControlNet)
    batch_rewrites: tuple[tuple[cst.If, str], ...] = ()  # CFG branches before them, and what each batch runs instead
    shared_auxiliary: SharedAuxiliaryCall | None = None  # the one auxiliary call the batches can make as one


def _whole_branch_combine(inner: Sequence[cst.BaseStatement]):
    """A CFG branch that does more than chunk and combine, around a chunk into two halves and a combine of them
    (a learned variance split off the prediction first, then put back):

        noise_pred, variance_pred = noise_pred.split(latents.shape[1], dim=1)
        noise_pred_uncond, noise_pred_text = noise_pred.chunk(2)
        _, variance_pred_text = variance_pred.chunk(2)
        noise_pred = noise_pred_uncond + guidance_scale * (noise_pred_text - noise_pred_uncond)
        noise_pred = torch.cat([noise_pred, variance_pred_text], dim=1)

    -> (model output, first half, second half, result, uncond, cond, scale): ("noise_pred", "noise_pred_uncond",
    "noise_pred_text", "noise_pred", "noise_pred_uncond", "noise_pred_text", guidance_scale); None when there is
    no one combine of the two halves of one chunk. The result is the model output's name when the branch rebinds
    it, else the combine's target."""
    formulas = [found for found in map(assigned_combine, inner) if found is not None]
    if not formulas:
        return _halves_only(inner)
    if len(formulas) != 1 or formulas[0][1].base != formulas[0][1].subtrahend:
        return None  # (`c + s * (c - u)` in a whole branch is not matched yet)
    target, formula = formulas[0]
    uncond, cond = formula.base, formula.minuend
    chunks = [found for found in map(_chunk, inner) if found is not None and {found[1], found[2]} == {uncond, cond}]
    if len(chunks) != 1:
        return None
    _, first, second = chunks[0]
    flow = flow_of(list(inner))
    if not flow.reads:
        return None
    model_output = flow.reads[0]
    result = model_output if model_output in flow.writes else target
    return model_output, first, second, result, uncond, cond, formula.scale


def _trailing_cfg_branches(after: Sequence[cst.BaseStatement], condition: cst.BaseExpression) -> list[cst.If]:
    """The `if`s right after the guidance branch whose test holds only under the CFG flag (`if cfg and rescale >
    0:`), with no `else`: what they compute from the split prediction belongs to the guidance, like the branch."""
    found = []
    for statement in after:
        if not (
            isinstance(statement, cst.If) and statement.orelse is None and _contains_cfg(statement.test, condition)
        ):
            break
        found.append(statement)
    return found


def _call_arguments(statement: cst.CSTNode) -> list[cst.Arg]:
    """The arguments of the model calls in a statement (`x = self.unet(a, b=c)[0]` -> [a, b=c])."""
    return [arg for call in findall(statement, m.Call(func=m.Attribute(value=m.Name("self")))) for arg in call.args]


def _halves_only(inner: Sequence[cst.BaseStatement]):
    """A CFG branch that splits the prediction in two and combines the halves by a formula no matcher knows
    (`torch.lerp(u, c, s)`, a renormalized guidance, ...): the same tuple as `_whole_branch_combine`, with the
    condition of each half, the scale and the result's name left for the caller to find from the data flow
    (None). The branch then runs verbatim in a guider subclass.

        text, uncond = pred.chunk(2)
        pred = torch.lerp(uncond, text, self.guidance_scale)
        -> ("pred", "text", "uncond", "pred", None, None, None)
    """
    chunks = [found for found in map(_chunk, inner) if found is not None]
    if len(chunks) != 1:
        return None
    model_output, first, second = chunks[0]
    writes = flow_of(list(inner)).writes
    if model_output not in writes:
        return None  # what the branch computes is not handed on under the model output's name
    return model_output, first, second, model_output, None, None, None


def _uncond_first_by_sites(
    before_loop: Sequence[cst.BaseStatement], condition: cst.BaseExpression, dropped: set[int], index: NodeIndex
) -> bool | None:
    """Whether the CFG batch puts the unconditional values first, by data flow: in `x = torch.cat([a, x])` under
    the flag, the value `x` had (what CFG off uses) is the conditional one; in `torch.cat([a, b]) if cfg else b`,
    `b`. None when no site says it or sites disagree."""
    orders = {1 in positions for positions in _kept_positions_by_sites(before_loop, condition, dropped, index, 2)}
    return orders.pop() if len(orders) == 1 else None


def _kept_positions_by_sites(
    before_loop: Sequence[cst.BaseStatement],
    condition: cst.BaseExpression,
    dropped: set[int],
    index: NodeIndex,
    ways: int,
) -> list[frozenset[int]]:
    """Per concatenation of `ways` parts under the CFG flag in `__call__` that says something, the parts holding
    the value CFG off uses: `x` in `x = torch.cat([a, x])`, `b` in `torch.cat([a, b]) if cfg else b`."""
    kept = [statement for statement in before_loop if id(statement) not in dropped]
    found: list[frozenset[int]] = []
    for node in index.find(cst.If, within=kept):
        if not _is_cfg(node.test, condition):
            continue
        for line in node.body.body:
            cat = _concatenation(line)
            elements = cat_elements(cat) if cat is not None else None
            if elements is None or len(elements) != ways or not all(isinstance(e, cst.Name) for e in elements):
                continue
            found.append(conditional_positions(elements, line.body[0].targets[0].target))
    choices = index.find(cst.Assign, m.Assign(value=m.IfExp()), within=kept)
    negative_tests = _negative_existence_tests(choices)
    for node in choices:
        # under the flag, or under the negative's existence: the value kept without the others is the conditional one
        cfg = _is_cfg(node.value.test, condition) or _doubled_when_negative_exists(node.value, negative_tests)
        if not cfg or not isinstance(node.value.orelse, cst.Name):
            continue
        elements = cat_elements(node.value.body)
        if elements is not None and len(elements) == ways:
            found.append(conditional_positions(elements, node.value.orelse))
    return [positions for positions in found if 0 < len(positions) < ways]


def _many_batch_positions(
    source: SourceModule,
    facts: ClassFacts,
    chunk_if: cst.If,
    ways: int,
    before_loop: Sequence[cst.BaseStatement],
    dropped: set[int],
    index: NodeIndex,
    helper_uses: Sequence[HelperUse],
) -> tuple[int, ...]:
    """The part of a batch of `ways` parts each guider batch takes, the conditional one first, by what the
    concatenations in `__call__` and in the helpers handed the flag keep (`many_batches.conditional_part`)."""
    constraints = _kept_positions_by_sites(before_loop, chunk_if.test, dropped, index, ways)
    for use in helper_uses:
        if use.pairs:
            constraints += kept_positions(facts.methods[use.helper], use.parameter, ways)
    conditional = conditional_part(constraints, ways)
    if conditional is None:
        raise source.refuse(
            chunk_if,
            f"the prediction splits into {ways} parts, and which one is conditional (the part guidance off computes "
            "alone) cannot be told: no concatenation `x = torch.cat([x, ...])` under the flag says it, or they "
            "disagree",
        )
    return guider_positions(conditional, ways)


def _guidance_scale_read(inner: Sequence[cst.BaseStatement]) -> cst.Attribute | None:
    """`self.guidance_scale`, when an unrecognized combine reads it: in the guider subclass that is the guider's own
    scale (`combine_inputs`), so the guider is configured from the argument behind the pipeline's property."""
    for attribute in findall(cst.Module(body=list(inner)), m.Attribute(value=m.Name("self"), attr=m.Name())):
        if attribute.attr.value == "guidance_scale":
            return attribute
    return None


def _scale_deciding(
    source: SourceModule,
    facts: ClassFacts,
    condition_expression: cst.BaseExpression,
    anchor: cst.CSTNode,
    many: bool = False,
) -> cst.Name:
    """The one `__call__` argument the CFG condition reads (`self._guidance_scale > 1` -> `guidance_scale`): what
    the guider of a combine no matcher knows is configured from, so that it is on exactly when the source's CFG is;
    the combine reads its own inputs itself.

    A guider over more than two batches is on exactly when the condition holds whatever its scale
    (`ManyBatchGuidance`): of several arguments the condition reads, the first the combine reads is its scale."""
    parameters = {p.name for p in facts.call_parameters}
    read = [
        n for n in dict.fromkeys(names_read(over_call_locals(condition_expression, facts.per_call))) if n in parameters
    ]
    if many and len(read) > 1:
        combined = set(names_read(anchor))
        read = [next((name for name in read if name in combined), read[0])]
    if len(read) != 1:
        raise source.refuse(
            anchor,
            "unrecognized guidance combine, and the CFG condition does not read one `__call__` argument to configure "
            "the guider with",
        )
    return cst.Name(read[0])


def _refuse_halves_read_later(source: SourceModule, later: list[cst.BaseStatement], halves: set[str]) -> None:
    """The guider combines the two halves of the prediction and hands on only the result, so a statement after the
    combine that still reads a half (InpaintLegacy: `add_noise(init_latents_orig, noise_pred_uncond, ...)`) has
    nothing to read."""
    for name in flow_of(later).reads:
        if name in halves:
            read = next(node for statement in later for node in findall(statement, m.Name(value=name)))
            raise source.refuse(
                read,
                f"`{name}`, computed with the CFG-split prediction, is read after the guidance combine: the guider "
                "hands on only the combined prediction",
            )


def _component_calls(node: cst.CSTNode, facts: ClassFacts) -> list[str]:
    calls = findall(node, m.Call(func=m.Attribute(value=m.Name("self"), attr=m.Name())))
    return [c.func.attr.value for c in calls if c.func.attr.value in facts.init.components]


def _chunk(statement: cst.CSTNode) -> tuple[str, str, str] | None:
    """`a, b = x.chunk(2)` -> (x, a, b); also `x.chunk(2, dim=0)`, `x.chunk(2, 0)`, `torch.chunk(x, 2)`."""
    pattern = m.SimpleStatementLine(
        body=[m.Assign(targets=[m.AssignTarget(target=m.Tuple(elements=[m.Element(m.Name()), m.Element(m.Name())]))])]
    )
    if not matches(statement, pattern):
        return None
    assign = statement.body[0]
    halved = halved_batch(assign.value)
    if halved is None:
        return None
    first, second = (e.value.value for e in assign.targets[0].target.elements)
    return halved, first, second


def _combine(statement: cst.CSTNode) -> tuple[str, str, str, cst.BaseExpression] | None:
    """`g = u + s * (c - u)` -> (g, u, c, s)."""
    found = assigned_combine(statement)
    if found is None or found[1].base != found[1].subtrahend:
        return None
    guided, formula = found
    return guided, formula.base, formula.minuend, formula.scale


def _rescale(
    statement: cst.CSTNode, guided: str, cond: str, functions: Mapping[str, cst.FunctionDef]
) -> cst.BaseExpression | None:
    """`g = <helper>(g, c, r)` -> r, where the module's or the pipeline's helper computes the guidance rescale
    (`rescale.py`: recognized by its arithmetic, whatever its name); or diffusers' own `rescale_noise_cfg`,
    imported rather than defined in the module."""
    found = rescale_call(statement, guided, cond, functions)
    if found is not None:
        return found
    pattern = m.SimpleStatementLine(
        body=[m.Assign(targets=[m.AssignTarget(m.Name(guided))], value=m.Call(func=m.Name("rescale_noise_cfg")))]
    )
    if not matches(statement, pattern) or "rescale_noise_cfg" in functions:
        return None
    args = statement.body[0].value.args
    positional = [a.value for a in args if a.keyword is None]
    keywords = {a.keyword.value: a.value for a in args if a.keyword is not None}
    if not positional or not matches(positional[0], m.Name(guided)):
        return None
    text = keywords.get("noise_pred_text", positional[1] if len(positional) > 1 else None)
    if text is None or not matches(text, m.Name(cond)):
        return None
    return keywords.get("guidance_rescale", positional[2] if len(positional) > 2 else None)


def _is_cfg(test: cst.CSTNode, condition: cst.BaseExpression) -> bool:
    return same_expression(test, condition)


def _contains_cfg(test: cst.BaseExpression, condition: cst.BaseExpression) -> bool:
    return has_conjunct(test, condition)


def find_batched_cfg(
    source: SourceModule,
    facts: ClassFacts,
    top_level: Sequence[cst.BaseStatement],
    loop_statement: cst.BaseStatement,
    loop: cst.For,
    dropped: set[int],
    index: NodeIndex,
    split_lists: bool = True,
) -> CfgPattern | None:
    """The batched-CFG pattern of this pipeline, or None when its loop does no CFG at all.

    `top_level` are the statements of `__call__`, `loop_statement` the one holding the loop over timesteps and
    `dropped` the ids of statements already dropped as runtime plumbing. Without `split_lists`, a helper returning
    a list of doubled values is not split where received (its input raises instead).
    """
    loop_position = list(top_level).index(loop_statement)
    before_loop, after_loop = top_level[:loop_position], top_level[loop_position + 1 :]
    body = [s for s in loop.body.body if id(s) not in dropped]
    denoiser_calls = [(index, name) for index, s in enumerate(body) for name in _component_calls(s, facts)]
    denoiser_calls = [(i, n) for i, n in denoiser_calls if n in facts.init.models]
    chunk_index = next((i for i, s in enumerate(body) if isinstance(s, cst.If) and _chunk_in(s)), None)
    if chunk_index is None:
        # (models called before the last one that feed it are auxiliary models, a ControlNet: they run as they are)
        again = [i for i, name in denoiser_calls if name == denoiser_calls[-1][1]]
        if len(again) > 1:
            raise source.refuse(
                body[again[1]],
                "the denoiser is called more than once per step, but not as separate CFG passes this converter "
                "recognizes (the unconditional call alone under `if <flag>:`, a local or a pipeline property, "
                "after the conditional one)",
            )
        if not _feed(body, denoiser_calls):
            models = ", ".join(f"`{name}`" for name in dict.fromkeys(name for _, name in denoiser_calls))
            raise source.refuse(
                body[denoiser_calls[-1][0]],
                f"more than one model predicts in each step ({models}), and no guidance this converter recognizes "
                "combines them",
            )
        _refuse_unrecognized_guidance(source, facts, body, dropped)
        return None

    chunk_if: cst.If = body[chunk_index]
    condition = chunk_if.test
    inner = list(chunk_if.body.body)
    # three or more parts (InstructPix2Pix's text, image and unconditional batches): the branch runs in the guider
    many = many_batch_branch(inner) if chunk_if.orelse is None else None
    whole = None
    if many is not None:
        model_output, parts, guided = many
        uncond = cond = scale = None
    else:
        chunked = _chunk(inner[0]) if inner else None
        combined = _combine(inner[1]) if len(inner) > 1 else None
        if (chunked is None or combined is None) and chunk_if.orelse is None:
            whole = _whole_branch_combine(inner)
        if whole is None and (chunked is None or combined is None or chunk_if.orelse is not None):
            raise source.refuse(
                chunk_if,
                "unrecognized guidance combine: expected `u, c = pred.chunk(2)` and a `u + scale * (c - u)` of the "
                "halves",
            )
        if whole is not None:
            model_output, first, second, guided, uncond, cond, scale = whole
            if uncond is None:
                uncond_first = _uncond_first_by_sites(before_loop, condition, dropped, index)
                if uncond_first is None:
                    raise source.refuse(
                        chunk_if,
                        "unrecognized guidance combine, and which half of the prediction is unconditional cannot be "
                        "told (no CFG concatenation `x = torch.cat([..., x])` says which value is the conditional "
                        "one)",
                    )
                uncond, cond = (first, second) if uncond_first else (second, first)
                scale = _guidance_scale_read(inner)
        else:
            model_output, first, second = chunked
            guided, uncond, cond, scale = combined
        if {uncond, cond} != {first, second}:
            raise source.refuse(inner[1], "the combine formula does not use the two halves of the chunked prediction")
        parts = (first, second)
    condition_name, condition_expression, condition_statement = _condition(source, facts, condition, top_level)
    # a helper may be handed the flag as the test it stands for (`do_cfg=guidance_scale > 1.0`)
    flags = (condition, condition_expression, over_call_locals(condition_expression, facts.per_call))
    _gate_outside_helpers(facts, before_loop, flags, index)
    helper_uses = cfg_helper_calls(facts, before_loop, flags, index)
    if many is not None:
        positions = _many_batch_positions(
            source, facts, chunk_if, len(parts), before_loop, dropped, index, helper_uses
        )
        scale = _guidance_scale_read(inner)
    else:
        # the part of the batch each guider batch takes, the conditional one first
        positions = (1, 0) if uncond == first else (0, 1)
    uncond_index = positions[1]
    feature_guards: list[tuple[cst.BaseExpression, str]] = []
    functions = _functions(source, facts)
    custom = None
    # what follows the split under the flag (a rescale by the conditional part) runs in the guider too
    trailing = _trailing_cfg_branches(body[chunk_index + 1 :], condition) if many is not None else []
    if whole is not None or many is not None:
        for exit_node in findall(chunk_if, m.Continue() | m.Break() | m.Return()):
            raise source.refuse(
                exit_node,
                "the CFG branch runs in the guider (it does more than chunk and combine), where it cannot leave the "
                "denoising loop",
            )
        # the whole branch runs in a guider subclass, on the prediction the batches make together
        bindings = [(model_output, f"torch.cat([{', '.join(in_source_order(positions))}])")]
        if isinstance(scale, cst.Name):
            bindings.append((scale.value, "self.guidance_scale"))
        elif scale is None:
            # the guider is configured from the argument the CFG condition reads: a combine reading that argument
            # (never reassigned) reads the guider's own scale
            scale = _scale_deciding(source, facts, condition_expression, chunk_if, many is not None)
            if scale.value in names_read(chunk_if) and scale.value not in flow_of(list(top_level)).writes:
                bindings.append((scale.value, "self.guidance_scale"))
        bindings, inputs = combine_inputs(source, facts, [*inner, *trailing], bindings, chunk_if)
        custom = CustomCombine((*inner, *trailing), bindings, guided, inputs=inputs)
    extras, rescale, rescale_test = (
        ([], None, None)
        if whole is not None or many is not None
        else _rescale_inside(inner[2:], condition, guided, cond, functions)
    )
    halved_repeats: list[cst.SimpleStatementLine] = []
    gated = _gated_extras(source, facts, extras, set(parts), feature_guards, halved_repeats)

    halved = _halved_under(before_loop, condition, dropped, index)
    split_at_call = {
        id(use.call)
        for use in helper_uses
        if use.pairs and _results_split(source, facts, use, index, condition, positions, halved, split_lists)
    }
    if scale is None:  # a combine no matcher knows, reading no `self.guidance_scale`
        scale = _scale_deciding(source, facts, condition_expression, chunk_if)

    calls_before = [(i, n) for i, n in denoiser_calls if i < chunk_index]
    if not calls_before:
        raise source.refuse(chunk_if, "no denoiser call before the guidance combine")
    call_index, denoiser = calls_before[-1]
    # calls inside the CFG branch belong to gated guidance features (checked by `_gated_extras`)
    others = [(i, n) for i, n in denoiser_calls if i != chunk_index and (i, n) != (call_index, denoiser)]
    if not _feed(body, [*[(i, n) for i, n in others if i < call_index and n != denoiser], (call_index, denoiser)]):
        raise source.refuse(
            body[call_index],
            "more than one model predicts in each step, and what the models before the denoiser compute does not "
            "feed its call (only auxiliary models, a ControlNet, run in each guider batch)",
        )
    again = [i for i, n in others if n == denoiser]
    if again:
        raise source.refuse(
            body[again[0]],
            "the denoiser is called more than once per step, but not as separate CFG passes this converter "
            "recognizes (the unconditional call alone under `if <flag>:`, after the conditional one)",
        )
    if any(i >= call_index for i, _ in others):
        at = next(i for i, _ in others if i >= call_index)
        raise source.refuse(body[at], "more than one model call per step, not before the denoiser's")
    if others and len(positions) > 2:
        raise source.refuse(
            body[others[0][0]],
            f"an auxiliary model (`{others[0][1]}`) runs beside guidance over {len(positions)} batches: only two "
            "(conditional and unconditional) are paired for it",
        )
    call_statement = body[call_index]
    per_batch = None
    if others:
        models = [name for _, name in others]
        per_batch = auxiliary_steps(source, body, others[0][0], call_index, condition, uncond_index, models)
    between = tuple(body[call_index + 1 : chunk_index])

    guidance_statements = [chunk_if, *trailing]
    for statement in body[chunk_index + 1 + len(trailing) :]:
        if isinstance(statement, cst.If) and _contains_cfg(statement.test, condition):
            found = (
                _rescale(statement.body.body[0], guided, cond, functions) if len(statement.body.body) == 1 else None
            )
            if found is None and _chunk(statement.body.body[0]) is not None:
                continue  # `if cfg: mask, _ = mask.chunk(2) else: ...`: undoing a repeat (`_unrepeats` checks it)
            if rescale is not None:
                raise source.refuse(statement, "a second guidance rescale after the combine")
            if found is None or statement.orelse is not None:
                raise source.refuse(statement, "unrecognized guidance step after the combine")
            rescale, rescale_test = found, statement.test
            guidance_statements.append(statement)
    later = [s for s in body[chunk_index + 1 :] if not any(s is g for g in guidance_statements)]
    # the guider hands on the combined prediction alone: the halves (and with a whole branch in the guider, all it
    # computes) are gone after it
    inside = set(flow_of([*inner, *trailing]).writes) if whole is not None or many is not None else set(parts)
    _refuse_halves_read_later(source, later, inside - {guided})

    expansions, repeated = [], []
    in_batches = set() if per_batch is None else {id(s) for s in body[per_batch.start : call_index]}
    for statement in body[: call_index + 1]:
        if id(statement) in in_batches:
            continue
        for if_exp in findall(statement, m.IfExp()):
            if not _is_cfg(if_exp.test, condition):
                continue
            elements = cat_elements(if_exp.body)
            repeated_per_part = (
                elements is not None
                and len(elements) == len(positions)
                and all(same_expression(e, if_exp.orelse) for e in elements)
            )
            if not repeated_per_part and not (len(positions) == 2 and doubles(if_exp.body, if_exp.orelse)):
                raise source.refuse(if_exp, "unrecognized CFG batching of a denoiser input inside the loop")
            assigned = m.SimpleStatementLine(body=[m.Assign(targets=[m.AssignTarget(m.Name())], value=m.IfExp())])
            # (the line may sit in a branch of its own: `if conditioning: mask_input = torch.cat(...) if cfg else`)
            line = next((x for x in findall(statement, assigned) if x.body[0].value is if_exp), None)
            if line is not None:
                expansions.append(if_exp)
                repeated.append(line.body[0].targets[0].target.value)
            elif (
                statement is body[call_index]
                and isinstance(if_exp.orelse, cst.Name)
                and any(arg.value is if_exp for arg in _call_arguments(statement))
            ):
                # `self.unet(sample=torch.cat([x] * 2) if cfg else x, ...)`: `x`, a value both batches share
                expansions.append(if_exp)
                repeated.append(if_exp.orelse.value)
            else:
                raise source.refuse(if_exp, "a CFG-repeated denoiser input must be assigned on its own line")
        for nested in findall(statement, m.If()):
            if _contains_cfg(nested.test, condition):
                raise source.refuse(nested, "CFG-dependent statement inside the loop before the denoiser call")

    # (what each batch computes itself before its call is not handed out by the guider)
    before_batches = body[: per_batch.start] if per_batch else body[:call_index]
    repeated += _derived_from_repeated(before_batches, repeated, set(names_read(call_statement)))

    # a helper pairing its output inside is gated: the `if` holding its call raises instead (`_feature_gates`), so
    # nothing else that `if` does is converted
    holders = [
        holder
        for use in helper_uses
        if use.pairs and id(use.call) not in split_at_call
        for holder in [index.statement_of(use.call)]
        if isinstance(holder, cst.If)
    ]
    # ... and a later `if` on the same input without an `else` goes (`if ip_adapter_image_embeds is not None:`
    # after the gate on `ip_adapter_image is not None or ip_adapter_image_embeds is not None`)
    gated_holders = {id(holder) for holder in holders} | {
        id(branch)
        for holder in holders
        for branch in index.find(cst.If)
        if branch.orelse is None and branch is not holder and false_once_gated(branch.test, holder.test)
    }
    dropped = dropped | gated_holders
    # `if cfg: x = x.chunk(2)[0]` before the loop, of a value both conditions share (a repeat, doubled again below
    # it, as PAG pipelines write their control images): a guider batch has that half already (checked below)
    halvings = [
        node
        for node in index.find(cst.If, within=[s for s in before_loop if id(s) not in dropped])
        if _is_cfg(node.test, condition)
        and node.orelse is None
        and len(node.body.body) == 1
        and _halved_name(node.body.body[0]) is not None
    ]
    cat_sites, first_site = _cat_sites(source, before_loop, condition, positions, dropped, index)
    later = [*before_loop[first_site:], *body, *after_loop]
    site_nodes = {id(site.node) for site in cat_sites}
    taken = {p.name for p in facts.call_parameters} | set(flow_of(list(top_level)).writes)
    # one pairing per batch after the conditional one: each follows that batch's values to the call
    pairings = [
        propagate_pairs(
            source,
            facts.name,
            {site.target: (site.uncond, *site.others)[batch] for site in cat_sites},
            later,
            call_statement,
            dropped | site_nodes | in_batches | {id(statement) for statement in [*halved_repeats, *halvings]},
            taken,
            condition,
            {site.target: _start(source, site.node) for site in cat_sites},
            frozenset(site.target for site in cat_sites if site.layers),
            (chunk_if, frozenset(_halved_name(statement) for statement in halved_repeats)),
        )
        for batch in range(len(positions) - 1)
    ]
    pairing = pairings[0]
    mirrored = merged_mirrors([found.mirrored for found in pairings])
    # one half of a value repeated for CFG (or doubled as `torch.cat([x, x])`) is the value itself
    for statement in halved_repeats:
        name = _halved_name(statement)
        if name not in repeated and name not in pairing.halved:
            raise source.refuse(statement, _UNRECOGNIZED_COMBINE, fix=_CUSTOM_COMBINE_FIX)
    for halving in halvings:
        if pairing.pairs.get(_halved_name(halving.body.body[0])) != _halved_name(halving.body.body[0]):
            raise source.refuse(halving, "one half of a CFG batch that is not a value both conditions share")
    # what the model calls of a step read, the auxiliary ones run per batch included
    called = set(names_read(call_statement)) | {
        n for s in (per_batch.statements if per_batch else ()) for n in names_read(s)
    }
    fields = tuple(
        GuidanceField(
            name, name, other, tuple(found.pairs[name] for found in pairings[1:]), layers=name in pairing.layered
        )
        for name, other in pairing.pairs.items()
        if name in called
    )
    for site in cat_sites:
        if site.cond == site.uncond:
            continue  # a value both conditions share: whatever reads it was checked to be per sample
        reaches = site.target in called or any(site.target in names_read(statement) for statement, _ in mirrored)
        if not reaches:
            raise source.refuse(site.node, f"`{site.target}` is batched for CFG but not passed to the denoiser")

    _refuse_helpers_batching_on_the_property(source, facts, before_loop, condition, index)
    rewrites: list[tuple[cst.CSTNode, cst.CSTNode]] = [(halving, cst.RemoveFromParent()) for halving in halvings]
    helper_repeated: list[str] = []
    drawn_fields: list[GuidanceField] = []
    split_names: list[str] = []  # what the helper returned, where the halves drawn from it are split
    for use in helper_uses:
        if not use.pairs:
            line = _line_of(index, use.call)
            names = _assigned_names(line)
            kept = kept_repeat(line, names, use.call, facts.methods[use.helper], use.parameter, before_loop, facts)
            if kept is None:
                # the guider runs each batch on its own: the helper must not repeat for it
                rewrites.append((use.flag.value, cst.Name("False")))
            elif kept.drawn and len(parts) == 2:
                # the halves drew noise of their own: each is its batch's value, paired as the guider's field
                taken = {n.value for n in walk(facts.call) if isinstance(n, cst.Name)} | set(functions)
                negatives = tuple(fresh_name(f"negative_{name}", taken) for name in kept.names)
                split = split_after(kept.last_write, kept.names, negatives, use.flag.value, uncond_index, kept.listed)
                rewrites.append((kept.last_write, split))
                drawn_fields += [
                    GuidanceField(n, n, negative, layers=kept.listed)
                    for n, negative in zip(kept.names, negatives, strict=True)
                ]
                split_names += names
            else:
                # a model runs on the repeat before the loop: as the standard pipeline ran it, then halved
                halving = halving_after(kept.last_write, kept.names, use.flag.value, kept.listed)
                rewrites.append((kept.last_write, halving))
            helper_repeated += names
    drawn = {field.name for field in drawn_fields} | set(split_names)
    _refuse_random_draws_after_repeats(source, before_loop, [n for n in helper_repeated if n not in drawn], index)
    no_longer_repeated = [*repeated, *helper_repeated]
    handled = {id(s) for s in guidance_statements} | in_batches
    rewrites += _unrepeats(source, body, condition, no_longer_repeated, handled, dropped)
    # what a repeat-only helper made for the doubled batch, the denoiser reads as it is: each guider batch gets it
    # (and a merged call all of them), as a value both conditions share
    # (a value split in each branch that computes it, a tensor in one and a list of them in another: one field)
    by_name: dict[str, GuidanceField] = {}
    for field in drawn_fields:
        known = by_name.get(field.name)
        by_name[field.name] = field if known is None else replace(known, layers=known.layers or field.layers)
    fields += tuple(field for field in by_name.values() if field.name in called)
    shared = [n for n in dict.fromkeys(helper_repeated) if n in called and n not in {f.name for f in fields}]
    fields += tuple(GuidanceField(name, name, name) for name in shared)

    return CfgPattern(
        condition=condition,
        condition_name=condition_name,
        condition_expression=condition_expression,
        scale=scale,
        rescale=rescale,
        rescale_test=rescale_test,
        denoiser=denoiser,
        call_statement=call_statement,
        between=between,
        model_output=model_output,
        guided=guided,
        guidance_statements=tuple(guidance_statements),
        cat_sites=tuple(cat_sites),
        expansions=tuple(expansions),
        repeated=tuple(repeated),
        batch_order=in_source_order(positions),
        pairing_helpers=tuple(use for use in helper_uses if use.pairs and id(use.call) not in split_at_call),
        rewrites=tuple(rewrites),
        fields=fields,
        mirrored=mirrored,
        gated=gated,
        feature_guards=tuple(feature_guards),
        condition_statement=condition_statement,
        combine=custom,
        batch_statements=per_batch.statements if per_batch else (),
        first_statement=body[per_batch.start] if per_batch else None,
        model_call=per_batch and _model_call_in(call_statement, denoiser),
        auxiliaries=tuple(dict.fromkeys(name for _, name in others)),
        batch_rewrites=per_batch.rewritten if per_batch else (),
        shared_auxiliary=per_batch.shared if per_batch else None,
    )


def _feed(body: Sequence[cst.BaseStatement], calls: Sequence[tuple[int, str]]) -> bool:
    """Whether what each model call but the last assigns is read by the last one's statement (an auxiliary model
    feeds the denoiser; two predictions combined after both calls are guidance)."""
    last = set(names_read(body[calls[-1][0]])) if calls else set()
    return all(set(flow_of([body[at]]).writes) & last for at, _ in calls[:-1])


def _refuse_random_draws_after_repeats(
    source: SourceModule, before_loop: Sequence[cst.BaseStatement], repeated: Sequence[str], index: NodeIndex
) -> None:
    """`image = self.prepare_image(..., do_cfg)` (repeated for CFG inside) then `image = vae.encode(image)
    .latent_dist.sample()`: each half of the doubled batch drew noise of its own, which one value the guider's
    batches share cannot reproduce."""
    for line in index.find(cst.SimpleStatementLine, within=list(before_loop)):
        read = [name for name in names_read(line) if name in repeated]
        if read and draws_at_random(line):
            raise drawn_after_repeat(source, line, read[0])


def _model_call_in(statement: cst.BaseStatement, component: str) -> cst.Call:
    (call,) = findall(statement, m.Call(func=m.Attribute(value=m.Name("self"), attr=m.Name(component))))
    return call


def _refuse_unrecognized_guidance(
    source: SourceModule, facts: ClassFacts, body: Sequence[cst.BaseStatement], dropped: set[int]
) -> None:
    """A loop with no recognized CFG must not hide one. Evidence of guidance: a prediction split (`.chunk`,
    `split`), a batch repeated for it (`torch.cat([x] * n)`), a guidance scale multiplied in, or a branch on per-call
    state (`if self.do_perturbed_attention_guidance:`). Converting such a loop without a guider would be wrong."""
    per_call = set(facts.per_call) | set(facts.per_call_properties)
    split = m.Call(func=m.Attribute(attr=m.Name("chunk") | m.Name("split")))
    repeat = m.List(elements=[m.Element()])
    scale = m.Name(value=m.MatchIfTrue(lambda name: "guidance_scale" in name)) | m.Attribute(
        attr=m.Name(value=m.MatchIfTrue(lambda name: "guidance_scale" in name))
    )

    def evidence_in(node: cst.CSTNode) -> bool:
        if matches(node, split) or matches(node, m.BinaryOperation(left=repeat, operator=m.Multiply())):
            return True
        if matches(node, m.BinaryOperation(operator=m.Multiply())) and (
            matches(node.left, scale) or matches(node.right, scale)
        ):
            return True
        if isinstance(node, (cst.If, cst.IfExp)):
            tested = findall(node.test, m.Attribute(value=m.Name("self"), attr=m.Name()))
            return any(attribute.attr.value in per_call for attribute in tested)
        return False

    found = next(
        (
            node
            for statement in body
            for node in walk(statement, skip=lambda node: id(node) in dropped)
            if isinstance(node, (cst.Call, cst.BinaryOperation, cst.If, cst.IfExp)) and evidence_in(node)
        ),
        None,
    )
    if found is not None:
        raise source.refuse(
            found,
            "guidance this converter does not recognize (a split or repeated batch, a guidance scale, or a branch on "
            "per-call state inside the loop); converting it without a guider would silently change the output",
        )


def _chunk_in(statement: cst.If) -> bool:
    return any(_chunk(s) is not None or split_parts(s) is not None for s in statement.body.body)


def _condition(source: SourceModule, facts: ClassFacts, test: cst.BaseExpression, top_level):
    """What decides CFG: a pipeline property over per-call state (`self.do_classifier_free_guidance`), or a local
    set once in `__call__` (`do_classifier_free_guidance = guidance_scale > 1.0`, whose statement is returned so it
    can read the guider's decision instead)."""
    if matches(test, m.Attribute(value=m.Name("self"), attr=m.Name())):
        name = test.attr.value
        expression = facts.per_call_properties.get(name)
        if expression is not None:
            return name, expression, None
    if isinstance(test, cst.Name):
        pattern = m.SimpleStatementLine(body=[m.Assign(targets=[m.AssignTarget(m.Name(test.value))])])
        assignments = [s for s in top_level if matches(s, pattern)]
        writes = [s for s in top_level if test.value in flow_of([s]).writes]
        if len(assignments) == 1 and len(writes) == 1:
            return test.value, _inlined_properties(facts, assignments[0].body[0].value), assignments[0]
    if is_inline_condition(facts, top_level, test):
        raise InlineCfgCondition(test)
    raise source.refuse(
        test,
        "the CFG condition is neither a pipeline property over per-call state (`self.do_classifier_free_guidance`) "
        "nor a local set once in `__call__`",
    )


def _inlined_properties(facts: ClassFacts, expression: cst.BaseExpression) -> cst.BaseExpression:
    """The per-call properties an expression reads, replaced by what they compute, so that it reads per-call state
    only (which the guider setup maps to call arguments):

        do_cfg = self.do_classifier_free_guidance    ->    do_cfg = (self._guidance_scale > 1.0)
    """
    from ...cst.substitute import replace_nodes

    replacements = {}
    for attribute in findall(expression, m.Attribute(value=m.Name("self"), attr=m.Name())):
        inlined = facts.per_call_properties.get(attribute.attr.value)
        if inlined is not None:
            replacements[attribute] = inlined.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])
    return replace_nodes(expression, replacements) if replacements else expression


def _start(source: SourceModule, node: cst.CSTNode) -> tuple[int, int]:
    position = source.positions.get(node)
    return (position.start.line, position.start.column) if position else (0, 0)


def _functions(source: SourceModule, facts: ClassFacts) -> dict[str, cst.FunctionDef]:
    """The module's functions by name and the pipeline's methods as `self.<name>`: the helpers a step may call."""
    functions = {s.name.value: s for s in source.tree.body if isinstance(s, cst.FunctionDef)}
    functions.update({f"self.{name}": method for name, method in facts.methods.items()})
    return functions


def _rescale_inside(
    extras: Sequence[cst.BaseStatement],
    condition: cst.BaseExpression,
    guided: str,
    cond: str,
    functions: Mapping[str, cst.FunctionDef],
) -> tuple[list[cst.BaseStatement], cst.BaseExpression | None, cst.BaseExpression | None]:
    """A rescale inside the CFG branch, after the combine, is the same rescale as one after it under `<cfg> and`:

        if do_cfg:                                        if do_cfg:
            u, c = pred.chunk(2)                              u, c = pred.chunk(2)
            pred = u + s * (c - u)                ==          pred = u + s * (c - u)
            if r > 0:                                     if do_cfg and r > 0:
                pred = rescale_noise_cfg(pred, c, r)          pred = rescale_noise_cfg(pred, c, r)

    Returns the other statements, the rescale factor and its test (None, None without one)."""
    for position, statement in enumerate(extras):
        if not isinstance(statement, cst.If) or statement.orelse is not None or len(statement.body.body) != 1:
            continue
        found = _rescale(statement.body.body[0], guided, cond, functions)
        if found is not None:
            inner = statement.test
            if isinstance(inner, (cst.BooleanOperation, cst.IfExp, cst.Lambda)) and not inner.lpar:
                inner = inner.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])
            test = cst.BooleanOperation(condition.deep_clone(), cst.And(), inner)
            return [*extras[:position], *extras[position + 1 :]], found, test
    return list(extras), None, None


def _derived_from_repeated(
    statements: Sequence[cst.BaseStatement], repeated: Sequence[str], called: set[str]
) -> list[str]:
    """Model inputs computed from a repeated input's batch (`timestep = t.expand(latent_model_input.shape[0])`)
    are per guider batch too: each batch gets its own, and merged batches concatenate them."""
    tainted = set(repeated)
    found = []
    for statement in statements:
        for line in findall(statement, m.SimpleStatementLine(body=[m.Assign(targets=[m.AssignTarget(m.Name())])])):
            target = line.body[0].targets[0].target.value
            if target not in tainted and set(names_read(line.body[0].value)) & tainted:
                tainted.add(target)
                if target in called:
                    found.append(target)
    return found


_UNRECOGNIZED_COMBINE = (
    "unrecognized guidance combine: expected `u, c = pred.chunk(2)` then `pred = u + scale * (c - u)`"
)
_CUSTOM_COMBINE_FIX = "a custom combine formula needs a guider subclass, which is not generated yet"
_HALF = m.Call(func=m.Attribute(value=m.Name(), attr=m.Name("chunk")), args=[m.Arg(m.Integer("2"))])
_UNUSED = m.Name("_") | m.StarredElement(m.Name("_"))
# `x, _ = x.chunk(2)`, `_, x = x.chunk(2)`, `x = x.chunk(2)[0]`
_HALVED = m.SimpleStatementLine(
    body=[
        m.Assign(
            targets=[m.AssignTarget(m.Tuple([m.Element(m.Name()), m.Element(_UNUSED) | _UNUSED]))],
            value=_HALF,
        )
        | m.Assign(
            targets=[m.AssignTarget(m.Tuple([m.Element(m.Name("_")), m.Element(m.Name())]))],
            value=_HALF,
        )
        | m.Assign(
            targets=[m.AssignTarget(m.Name())],
            value=m.Subscript(value=_HALF, slice=[m.SubscriptElement(m.Index(m.Integer()))]),
        )
    ]
)


def _halved_name(statement: cst.BaseStatement) -> str | None:
    """`timestep, _ = timestep.chunk(2)` (or another of `_HALVED`) -> `timestep`: a value reassigned one half of
    itself; None for any other statement."""
    if not matches(statement, _HALVED):
        return None
    assign = statement.body[0]
    target = assign.targets[0].target
    names = [target] if isinstance(target, cst.Name) else [e.value for e in target.elements]
    value = assign.value.value if isinstance(assign.value, cst.Subscript) else assign.value
    kept = [name.value for name in names if isinstance(name, cst.Name) and name.value != "_"]
    return kept[0] if len(kept) == 1 and kept[0] == value.func.value.value else None


def _gated_extras(
    source: SourceModule,
    facts: ClassFacts,
    extras: Sequence[cst.BaseStatement],
    halves: set[str],
    feature_guards: list,
    halved_repeats: list[cst.SimpleStatementLine],
) -> tuple[cst.BaseStatement, ...]:
    """Statements after the combine in the CFG branch: a guidance feature on top of CFG (skip-layer guidance runs
    the model once more) becomes an error where it would run; plain assignments feeding its test stay. One half
    of a value the source repeated for CFG (`timestep, _ = timestep.chunk(2)`) is the value a guider batch has
    already: such statements go to `halved_repeats` (checked once the repeats are known) and are dropped."""
    gated = []
    for statement in extras:
        if _halved_name(statement) is not None:
            halved_repeats.append(statement)
            continue
        if isinstance(statement, cst.If) and statement.orelse is None:
            inputs = [n for n in names_read(statement.test) if n in {p.name for p in facts.call_parameters}]
            calls = [c for c in findall(statement.body, m.Call(func=m.Attribute(value=m.Name("self"))))]
            if inputs and any(c.func.attr.value in facts.init.components for c in calls):
                names = " / ".join(f"`{n}`" for n in inputs)
                message = (
                    f"{names} cannot be used with this generated package yet: {facts.name} runs the denoiser once "
                    f"more for it inside classifier-free guidance, which modularize does not convert to a guider "
                    f"yet. Use {facts.name} for this input."
                )
                raise_statement = cst.parse_statement(f"raise ValueError({message!r})\n")
                gated.append(statement.with_changes(body=cst.IndentedBlock(body=[raise_statement])))
                feature_guards.extend(
                    (part, message) for part in conjuncts(statement.test) if set(names_read(part)) & set(inputs)
                )
                continue
        if matches(statement, m.SimpleStatementLine(body=[m.Assign(targets=[m.AssignTarget(m.Name())])])):
            if not set(names_read(statement)) & halves:
                gated.append(statement)
                continue
        raise source.refuse(statement, _UNRECOGNIZED_COMBINE, fix=_CUSTOM_COMBINE_FIX)
    return tuple(gated)


def _cat_sites(
    source: SourceModule,
    before_loop: Sequence[cst.BaseStatement],
    condition: cst.BaseExpression,
    positions: tuple[int, ...],
    dropped: set[int],
    index: NodeIndex,
) -> tuple[list[CatSite], int]:
    """The concatenation sites, and the position of the first statement holding one. `positions`: the part of the
    batch each guider batch takes, conditional first.

    Inside a CFG branch only the concatenations are sites; the rest of the branch (computing the negative
    embeddings, say) stays, still conditioned on CFG, which the guider decides at run time.
    """
    kept = [statement for statement in before_loop if id(statement) not in dropped]
    found: list[tuple[int, CatSite]] = []
    for node in index.find(cst.If, within=kept):
        if not _is_cfg(node.test, condition):
            continue
        _refuse_per_condition_alternatives(source, node)
        # (a concatenation moved to a device or dtype leaves the branch: each half is moved under the CFG flag)
        whole = len(node.body.body) == 1 and node.orelse is None and not _moved_concatenation(node.body.body[0])
        for line in node.body.body:
            if _concatenation(line) is not None:
                site = _cat_site(source, line, node if whole else line, positions)
                found.append((list(before_loop).index(index.statement_of(node)), site))
                continue
            paired = paired_per_item(line)
            if paired is not None:
                # a list of per-layer tensors each concatenated with its negative (IP-Adapter image embeddings):
                # a pair, merged layer by layer
                listed, negative, first = paired
                _two_batches_only(source, line, positions)
                if (first == listed) != (positions[0] == 0):
                    raise source.refuse(
                        line, f"`{listed}` is concatenated in the opposite order to the prediction's chunks"
                    )
                site = CatSite(line, listed, listed, negative, layers=True)
                found.append((list(before_loop).index(index.statement_of(node)), site))
                continue
            listed = repeated_per_item(line)
            if listed is not None:
                _two_batches_only(source, line, positions)
                # a list of per-layer tensors each repeated: one value both conditions share, merged layer by layer
                site = CatSite(node if len(node.body.body) == 1 else line, listed, listed, listed, layers=True)
                found.append((list(before_loop).index(index.statement_of(node)), site))
                continue
            for cat in findall(line, TORCH_CAT | BATCH_REPEAT):
                if cat_elements(cat) is not None:
                    raise source.refuse(
                        cat,
                        "a concatenation for CFG inside a compound statement: only `name = torch.cat([...])` on a "
                        "line of its own under the CFG flag is undone for the guider's batches",
                    )
    assigned: set[int] = set()
    choices = index.find(cst.Assign, m.Assign(value=m.IfExp()), within=kept)
    negative_tests = _negative_existence_tests(choices)
    for node in choices:
        if _is_cfg(node.value.test, condition) or _doubled_when_negative_exists(node.value, negative_tests):
            if _doubled_size(node.value) and isinstance(node.targets[0].target, cst.Name):
                _two_batches_only(source, node, positions)
                # `batch_multiplier = 2 if cfg else 1`: one batch's size, a value both conditions share
                name = node.targets[0].target.value
                site = CatSite(node.value, name, name, name, single=node.value.orelse.with_changes(lpar=[], rpar=[]))
                found.append((list(before_loop).index(index.statement_of(node)), site))
                assigned.add(id(node.value))
                continue
            site = _cat_site(source, cst.SimpleStatementLine([node]), node.value, positions, node.value.body, node)
            found.append((list(before_loop).index(index.statement_of(node)), site))
            assigned.add(id(node.value))
    for node in index.find(cst.IfExp, within=kept):
        if not _is_cfg(node.test, condition) or id(node) in assigned:
            continue
        # `x = x.expand(2 * n if cfg else n, -1)`: sized (or repeated) for the doubled batch inside an expression
        # assigned to a name: one batch's size there, and the name a value both conditions share
        line = index.statement_of(node)
        assigned_line = m.SimpleStatementLine(body=[m.Assign(targets=[m.AssignTarget(m.Name())])])
        lines = [x for x in findall(line, assigned_line) if any(n is node for n in walk(x.body[0].value))]
        if not _doubled_size_or_value(node) or not lines:
            raise source.refuse(
                node,
                "a value sized or built for the CFG batch inside an expression: only `name = <doubled> if <flag> else "
                "<single>` on a line of its own, or a size `2 * n if <flag> else n` (a repeat) inside the value "
                "assigned to a name, is undone for the guider's batches",
            )
        _two_batches_only(source, node, positions)
        name = lines[0].body[0].targets[0].target.value
        site = CatSite(node, name, name, name, single=node.orelse.with_changes(lpar=[], rpar=[]))
        found.append((list(before_loop).index(line), site))
    found.sort(key=lambda pair: pair[0])
    first = found[0][0] if found else len(before_loop)
    return [site for _, site in found], first


def _negative_existence_tests(choices: Sequence[cst.Assign]) -> list[cst.BaseExpression]:
    """The tests of `x = torch.cat([x, negative]) if negative is not None else x` among `choices`: each says it for the
    other concatenations made under it (`negative_embeds_pooled` beside `negative_embeds`)."""
    return [node.value.test for node in choices if _doubled_when_negative_exists(node.value)]


def _doubled_when_negative_exists(choice: cst.IfExp, tests: Sequence[cst.BaseExpression] = ()) -> bool:
    """`torch.cat([embeds, negative]) if negative is not None else embeds`: doubled for CFG exactly when the negative
    it concatenates exists (the pipeline makes negatives when CFG is on): a CFG concatenation like one under the
    flag. Also under one of `tests`, the tests of such concatenations."""
    elements = cat_elements(choice.body) if matches(choice.body, TORCH_CAT) else None
    if elements is None or len(elements) != 2 or not all(isinstance(e, cst.Name) for e in elements):
        return False
    if not isinstance(choice.orelse, cst.Name) or choice.orelse.value not in {e.value for e in elements}:
        return False
    (other,) = [e.value for e in elements if e.value != choice.orelse.value] or [None]
    exists = m.Comparison(left=m.Name(other), comparisons=[m.ComparisonTarget(m.IsNot(), m.Name("None"))])
    if other is not None and matches(choice.test, exists):
        return True
    return any(same_expression(choice.test, test) for test in tests)


def _two_batches_only(source: SourceModule, node: cst.CSTNode, positions: tuple[int, ...]) -> None:
    """A batch doubled item by item or sized twice (`2 * n if cfg else n`) is made for two parts: refused where the
    prediction splits into more."""
    if len(positions) != 2:
        raise source.refuse(
            node, f"a value built for a batch of two parts, where the prediction splits into {len(positions)}"
        )


def _doubled_size(choice: cst.IfExp) -> bool:
    """`2 * n if cfg else n` (or `n * 2`), `2 if cfg else 1`: the doubled batch's size against one batch's."""
    on, off = choice.body, choice.orelse
    if matches(on, m.Integer("2")) and matches(off, m.Integer("1")):
        return True
    if isinstance(on, cst.BinaryOperation) and isinstance(on.operator, cst.Multiply):
        for two, size in ((on.left, on.right), (on.right, on.left)):
            if matches(two, m.Integer("2")) and same_expression(size, off):
                return True
    return False


def _doubled_size_or_value(choice: cst.IfExp) -> bool:
    """`_doubled_size`, or a repeat `torch.cat([x] * 2) if cfg else x`."""
    if _doubled_size(choice):
        return True
    on, off = choice.body, choice.orelse
    elements = cat_elements(on)
    repeated = elements is not None and len(elements) == 2 and all(same_expression(e, off) for e in elements)
    return repeated or doubles(on, off)


def _refuse_per_condition_alternatives(source: SourceModule, branch: cst.If) -> None:
    """`if do_cfg: fps = tensor([f, f]) else: fps = tensor([f])` builds a value for the doubled batch and another
    for the single one; which one a guider batch needs is not what the flag says (every batch is single), and
    telling the two apart would take knowing what each computes. A value the branch concatenates for CFG (undone
    for the guider's batches) or sets to a constant is per batch either way: with CFG off the `else` computes it,
    as the source does.

        if do_cfg:
            embeds = torch.cat([negative_embeds, embeds])   # a concatenation site: per batch once undone
        else:
            embeds = prompt_embeds                         # runs with CFG off only
    """
    if not isinstance(branch.orelse, cst.Else):
        return
    both = set(flow_of(branch.body.body).writes) & set(flow_of(branch.orelse.body.body).writes)
    per_batch = {
        line.body[0].targets[0].target.value
        for line in branch.body.body
        if (_concatenation(line) is not None or _assigned_constant(line)) and _written_once(branch.body.body, line)
    }
    unknown = sorted(both - per_batch)
    if unknown:
        raise source.refuse(
            branch,
            f"`{unknown[0]}` is computed one way under the CFG flag and another way without it: the guider runs "
            "each condition as a batch of its own, and which of the two values a batch needs cannot be told",
        )


def _assigned_constant(line: cst.CSTNode) -> bool:
    assignment = m.SimpleStatementLine(body=[m.Assign(targets=[m.AssignTarget(m.Name())])])
    return matches(line, assignment) and is_constant(line.body[0].value)


def _written_once(statements: Sequence[cst.BaseStatement], line: cst.SimpleStatementLine) -> bool:
    name = line.body[0].targets[0].target.value
    return sum(name in flow_of([s]).writes for s in statements) == 1


def _refuse_helpers_batching_on_the_property(
    source: SourceModule,
    facts: ClassFacts,
    statements: Sequence[cst.CSTNode],
    condition: cst.BaseExpression,
    index: NodeIndex,
) -> None:
    """A helper that reads the CFG property itself (not a flag it is handed) and concatenates under it would
    concatenate inside every guider batch (I2VGen-XL's `_encode_image`)."""
    if not matches(condition, m.Attribute(value=m.Name("self"))):
        return
    checked: set[str] = set()  # a helper called more than once is read once
    for call in index.find(cst.Call, m.Call(func=m.Attribute(value=m.Name("self"), attr=m.Name())), within=statements):
        helper = facts.methods.get(call.func.attr.value)
        if helper is None or helper.name.value in checked:
            continue
        checked.add(helper.name.value)
        for branch in findall(helper.body, m.If() | m.IfExp()):
            if not _contains_cfg(branch.test, condition):
                continue
            if any(cat_elements(cat) is not None for cat in findall(branch.body, TORCH_CAT)):
                raise source.refuse(
                    call,
                    f"`{helper.name.value}` concatenates for CFG inside itself under `{code(condition)}`: the guider "
                    "runs each condition as a batch of its own, and a concatenation it does not see cannot be undone",
                    fix="hand the helper the flag as an argument (the converter turns a repeat off per batch)",
                )


def _concatenation(line: cst.CSTNode) -> cst.Call | None:
    """`name = torch.cat([...])`, or `name = torch.cat([...]).to(...)` -> the `torch.cat` call."""
    if matches(line, m.SimpleStatementLine(body=[m.Assign(targets=[m.AssignTarget(m.Name())])])):
        cat, _ = _moved(line.body[0].value)
        return cat if matches(cat, TORCH_CAT | BATCH_REPEAT | LIST_CAT) else None
    return None


def _moved_concatenation(line: cst.CSTNode) -> bool:
    return _concatenation(line) is not None and bool(_moved(line.body[0].value)[1])


def _moved(value: cst.BaseExpression) -> tuple[cst.BaseExpression, tuple[cst.Call, ...]]:
    """`torch.cat([a, b]).to(dtype=d).bool()` -> (`torch.cat([a, b])`, the two calls, innermost first): a move to a
    device or dtype, a cast or a copy acts on each sample alone, so it may as well act on each half."""
    applied: list[cst.Call] = []
    while matches(value, PER_SAMPLE_CALL):
        applied.insert(0, value)
        value = value.func.value
    return value, tuple(applied)


def _cat_site(
    source: SourceModule,
    line: cst.CSTNode,
    replace: cst.CSTNode,
    positions: tuple[int, ...],
    cat: cst.CSTNode | None = None,
    anchor: cst.CSTNode | None = None,
) -> CatSite:
    """`positions`: the part of the batch each guider batch takes, conditional first. `anchor`: the node errors
    point at (`line` may be built here, without a source position)."""
    anchor = anchor if anchor is not None else line
    pattern = m.SimpleStatementLine(body=[m.Assign(targets=[m.AssignTarget(m.Name())])])
    if not matches(line, pattern):
        raise source.refuse(anchor, "unrecognized statement in a classifier-free-guidance branch")
    assign = line.body[0]
    target = assign.targets[0].target.value
    value, applied = _moved(assign.value) if cat is None else (cat, ())
    elements = cat_elements(value)
    ways = len(positions)
    if elements is not None and len(elements) == ways:
        for position, element in enumerate(elements):
            if not isinstance(element, cst.Name) and nameable(element):
                # `torch.zeros_like(x)` as the unconditional part: named, and the analysis starts again
                raise ComputedCatPart(element, target, position)
    if elements is None or len(elements) != ways or not all(isinstance(e, cst.Name) for e in elements):
        what = "two tensors `[uncond, cond]`" if ways == 2 else f"{ways} tensors, one per part of the prediction"
        raise source.refuse(anchor, f"a CFG-dependent value that is not a concatenation of {what}")
    names = [e.value for e in elements]
    many = () if ways == 2 else tuple(names)
    if len(set(names)) == 1:
        # `x = torch.cat([x, x])`: the same value for both conditions, which the guider hands to every batch
        return CatSite(replace, target, names[0], names[0], applied, others=(names[0],) * (ways - 2), elements=many)
    cond_index, uncond_index = positions[:2]
    if target in names and names[cond_index] != target:
        raise source.refuse(
            anchor,
            f"`{target}` is concatenated in the opposite order to the prediction's chunks "
            f"(the combine formula takes chunk {uncond_index} as unconditional)"
            if ways == 2
            else f"`{target}` is not in the part of the batch the other concatenations make conditional "
            f"(part {cond_index} of {ways})",
        )
    others = tuple(names[at] for at in positions[2:])
    return CatSite(replace, target, names[cond_index], names[uncond_index], applied, others=others, elements=many)


def cfg_helper_calls(
    facts: ClassFacts, statements: Sequence[cst.CSTNode], flags: Sequence[cst.BaseExpression], index: NodeIndex
) -> list[HelperUse]:
    """Calls of helper methods that receive the CFG flag and concatenate for CFG inside.

    `self.prepare_ip_adapter_image_embeds(..., self.do_classifier_free_guidance)`, whose body does
    `if do_classifier_free_guidance: embeds = torch.cat([negative, embeds])`, pairs inside (it cannot be undone
    from outside yet); `self.prepare_mask_latents(..., self.do_classifier_free_guidance)`, whose body does
    `mask = torch.cat([mask] * 2) if do_classifier_free_guidance else mask`, only repeats.
    """
    found = []
    for call in index.find(cst.Call, m.Call(func=m.Attribute(value=m.Name("self"), attr=m.Name())), within=statements):
        helper = facts.methods.get(call.func.attr.value)
        if helper is None:
            continue
        received = _argument_receiving(helper, call, flags)
        if received is None:
            continue
        flag, argument = received
        kinds = _concatenations_under(helper, flag)
        if kinds:
            found.append(HelperUse(call, helper.name.value, argument, flag, pairs="pairs" in kinds))
    return found


def _results_split(
    source: SourceModule,
    facts: ClassFacts,
    use: HelperUse,
    index: NodeIndex,
    condition: cst.BaseExpression,
    positions: tuple[int, ...],
    halved: tuple[set[str], set[str]],
    split_lists: bool = True,
) -> bool:
    """True when what a pairing helper returns doubled is split where `__call__` receives it (or thrown away), so
    the guider can pair the halves; raises `HelperDoublesResults` when it can be split but is not yet; False when
    it cannot be (the call is not a line of `__call__` of its own assigning the results, or which results come back
    doubled cannot be told)."""
    results = doubled_results(facts.methods[use.helper], use.parameter)
    line = index.statement_of(use.call)
    assigned = m.SimpleStatementLine(body=[m.Assign(targets=[m.AssignTarget()])])
    if results is not None and not matches(line, assigned) and all(r == LISTED for r in results if r):
        # (lists of doubled values under an input's test, `if ip_adapter_image is not None: embeds = self.prepare_
        # ip_adapter_image_embeds(...)`: split on the helper call's own line; a tensor there stays gated)
        line = next((n for n in walk(line) if matches(n, assigned) and n.body[0].value is use.call), line)
    if results is None or not any(results) or not matches(line, assigned) or line.body[0].value is not use.call:
        return False
    target = line.body[0].targets[0].target
    elements = [e.value for e in target.elements] if isinstance(target, (cst.Tuple, cst.List)) else [target]
    if len(elements) != len(results) or not all(isinstance(e, cst.Name) for e in elements):
        return False
    names = [e.value for e, doubled in zip(elements, results, strict=True) if doubled and e.value != "_"]
    listed = [e.value for e, doubled in zip(elements, results, strict=True) if doubled == LISTED and e.value != "_"]
    if listed and (len(positions) != 2 or not split_lists):
        return False  # (a list of values doubled for three-way guidance, or one the analysis could not pair)
    tensors, lists = halved
    pending = [name for name in names if name not in (lists if name in listed else tensors)]
    if pending:
        listed = tuple(name for name in listed if name in pending)
        raise HelperDoublesResults(line, pending, condition, positions, source.positions.get(line), listed)
    return True


def _halved_under(
    before_loop: Sequence[cst.BaseStatement], condition: cst.BaseExpression, dropped: set[int], index: NodeIndex
) -> tuple[set[str], set[str]]:
    """Names split in two halves under the CFG flag before the loop: `if cfg: u, x = x.chunk(2)` -> {"x"}; and lists
    split item by item there: `x = [item.chunk(2)[1] for item in x]` -> {"x"}."""
    kept = [statement for statement in before_loop if id(statement) not in dropped]
    halving = m.SimpleStatementLine(body=[m.Assign(targets=[m.AssignTarget(m.Tuple())])])
    found, lists = set(), set()
    for branch in index.find(cst.If, within=kept):
        if _is_cfg(branch.test, condition):
            for line in branch.body.body:
                if matches(line, halving) and (split := split_batch(line.body[0].value)) is not None:
                    found.add(split[0])
                elif (halved_list := halved_per_item(line)) is not None:
                    lists.add(halved_list)
    return found, lists


def _gate_outside_helpers(
    facts: ClassFacts, statements: Sequence[cst.CSTNode], flags: Sequence[cst.BaseExpression], index: NodeIndex
) -> None:
    """A method the file does not define (a mixin's), handed the CFG flag in the body of a top-level `if`, may
    batch for CFG where nothing shows it: that `if` is turned into an error (`HelperOutsideTheFile`, and the
    analysis starts again). Elsewhere such a call is taken to do nothing for CFG, as it always was."""
    for call in index.find(cst.Call, m.Call(func=m.Attribute(value=m.Name("self"), attr=m.Name())), within=statements):
        if call.func.attr.value in facts.methods or not any(_is_cfg(a.value, f) for a in call.args for f in flags):
            continue
        holder = index.statement_of(call)
        if isinstance(holder, cst.If) and any(node is call for node in walk(holder.body)):
            raise HelperOutsideTheFile(holder, call.func.attr.value, facts.name)


def _argument_receiving(helper: cst.FunctionDef, call: cst.Call, flags: Sequence[cst.BaseExpression]):
    """(parameter name, argument) of the call argument that passes the CFG flag (any of its `flags` spellings)."""
    params = [p.name.value for p in (*helper.params.posonly_params, *helper.params.params)]
    params = [p for p in params if p != "self"]
    position = 0
    for arg in call.args:
        passes_flag = any(_is_cfg(arg.value, flag) for flag in flags)
        if arg.keyword is not None:
            if passes_flag:
                return arg.keyword.value, arg
            continue
        if passes_flag and position < len(params):
            return params[position], arg
        position += 1
    return None


def _concatenations_under(helper: cst.FunctionDef, flag: str) -> set[str]:
    """How the helper concatenates when the flag is set: {"pairs"}, {"repeats"}, both or neither."""
    kinds = set()
    guarded: list[cst.CSTNode] = []
    for branch in findall(helper.body, m.If() | m.IfExp()):
        if any(matches(part, m.Name(flag)) for part in conjuncts(branch.test)):
            guarded.append(branch.body)
    for node in guarded:
        for cat in findall(node, TORCH_CAT) if not matches(node, TORCH_CAT) else [node]:
            elements = cat_elements(cat)
            if elements is None:
                continue  # not along the batch (`dim=-2` joins sequences): not CFG batching
            repeats = all(same_expression(e, elements[0]) for e in elements)
            kinds.add("repeats" if repeats else "pairs")
    return kinds


def _line_of(index: NodeIndex, node: cst.CSTNode) -> cst.CSTNode:
    """The simple statement holding a node, however deep in compound statements (SDXL ControlNet-XS prepares its
    control image under `if isinstance(unet, ...)`)."""
    for line in index.find(cst.SimpleStatementLine, within=[index.statement_of(node)]):
        if any(found is node for found in walk(line)):
            return line
    return index.statement_of(node)


def _assigned_names(statement: cst.CSTNode) -> list[str]:
    if matches(statement, m.SimpleStatementLine(body=[m.Assign()])):
        names = []
        for target in statement.body[0].targets:
            node = target.target
            elements = node.elements if isinstance(node, (cst.Tuple, cst.List)) else [node]
            for element in elements:
                value = element.value if isinstance(element, cst.Element) else element
                if isinstance(value, cst.Name):
                    names.append(value.value)
        return names
    return []


def _unrepeats(
    source: SourceModule,
    body: Sequence[cst.BaseStatement],
    condition: cst.BaseExpression,
    repeated: Sequence[str],
    handled: set[int],
    dropped: set[int],
) -> list[tuple[cst.CSTNode, cst.CSTNode]]:
    """`if cfg: x, _ = mask.chunk(2) else: x = mask` undoes a repeat the guider never made: keep the `else`.
    In a conditional expression, the halves of the repeat are the value itself:
    `x, *_ = mask.chunk(2) if cfg else mask` -> `x, *_ = (mask, mask) if cfg else mask`.

    Any other CFG branch in the loop is guidance this converter does not understand, and is refused.
    """
    rewrites = []
    for statement in body:
        if id(statement) in handled or id(statement) in dropped:
            continue
        for choice in findall(statement, m.IfExp()):
            halves = m.Call(func=m.Attribute(value=m.Name(), attr=m.Name("chunk")), args=[m.Arg(m.Integer("2"))])
            if _is_cfg(choice.test, condition) and matches(choice.body, halves):
                value = choice.body.func.value
                if value.value in repeated:
                    both = cst.Tuple([cst.Element(value), cst.Element(value)])
                    rewrites.append((choice.body, both))
        for branch in findall(statement, m.If()):
            if not _contains_cfg(branch.test, condition):
                continue
            taken = _unrepeat_else(branch, repeated)
            if taken is None:
                raise source.refuse(
                    branch, "a classifier-free-guidance branch in the loop this converter does not know"
                )
            rewrites.append((branch, taken))
    return rewrites


def _unrepeat_else(branch: cst.If, repeated: Sequence[str]) -> cst.CSTNode | None:
    found = _chunk(branch.body.body[0]) if len(branch.body.body) == 1 else None
    if found is None:
        return None
    if not isinstance(branch.orelse, cst.Else) or len(branch.orelse.body.body) != 1:
        return None
    chunked = found[0]
    otherwise = branch.orelse.body.body[0]
    plain = m.SimpleStatementLine(body=[m.Assign(targets=[m.AssignTarget(m.Name())], value=m.Name(chunked))])
    if chunked not in repeated or not matches(otherwise, plain):
        return None
    return otherwise


def over_call_locals(expression: cst.BaseExpression, per_call: Mapping[str, str]) -> cst.BaseExpression:
    """Per-call state read as the `__call__` locals it is set from: `self._guidance_scale > 1` -> `guidance_scale > 1`."""
    from ...cst.substitute import replace_nodes

    replacements = {}
    for attribute in findall(expression, m.Attribute(value=m.Name("self"))):
        local = per_call.get(attribute.attr.value)
        if local is not None:
            replacements[attribute] = cst.Name(local)
    return replace_nodes(expression, replacements)


def condition_text(expression: cst.BaseExpression, per_call: Mapping[str, str]) -> str:
    """The CFG condition over `__call__` arguments: `self._guidance_scale > 1` -> `guidance_scale > 1`."""
    text = code(over_call_locals(expression, per_call)).strip()
    try:  # one line however the source wrapped it (`ast` only parses; nothing runs)
        return ast.unparse(ast.parse(text, mode="eval"))
    except SyntaxError:
        return text
