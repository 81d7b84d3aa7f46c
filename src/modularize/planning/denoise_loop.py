"""The denoise stage: the loop wrapper and its before-denoiser / denoiser / after-denoiser steps.

    with self.progress_bar(total=num_inference_steps) as progress_bar:      wrapper: the loop itself, progress
        for i, t in enumerate(timesteps):
            latent_model_input = ...scale_model_input(latents, t)           before_denoiser
            noise_pred = self.unet(latent_model_input, t, ...)[0]           denoiser (guider batches, combine)
            latents = self.scheduler.step(noise_pred, t, latents)[0]        after_denoiser

Each step's inputs come from def-use over its rewritten statements: what it reads from outside the loop is
declared (`InputParam`), what another step produces is carried through the loop's block state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import libcst as cst
import libcst.matchers as m

from ..analysis.guidance.batched import CfgPattern
from ..analysis.loop_header import fresh_name, loop_header, with_step_index
from ..analysis.rewrite_context import Context, Rewritten, helpers_and_components
from ..analysis.segment import Segment, runs_around
from ..cst.dataflow import Flow, flow_of, names_read, without_dead_assignments
from ..cst.substitute import rewrite_statements, substitute_names
from ..cst.tree_walk import findall, walk
from ..frontend.parse import SourceModule, code, snippet
from ..transforms.guidance import guider_denoise
from .plan import GuidanceField, LoopPlan, LoopStepPlan, Output, Param

_PROGRESS_BAR = m.WithItem(
    item=m.Call(func=m.Attribute(value=m.Name("self"), attr=m.Name("progress_bar"))), asname=m.AsName(name=m.Name())
)
_STEP_KEYS = ("before_denoiser", "denoiser", "after_denoiser")
_STEP_CLASSES = ("LoopBeforeDenoiser", "LoopDenoiser", "LoopAfterDenoiser")


@dataclass
class LoopParts:
    """The denoise stage split into the wrapper and its three steps, rewritten, with their def-use facts."""

    context: Context
    segment: Segment
    targets: tuple[str, ...]
    wrapper: Rewritten
    steps: list[Rewritten]
    step_extra_reads: list[tuple[str, ...]]  # names a step reads through the guider (not visible as code)
    step_local_writes: list[tuple[str, ...]]  # names a step rebinds per guider batch (not results of the step)
    step_lines: list[tuple[int, int]]
    shared: tuple[str, ...] = ()  # what an outer loop and the steps both use, in the loop's block state

    @property
    def rewritten(self) -> list[Rewritten]:
        return [self.wrapper, *self.steps]

    @property
    def writes(self) -> set[str]:
        names = set(flow_of(self.wrapper.body).writes) | set(self.shared)
        for flow in self._step_flows(None):
            names |= set(flow.writes)
        return names - self.context.reserved_names

    def _step_flows(self, variables: set[str] | None) -> list[Flow]:
        """Def-use of each step. The denoiser rebinds guider fields per batch (`prompt_embeds = batch.prompt_embeds`):
        those stay local to the step, the names read through the guider count as reads instead."""
        flows = []
        for step, extra, local in zip(self.steps, self.step_extra_reads, self.step_local_writes, strict=True):
            flow = flow_of(step.body, bound=self.targets)
            reads = [n for n in (*flow.reads, *extra) if variables is None or n in variables]
            writes = tuple(n for n in flow.writes if n not in local and n not in self.context.reserved_names)
            flows.append(Flow(tuple(dict.fromkeys(reads)), writes, flow.definite - set(local)))
        return flows

    def flow(self, variables: set[str]) -> Flow:
        """The whole loop seen from outside: what it reads from earlier blocks, what it writes."""
        wrapper = flow_of(self.wrapper.body)
        reads = [n for n in wrapper.reads if n in variables]
        produced_inside: set[str] = set()
        for flow in self._step_flows(variables):
            reads += [n for n in flow.reads if n not in produced_inside and n not in wrapper.writes]
            produced_inside |= set(flow.writes)
        writes = [*wrapper.writes, *self.shared, *[n for f in self._step_flows(variables) for n in f.writes]]
        # the loop may run zero times: nothing it writes is definite
        return Flow(tuple(dict.fromkeys(reads)), tuple(dict.fromkeys(writes)), frozenset(wrapper.definite))

    def plan(self, context: Context, key: str, segment: Segment, inputs: tuple[Param, ...], read_after: set[str]):
        naming = context.naming
        # a step's plain assignments no step, the wrapper or later blocks read (`apply_cfg` once CFG is the
        # guider's) go
        for index, step in enumerate(self.steps):
            others = [s for j, s in enumerate(self.steps) if j != index] + [self.wrapper]
            live = {n for other in others for statement in other.body for n in names_read(statement)} | read_after
            live |= set(self.step_extra_reads[index])
            step.body, dead = without_dead_assignments(step.body, live)
            for statement in dead:
                what = f"`{snippet(statement)}`"
                context.note("dropped", None, what, "nothing reads it once guidance is the guider's", "safe")
        # and the wrapper's, set up for code that is gone (`old_pred_original_sample = None` read by a callback)
        live = {n for part in self.rewritten for statement in part.body for n in names_read(statement)} | read_after
        self.wrapper.body, dead = _without_dead_setup(self.wrapper.body, live)
        for statement in dead:
            context.note("dropped", None, f"`{snippet(statement)}`", "nothing in the loop reads it", "safe")
        variables = {p.name for p in inputs} | self.writes
        wrapper_flow = flow_of(self.wrapper.body)
        flows = self._step_flows((variables | set(wrapper_flow.writes)) - context.reserved_names)
        step_reads = {n for f in flows for n in f.reads}
        inputs_by_name = {p.name: p for p in inputs}
        step_plans = []
        produced_this_iteration: set[str] = set()
        for index, (rewritten, flow) in enumerate(zip(self.steps, flows, strict=True)):
            others = {n for j, f in enumerate(flows) if j != index for n in f.reads}
            carried_out = [n for n in flow.writes if n in others or n in flow.reads or n in read_after]
            declared = [
                inputs_by_name[n]
                for n in flow.reads
                if n in inputs_by_name and n not in produced_this_iteration and n not in wrapper_flow.writes
            ]
            carried_in = [n for n in flow.reads if n not in {p.name for p in declared}]
            # written on some paths only (`if cfg: negative_... = ...`) and bound nowhere else: starts as None; so
            # does one this step reads where it may be unset, when nothing else sets it (`if conditioning: x = ...`
            # above `if conditioning: ... x ...`): the source reads it exactly where it set it
            written_elsewhere = {n for j, f in enumerate(flows) if j != index for n in f.writes}
            written_elsewhere |= set(wrapper_flow.writes) | set(inputs_by_name)
            self_only = [
                n for n in carried_in if n in flow.writes and n not in flow.definite and n not in written_elsewhere
            ]
            carried_in = [n for n in carried_in if n not in self_only]
            unbound = [n for n in carried_out if n not in flow.definite and (n not in flow.reads or n in self_only)]
            outputs = tuple(Output(n, n, "Denoised by the loop.") for n in carried_out if n in read_after)
            produced_this_iteration |= set(flow.writes)
            class_name = naming.prefix + _STEP_CLASSES[index]
            needs = helpers_and_components(context, rewritten.used, class_name)
            step_plans.append(
                LoopStepPlan(
                    key=_STEP_KEYS[index],
                    class_name=class_name,
                    body=tuple(rewritten.body),
                    inputs=tuple(declared),
                    guided=tuple(n for n in self.step_extra_reads[index] if n not in flow_of(rewritten.body).reads),
                    carried_in=tuple(carried_in),
                    carried_out=tuple(carried_out),
                    unbound=tuple(unbound),
                    outputs=outputs,
                    components=needs.components,
                    helpers=needs.helpers,
                    configs=needs.configs,
                    lines=self.step_lines[index],
                )
            )
        wrapper_inputs = tuple(inputs_by_name[n] for n in wrapper_flow.reads if n in inputs_by_name)
        to_block_state = tuple(n for n in wrapper_flow.writes if n in step_reads and n not in self.targets)
        from_steps = {o.name for step in step_plans for o in step.outputs}
        wrapper_outputs = [
            n
            for n in dict.fromkeys([*self.shared, *wrapper_flow.writes])
            if n in read_after and n not in from_steps and n not in self.targets
        ]
        wrapper_needs = helpers_and_components(context, self.wrapper.used, naming.prefix + "DenoiseLoopWrapper")
        return LoopPlan(
            key=key,
            class_name=naming.prefix + "DenoiseStep",
            wrapper_class_name=naming.prefix + "DenoiseLoopWrapper",
            label=segment.label,
            lines=context.source.line_span(segment.statements[0])[:1] + context.source.line_span(segment.loop)[1:],
            loop_targets=self.targets,
            wrapper_body=tuple(self.wrapper.body),
            inputs=wrapper_inputs,
            to_block_state=to_block_state,
            components=wrapper_needs.components,
            configs=wrapper_needs.configs,
            steps=tuple(step_plans),
            wrapper_outputs=tuple(Output(n, n, "Set by the denoising loop's wrapper.") for n in wrapper_outputs),
            written_back=tuple(n for n in wrapper_outputs if n not in self.shared),
            helpers=wrapper_needs.helpers,
        )


def split_loop(context: Context, segment: Segment, loop: cst.For, cfg: CfgPattern | None) -> LoopParts:
    source = context.source
    header = loop_header(loop)
    targets = header.targets
    step_index = header.step
    if cfg is not None and step_index is None:
        # the guider counts steps: a loop without an index (`for t in timesteps`) is given one
        taken = {n.value for n in walk(context.facts.call) if isinstance(n, cst.Name)} | context.reserved_names
        step_index = fresh_name("step_index", taken)
        targets = (step_index, *targets)
    body = list(loop.body.body)
    update = _progress_update(segment.loop)  # (one walk of the loop's statement, not one per body statement)
    progress = [s for s in body if findall(s, update)]
    denoiser_name = cfg.denoiser if cfg else _lone_denoiser(context, loop)
    if cfg is not None:
        call_statement = cfg.call_statement
        last = max(body.index(s) for s in cfg.guidance_statements)
    else:
        call_statement = next(
            s for s in body if findall(s, m.Call(func=m.Attribute(m.Name("self"), m.Name(denoiser_name))))
        )
        last = body.index(call_statement)
    call_index = body.index(call_statement)
    first_index = (
        body.index(cfg.first_statement) if cfg is not None and cfg.first_statement is not None else call_index
    )
    before = [s for s in body[:first_index] if s not in progress]
    after = [s for s in body[last + 1 :] if s not in progress]
    if cfg is not None:
        # The guider's step window is in loop iterations: with PNDM there are more timesteps than inference
        # steps, and `num_inference_steps` would switch CFG off on the last iteration.
        num_steps = f"len({code(header.sequence).strip()})"
        # a repeated input the per-batch code does not read went into one it does (`latent_image_input` into
        # `latent_model_input`): the guider need not hand it out
        per_batch = (cfg.call_statement, *cfg.between, *cfg.batch_statements, *cfg.batch_after)
        read = {name for statement in per_batch for name in names_read(statement)}
        # (a value both a repeat and a doubled shared value built (`ticks = t.expand(rows.shape[0]) * weight`) is
        # one field)
        paired = {field.name for field in cfg.fields}
        repeated = [name for name in dict.fromkeys(cfg.repeated) if name in read and name not in paired]
        fields = cfg.fields + tuple(GuidanceField(name, name, name) for name in repeated)
        denoiser_statements = guider_denoise(cfg, fields, step_index, header.timestep or "None", num_steps)
        extra_reads = tuple(dict.fromkeys(n for f in fields for n in (f.cond, f.uncond, *f.others)))
        local_writes = tuple(f.name for f in fields)
    else:
        denoiser_statements = [call_statement]
        extra_reads = local_writes = ()

    loop_step = cst.parse_statement(
        "components, block_state = self.loop_step(components, block_state, "
        + ", ".join(f"{t}={t}" for t in targets)
        + ")\n"
    )
    loop_node = loop.with_changes(body=cst.IndentedBlock(body=[loop_step, *progress]))
    if step_index != header.step:
        loop_node = with_step_index(loop_node, step_index)
    wrapper_statements = [*segment.statements[:-1], _replace_within(segment.loop, loop, loop_node)]
    # (a pipeline with a progress bar of its own, Marigold's taking `desc` and `leave`, has it copied as a helper)
    kept = ("loop_step",) if "progress_bar" in context.facts.methods else ("progress_bar", "loop_step")
    wrapper = context.rewrite(wrapper_statements, keep_on_self=kept)
    steps = [context.rewrite(before), context.rewrite(denoiser_statements), context.rewrite(after)]
    shared: list[str] = []
    if runs_around(segment.loop, loop):
        shared = _shared_with_steps(
            wrapper.body[-1], steps, extra_reads, local_writes, {*targets, *context.reserved_names}
        )
        wrapper.body[-1] = substitute_names(
            wrapper.body[-1], {name: cst.parse_expression(f"block_state.{name}") for name in shared}, True
        )
    lines = [_lines_of(source, before), _lines_of(source, [call_statement]), _lines_of(source, after)]
    if cfg is not None:
        lines[1] = (source.line_span(call_statement)[0], source.line_span(cfg.guidance_statements[-1])[1])
    return LoopParts(
        context, segment, targets, wrapper, steps, [(), extra_reads, ()], [(), local_writes, ()], lines, tuple(shared)
    )


def _shared_with_steps(
    statement: cst.BaseStatement,
    steps: Sequence[Rewritten],
    extra_reads: Sequence[str],
    batch_locals: Sequence[str],
    excluded: set[str],
) -> list[str]:
    """What an outer loop around the denoising loop and the steps both use: it runs again after the steps changed
    it (FreeInit re-noises the denoised `latents`) and may change what they read next (`timesteps`), so the outer
    loop reads and writes it in the loop's block state:

        for free_init_iter in range(num_free_init_iters):
            latents, timesteps = components._apply_free_init(latents, free_init_iter, ...)
            for i, t in enumerate(timesteps):
                components, block_state = self.loop_step(components, block_state, i=i, t=t)
    ->
        for free_init_iter in range(num_free_init_iters):
            block_state.latents, block_state.timesteps = components._apply_free_init(block_state.latents, ...)
            for i, t in enumerate(block_state.timesteps):
                ...
    """
    outer = flow_of([statement])
    used_by_steps, written_by_steps = set(extra_reads), set()
    for step in steps:
        flow = flow_of(step.body)
        used_by_steps |= {*flow.reads, *flow.writes}
        written_by_steps |= set(flow.writes) - set(batch_locals)  # (not a guider batch's own rebinding)
    # (what neither writes, an input both read or a module both call, is the same everywhere)
    written = set(outer.writes) | written_by_steps
    shared = {*outer.reads, *outer.writes} & used_by_steps & written
    return sorted(name for name in shared if name not in excluded)


def _progress_update(statement: cst.CSTNode) -> m.BaseMatcherNode:
    """`<bar>.update(...)` for the name `with self.progress_bar(...) as <bar>:` binds (`progress_bar` in diffusers):
    the wrapper keeps it, after each step."""
    names = [item.asname.name.value for item in findall(statement, _PROGRESS_BAR)] or ["progress_bar"]
    return m.Call(func=m.Attribute(value=m.OneOf(*(m.Name(n) for n in names)), attr=m.Name("update")))


def _lines_of(source: SourceModule, statements: Sequence[cst.CSTNode]) -> tuple[int, int]:
    spans = [source.line_span(s) for s in statements if source.line_span(s) != (0, 0)]
    return (spans[0][0], spans[-1][1]) if spans else (0, 0)


def _replace_within(root: cst.BaseStatement, old: cst.CSTNode, new: cst.CSTNode) -> cst.BaseStatement:
    """`root` with `old` replaced; the nodes off the path to it keep their identity, so the replacements the
    analysis keyed on them (a dropped `self._num_timesteps = ...` beside the loop) still apply."""
    if root is old:
        return new
    (replaced,) = rewrite_statements([root], {old: new})
    return replaced


def _without_dead_setup(
    statements: list[cst.BaseStatement], live: set[str]
) -> tuple[list[cst.BaseStatement], list[cst.BaseStatement]]:
    """`without_dead_assignments` through the `with` blocks around the loop."""
    kept, dead = without_dead_assignments(statements, live)
    for index, statement in enumerate(kept):
        if isinstance(statement, cst.With):
            body, inner = _without_dead_setup(list(statement.body.body), live)
            kept[index] = statement.with_changes(body=statement.body.with_changes(body=body))
            dead += inner
    return kept, dead


def _lone_denoiser(context: Context, loop: cst.For) -> str:
    """The model a loop without guidance calls last: models called before it feed it (a ControlNet), run as they
    are in the step before the denoiser's."""
    calls = findall(loop.body, m.Call(func=m.Attribute(value=m.Name("self"), attr=m.Name())))
    names = [c.func.attr.value for c in calls if c.func.attr.value in context.facts.init.models]
    first = names.index(names[-1]) if names else 0
    if not names or any(name != names[-1] for name in names[first:]):
        raise context.source.refuse(loop, "cannot tell which component is the denoiser in the loop")
    return names[-1]
