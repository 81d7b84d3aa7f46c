"""Analyze pass: `SourceModule` -> `PipelinePlan`.

The order matters and is the whole algorithm:

1. read the class (`class_facts`), split `__call__` into stages (`segment`);
2. locate what goes (`strip_runtime`), how CFG is batched (`guidance`), inputs that cannot be served
   (`feature_gates`) and per-call state assignments: all as replacements keyed by nodes of the original tree, so
   errors still point at source lines;
3. rewrite each stage's statements once (replacements, callbacks -> None, `self` -> `components`);
4. def-use analysis over the rewritten statements gives every block's inputs and outputs;
5. collect helpers, components, derived attributes and module-level dependencies each block needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import libcst as cst
import libcst.matchers as m

from .class_facts import ClassFacts, Parameter, analyze_class, docstring_of
from .dataflow import Flow, flow_of, names_read
from .docstrings import parameter_descriptions
from .guidance import BatchedCfg, cfg_helper_calls, condition_text, find_batched_cfg
from .naming import Naming, block_key
from .plan import (
    BlockPlan,
    Component,
    GuidanceField,
    GuidancePlan,
    Helper,
    LoopPlan,
    LoopStepPlan,
    ModuleDefinition,
    Note,
    Output,
    Param,
    PipelineClassPlan,
    PipelinePlan,
)
from .segment import Segment, find_timestep_loop, label_title, segment_call
from .source import SourceModule, code, find_pipeline_class, snippet
from .transforms._nodes import (
    Replacement,
    conjuncts,
    replace_nodes,
    rewrite_statements,
    same_expression,
    substitute_names,
)
from .transforms.feature_gates import FeatureGate, gate_message, gate_replacements
from .transforms.guidance import guider_denoise, unbatching_replacements
from .transforms.helpers import as_static_helper
from .transforms.imports import absolute_module
from .transforms.self_to_components import self_to_components
from .transforms.strip_runtime import find_runtime_plumbing, without_callbacks

# Standard-pipeline bases that do not carry over to a ModularPipeline subclass: the base itself, loaders that
# need `DiffusionPipeline.from_single_file`, and the IP-Adapter loader (IP-Adapter inputs are gated).
_DROPPED_BASES = ("DiffusionPipeline", "FromSingleFileMixin", "IPAdapterMixin", "ConfigMixin", "ModelMixin")
# Members a ModularPipeline provides itself; `self.<x>` of these are `components.<x>` without further ado.
_MODULAR_PIPELINE_MEMBERS = ("_execution_device", "device", "dtype", "components", "config")
_DISPLAY_ONLY_CALL = ("logger", "warnings", "deprecate")
# Names generated block code binds itself; a source that uses them as variables would collide.
RESERVED_NAMES = frozenset(
    {"self", "components", "state", "block_state", "guider_state", "guider_state_batch", "progress_bar"}
)


@dataclass
class _Rewritten:
    """Statements rewritten for one block, with what they use."""

    body: list[cst.BaseStatement]
    used: dict[str, dict[str, None]] = field(default_factory=dict)

    def merge(self, used: dict[str, dict[str, None]]) -> None:
        for kind, names in used.items():
            for name in names:
                self.used.setdefault(kind, {}).setdefault(name, None)


class _Context:
    """What every rewrite needs: the facts, the replacements and the notes gathered so far."""

    def __init__(self, source: SourceModule, facts: ClassFacts, naming: Naming):
        self.source = source
        self.facts = facts
        self.naming = naming
        self.replacements: dict[cst.CSTNode, Replacement] = {}
        self.notes: list[Note] = []
        self.helper_usage = _Rewritten([])  # what copied helpers use (components, derived attributes, ...)
        self.condition_name: str | None = None  # the CFG property, the one per-call state helpers may read
        origin_module = source.module_name or source.label
        self.origin = f"{origin_module}.{facts.name}"

    def note(self, action: str, node: cst.CSTNode | None, what: str, why: str, safety: str = "safe") -> None:
        line = self.source.line_span(node)[0] if node is not None else 0
        self.notes.append(Note(action, what, why, line, safety))

    def meaning(self, attribute: str) -> str:
        if attribute in _MODULAR_PIPELINE_MEMBERS:
            return "modular"
        return self.facts.kind_of(attribute)

    def rewrite(self, statements: Sequence[cst.BaseStatement], keep_on_self: Sequence[str] = ()) -> _Rewritten:
        result = _Rewritten([])
        for statement in rewrite_statements(list(statements), self.replacements):
            statement = without_callbacks(statement)
            statement, used = self_to_components(statement, self.meaning, self.facts.per_call, "self", keep_on_self)
            result.body.append(statement)
            result.merge(used)
        return result


def call_body(facts: ClassFacts) -> list[cst.BaseStatement]:
    body = list(facts.call.body.body)
    if body and docstring_of(facts.call):
        body = body[1:]
    return body


def analyze(source: SourceModule, class_name: str | None = None) -> PipelinePlan:
    facts = analyze_class(source, find_pipeline_class(source, class_name))
    naming = Naming.of_pipeline(facts.name)
    context = _Context(source, facts, naming)
    body = call_body(facts)
    segments = segment_call(source, body)
    denoise = next(s for s in segments if s.kind == "denoise")
    loop = find_timestep_loop(denoise.loop)

    drops, returns = find_runtime_plumbing(body)
    for drop in drops:
        context.replacements[drop.node] = cst.RemoveFromParent()
        context.note("dropped", drop.node, drop.what, drop.why, drop.safety)
    dropped = {id(drop.node) for drop in drops}
    outputs = _output_fields(source, returns)

    cfg = find_batched_cfg(source, facts, body, denoise.loop, loop, dropped)
    if cfg is not None:
        context.condition_name = cfg.condition_name
        context.replacements.update(unbatching_replacements(cfg))
        _note_guidance(context, cfg)
        gates = _feature_gates(context, body[: body.index(denoise.loop)], cfg)
        for gate in gates:
            context.replacements.update(gate_replacements(gate, body))
    else:
        gates = []
    _per_call_assignments(context, body, dropped)

    blocks: list[BlockPlan | LoopPlan] = []
    rewritten: list[tuple[Segment, _Rewritten]] = []
    for segment in segments:
        if segment.kind == "denoise":
            rewritten.append((segment, _Rewritten([])))
            continue
        result = context.rewrite(segment.statements)
        if result.body:  # a stage made only of runtime plumbing disappears
            rewritten.append((segment, result))
    segments = [segment for segment, _ in rewritten]
    loop_parts = _split_loop(context, denoise, loop, cfg)

    call_parameters = {p.name: p for p in facts.call_parameters if not p.star}
    variables = set(call_parameters)
    for _, result in rewritten:
        variables |= set(flow_of(result.body).writes)
    variables |= loop_parts.writes
    variables -= RESERVED_NAMES

    flows = []
    for segment, result in rewritten:
        if segment.kind == "denoise":
            flows.append(loop_parts.flow(variables))
        else:
            flow = flow_of(result.body)
            flows.append(Flow(tuple(n for n in flow.reads if n in variables), flow.writes, flow.definite))

    final_locals = {local for _, local in outputs}
    descriptions = parameter_descriptions(facts.call_docstring)
    keys = _unique_keys(segments)
    produced_by: dict[str, str] = {}
    for index, ((segment, result), flow) in enumerate(zip(rewritten, flows, strict=True)):
        later_reads = {name for later in flows[index + 1 :] for name in later.reads}
        key = keys[index]
        block_outputs = [n for n in flow.writes if n in later_reads or n in final_locals]
        if segment.kind == "denoise":
            block_outputs = [n for n in block_outputs if n in later_reads or n in final_locals]
        needed = list(flow.reads) + [n for n in block_outputs if n not in flow.definite and n not in flow.reads]
        inputs, unbound = [], []
        for name in needed:
            if name in produced_by or name in call_parameters:
                inputs.append(_param(name, produced_by.get(name), call_parameters, descriptions))
            elif name in block_outputs:
                unbound.append(name)
            else:
                raise source.refuse(
                    segment.statements[0], f"`{name}` is read in stage {segment.label!r} but never defined before it"
                )
        output_params = tuple(_output(name, outputs, descriptions) for name in block_outputs)
        for name in block_outputs:
            produced_by[name] = key
        if segment.kind == "denoise":
            blocks.append(loop_parts.plan(context, key, segment, tuple(inputs), set(later_reads) | final_locals))
        else:
            blocks.append(_block_plan(context, key, segment, result, tuple(inputs), output_params, tuple(unbound)))

    guidance = _guidance_plan(context, cfg, call_parameters, descriptions)
    used_kinds = _merged_usage([r for _, r in rewritten] + loop_parts.rewritten)
    pipeline = _pipeline_class_plan(context, blocks, used_kinds, cfg)
    components = _components(context, blocks)
    block_arguments = tuple(
        name
        for name in call_parameters
        if any(p.name == name and p.producer is None for b in blocks for p in b.inputs)
    )
    guider_arguments = {p.name for p in guidance.arguments}
    unserved = tuple(
        (name, parameter.default or "None")
        for name, parameter in call_parameters.items()
        if name not in block_arguments and name not in guider_arguments and name != "return_dict"
    ) + tuple((drop.popped, "None") for drop in drops if drop.popped)
    for gate in gates:
        context.note("raises", gate.statement, " / ".join(f"`{n}`" for n in gate.inputs), gate.message, "unsafe")
    return PipelinePlan(
        source_label=source.label,
        source_module=source.module_name,
        class_name=facts.name,
        model_name=naming.model_name,
        prefix=naming.prefix,
        package=naming.package,
        blocks=tuple(blocks),
        components=components,
        guidance=guidance,
        pipeline=pipeline,
        call_arguments=tuple(_param(n, None, call_parameters, descriptions) for n in call_parameters),
        block_arguments=block_arguments,
        unserved_arguments=unserved,
        outputs=tuple((field_name, field_name) for field_name, _ in outputs),
        module_definitions=_module_definitions(source, facts),
        notes=tuple(context.notes),
    )


# -- outputs and parameters --------------------------------------------------------------------------------------
def _output_fields(source: SourceModule, returns: Sequence[cst.Return]) -> list[tuple[str, str]]:
    """`return Output(images=image, nsfw_content_detected=flag)` -> [("images", "image"), (...)]."""
    for statement in reversed(returns):
        value = statement.value
        if isinstance(value, cst.Call) and all(
            a.keyword is not None and isinstance(a.value, cst.Name) for a in value.args
        ):
            return [(a.keyword.value, a.value.value) for a in value.args]
        if isinstance(value, cst.Name):
            return [(value.value, value.value)]
        if isinstance(value, cst.Tuple) and all(isinstance(e.value, cst.Name) for e in value.elements):
            return [(e.value.value, e.value.value) for e in value.elements]
    node = returns[-1] if returns else source.tree
    raise source.refuse(node, "cannot tell what `__call__` returns (expected `return Output(name=local, ...)`)")


def _param(name: str, producer: str | None, call_parameters: dict[str, Parameter], descriptions) -> Param:
    if producer is None:
        parameter = call_parameters[name]
        return Param(name, parameter.annotation, parameter.default, descriptions.get(name, ""), None)
    return Param(name, None, None, f"Produced by the `{producer}` block.", producer)


def _output(name: str, outputs: list[tuple[str, str]], descriptions) -> Output:
    for field_name, local in outputs:
        if local == name:
            return Output(field_name, local, f"The pipeline's `{field_name}` output.")
    return Output(name, name, descriptions.get(name, ""))


def _unique_keys(segments: Sequence[Segment]) -> list[str]:
    keys: list[str] = []
    for segment in segments:
        base = "denoise" if segment.kind == "denoise" else block_key(label_title(segment.label))
        key, suffix = base, 2
        while key in keys:
            key, suffix = f"{base}_{suffix}", suffix + 1
        keys.append(key)
    return keys


# -- per-call state ----------------------------------------------------------------------------------------------
def _per_call_assignments(context: _Context, body: Sequence[cst.BaseStatement], dropped: set[int]) -> None:
    """`self._guidance_scale = guidance_scale` goes (the local is read instead); other assignments become locals
    when something still reads them, and go otherwise (`self._num_timesteps` only serves `pipe.num_timesteps`)."""
    facts = context.facts
    read = _per_call_reads(body, dropped | {id(n) for n in context.replacements})
    pattern = m.SimpleStatementLine(
        body=[m.Assign(targets=[m.AssignTarget(target=m.Attribute(value=m.Name("self")))])]
    )
    for statement in body:
        for line in m.findall(statement, pattern):
            if id(line) in dropped:
                continue
            attribute = line.body[0].targets[0].target.attr.value
            local = facts.per_call.get(attribute)
            if local is None:
                continue
            value = line.body[0].value
            if m.matches(value, m.Name(local)):
                context.replacements[line] = cst.RemoveFromParent()
                context.note("rewritten", line, f"`self.{attribute} = {local}`", f"per-call state, read as `{local}`")
            elif local in read:
                context.replacements[line] = line.with_changes(
                    body=[line.body[0].with_changes(targets=[cst.AssignTarget(cst.Name(local))])]
                )
                context.note(
                    "rewritten", line, f"`self.{attribute} = ...`", f"per-call state, now the local `{local}`"
                )
            else:
                context.replacements[line] = cst.RemoveFromParent()
                context.note(
                    "dropped", line, f"`self.{attribute} = ...`", "per-call state nothing in the blocks reads", "safe"
                )


def _per_call_reads(body: Sequence[cst.BaseStatement], skip: set[int]) -> set[str]:
    """Locals of per-call state that kept code reads (through `self._x` or a property over it)."""
    found: set[str] = set()

    class Reads(cst.CSTVisitor):
        def on_visit(self, node: cst.CSTNode) -> bool:
            if id(node) in skip or isinstance(node, cst.AssignTarget):
                return False
            if m.matches(node, m.Attribute(value=m.Name("self"))):
                found.add(node.attr.value)
            return True

    for statement in body:
        statement.visit(Reads())
    return found


# -- guidance ----------------------------------------------------------------------------------------------------
def _note_guidance(context: _Context, cfg: BatchedCfg) -> None:
    for site in cfg.cat_sites:
        context.note(
            "rewritten",
            site.node,
            f"`{site.target} = torch.cat([{site.uncond}, {site.cond}])`",
            f"undone: the guider pairs ({site.cond}, {site.uncond})",
        )
    for expansion in cfg.expansions:
        context.note("rewritten", expansion, f"`{snippet(expansion)}`", "undone: the guider runs one batch per call")
    for statement in cfg.guidance_statements:
        context.note("rewritten", statement, f"`{snippet(statement)}`", "the guider combines the predictions")


def _feature_gates(context: _Context, before_loop: Sequence[cst.BaseStatement], cfg: BatchedCfg) -> list[FeatureGate]:
    gates = []
    call_parameters = {p.name for p in context.facts.call_parameters}
    for call, helper in cfg_helper_calls(context.facts, before_loop, cfg.condition):
        holder = next(s for s in before_loop if m.findall(s, m.Call()) and call in m.findall(s, m.Call()))
        if not isinstance(holder, cst.If):
            raise context.source.refuse(
                call,
                f"`{helper}` batches its output for CFG inside the helper, and no input guards the call",
                fix="such helpers need pairing inside the helper, which is not converted yet",
            )
        inputs = tuple(n for n in names_read(holder.test) if n in call_parameters)
        gates.append(FeatureGate(holder, helper, inputs, gate_message(inputs, context.facts.name, helper)))
    return gates


def _guidance_plan(context: _Context, cfg: BatchedCfg | None, call_parameters, descriptions) -> GuidancePlan:
    if cfg is None:
        return GuidancePlan(pattern="none")
    facts = context.facts
    per_call = dict(facts.per_call)
    scale = _call_argument(context, cfg.scale, call_parameters, "guidance scale")
    rescale = _call_argument(context, cfg.rescale, call_parameters, "guidance rescale") if cfg.rescale else None
    condition = condition_text(cfg.condition_expression, per_call)
    rescale_condition = None
    if cfg.rescale_test is not None:
        marker = {
            part: cst.Name(cfg.condition_name)
            for part in conjuncts(cfg.rescale_test)
            if same_expression(part, cfg.condition)
        }
        rescale_condition = condition_text(replace_nodes(cfg.rescale_test, marker), per_call)
    names = [scale, *([rescale] if rescale else [])]
    for name in names_read(cst.parse_expression(condition)):
        if name in call_parameters and name not in names:
            names.append(name)
    arguments = tuple(_param(n, None, call_parameters, descriptions) for n in names)
    loop_fields = tuple(GuidanceField(site.target, site.cond, site.uncond) for site in cfg.cat_sites)
    return GuidancePlan(
        pattern="batched-cfg",
        guider="ClassifierFreeGuidance",
        denoiser=cfg.denoiser,
        fields=loop_fields,
        scale=scale,
        rescale=rescale,
        condition=condition,
        condition_name=cfg.condition_name,
        rescale_condition=rescale_condition,
        arguments=arguments,
        model_output=cfg.model_output,
        guided=cfg.guided,
        repeated=cfg.repeated,
        batch_order=cfg.batch_order,
    )


def _call_argument(context: _Context, expression: cst.BaseExpression, call_parameters, what: str) -> str:
    """The `__call__` argument an expression stands for (`self.guidance_scale` -> `guidance_scale`)."""
    if isinstance(expression, cst.Name) and expression.value in call_parameters:
        return expression.value
    if m.matches(expression, m.Attribute(value=m.Name("self"))):
        local = context.facts.per_call.get(expression.attr.value)
        if local in call_parameters:
            return local
    raise context.source.refuse(expression, f"the {what} is not a `__call__` argument")


# -- the denoising loop ------------------------------------------------------------------------------------------
_PROGRESS_UPDATE = m.Call(func=m.Attribute(value=m.Name("progress_bar"), attr=m.Name("update")))
_STEP_KEYS = ("before_denoiser", "denoiser", "after_denoiser")
_STEP_CLASSES = ("LoopBeforeDenoiser", "LoopDenoiser", "LoopAfterDenoiser")


@dataclass
class _LoopParts:
    """The denoise stage split into the wrapper and its three steps, rewritten, with their def-use facts."""

    context: _Context
    segment: Segment
    targets: tuple[str, ...]
    wrapper: _Rewritten
    steps: list[_Rewritten]
    step_extra_reads: list[tuple[str, ...]]  # names a step reads through the guider (not visible as code)
    step_local_writes: list[tuple[str, ...]]  # names a step rebinds per guider batch (not results of the step)
    step_lines: list[tuple[int, int]]

    @property
    def rewritten(self) -> list[_Rewritten]:
        return [self.wrapper, *self.steps]

    @property
    def writes(self) -> set[str]:
        names = set(flow_of(self.wrapper.body).writes)
        for flow in self._step_flows(None):
            names |= set(flow.writes)
        return names - RESERVED_NAMES

    def _step_flows(self, variables: set[str] | None) -> list[Flow]:
        """Def-use of each step. The denoiser rebinds guider fields per batch (`prompt_embeds = batch.prompt_embeds`):
        those stay local to the step, the names read through the guider count as reads instead."""
        flows = []
        for step, extra, local in zip(self.steps, self.step_extra_reads, self.step_local_writes, strict=True):
            flow = flow_of(step.body, bound=self.targets)
            reads = [n for n in (*flow.reads, *extra) if variables is None or n in variables]
            writes = tuple(n for n in flow.writes if n not in local and n not in RESERVED_NAMES)
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
        writes = [*wrapper.writes, *[n for f in self._step_flows(variables) for n in f.writes]]
        # the loop may run zero times: nothing it writes is definite
        return Flow(tuple(dict.fromkeys(reads)), tuple(dict.fromkeys(writes)), frozenset(wrapper.definite))

    def plan(self, context: _Context, key: str, segment: Segment, inputs: tuple[Param, ...], read_after: set[str]):
        naming = context.naming
        variables = {p.name for p in inputs} | self.writes
        wrapper_flow = flow_of(self.wrapper.body)
        flows = self._step_flows((variables | set(wrapper_flow.writes)) - RESERVED_NAMES)
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
            outputs = tuple(Output(n, n, "Denoised by the loop.") for n in carried_out if n in read_after)
            produced_this_iteration |= set(flow.writes)
            class_name = naming.prefix + _STEP_CLASSES[index]
            helpers, components = _helpers_and_components(context, rewritten.used, class_name)
            step_plans.append(
                LoopStepPlan(
                    key=_STEP_KEYS[index],
                    class_name=class_name,
                    body=tuple(rewritten.body),
                    inputs=tuple(declared),
                    guided=tuple(n for n in self.step_extra_reads[index] if n not in flow_of(rewritten.body).reads),
                    carried_in=tuple(carried_in),
                    carried_out=tuple(carried_out),
                    outputs=outputs,
                    components=components,
                    helpers=helpers,
                    lines=self.step_lines[index],
                )
            )
        wrapper_inputs = tuple(inputs_by_name[n] for n in wrapper_flow.reads if n in inputs_by_name)
        to_block_state = tuple(n for n in wrapper_flow.writes if n in step_reads and n not in self.targets)
        _, wrapper_components = _helpers_and_components(
            context, self.wrapper.used, naming.prefix + "DenoiseLoopWrapper"
        )
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
            components=wrapper_components,
            steps=tuple(step_plans),
        )


def _split_loop(context: _Context, segment: Segment, loop: cst.For, cfg: BatchedCfg | None) -> _LoopParts:
    source = context.source
    targets = tuple(names_read(loop.target))
    body = list(loop.body.body)
    progress = [s for s in body if m.findall(s, _PROGRESS_UPDATE)]
    denoiser_name = cfg.denoiser if cfg else _lone_denoiser(context, loop)
    if cfg is not None:
        call_statement = cfg.call_statement
        last = max(body.index(s) for s in cfg.guidance_statements)
    else:
        call_statement = next(
            s for s in body if m.findall(s, m.Call(func=m.Attribute(m.Name("self"), m.Name(denoiser_name))))
        )
        last = body.index(call_statement)
    call_index = body.index(call_statement)
    before = [s for s in body[:call_index] if s not in progress]
    after = [s for s in body[last + 1 :] if s not in progress]
    if cfg is not None:
        # The guider's step window is in loop iterations: with PNDM there are more timesteps than inference
        # steps, and `num_inference_steps` would switch CFG off on the last iteration.
        num_steps = f"len({code(_loop_sequence(loop)).strip()})"
        fields = tuple(GuidanceField(site.target, site.cond, site.uncond) for site in cfg.cat_sites)
        fields += tuple(GuidanceField(name, name, name) for name in cfg.repeated)
        step, timestep = (targets + ("None", "None"))[:2] if len(targets) == 2 else ("None", targets[0])
        denoiser_statements = guider_denoise(cfg, fields, step, timestep, num_steps)
        extra_reads = tuple(dict.fromkeys(n for f in fields for n in (f.cond, f.uncond)))
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
    wrapper_statements = [*segment.statements[:-1], _replace_within(segment.loop, loop, loop_node)]
    wrapper = context.rewrite(wrapper_statements, keep_on_self=("progress_bar", "loop_step"))
    steps = [context.rewrite(before), context.rewrite(denoiser_statements), context.rewrite(after)]
    lines = [_lines_of(source, before), _lines_of(source, [call_statement]), _lines_of(source, after)]
    if cfg is not None:
        lines[1] = (source.line_span(call_statement)[0], source.line_span(cfg.guidance_statements[-1])[1])
    return _LoopParts(context, segment, targets, wrapper, steps, [(), extra_reads, ()], [(), local_writes, ()], lines)


def _lines_of(source: SourceModule, statements: Sequence[cst.CSTNode]) -> tuple[int, int]:
    spans = [source.line_span(s) for s in statements if source.line_span(s) != (0, 0)]
    return (spans[0][0], spans[-1][1]) if spans else (0, 0)


def _replace_within(root: cst.CSTNode, old: cst.CSTNode, new: cst.CSTNode) -> cst.CSTNode:
    if root is old:
        return new
    return replace_nodes(root, {old: new})


def _loop_sequence(loop: cst.For) -> cst.BaseExpression:
    """What the loop iterates over: `enumerate(timesteps)` -> `timesteps`."""
    iterable = loop.iter
    if m.matches(iterable, m.Call(func=m.Name("enumerate"), args=[m.Arg()])):
        iterable = iterable.args[0].value
    if m.matches(iterable, m.Call(func=m.Attribute(m.Name("self"), m.Name("progress_bar")), args=[m.Arg()])):
        iterable = iterable.args[0].value
    return iterable


def _lone_denoiser(context: _Context, loop: cst.For) -> str:
    calls = m.findall(loop.body, m.Call(func=m.Attribute(value=m.Name("self"), attr=m.Name())))
    names = [c.func.attr.value for c in calls if c.func.attr.value in context.facts.init.components]
    names = list(dict.fromkeys(n for n in names if n != "scheduler"))
    if len(names) != 1:
        raise context.source.refuse(loop, "cannot tell which component is the denoiser in the loop")
    return names[0]


# -- blocks, helpers, components ---------------------------------------------------------------------------------
def _block_plan(
    context: _Context,
    key: str,
    segment: Segment,
    rewritten: _Rewritten,
    inputs: tuple[Param, ...],
    outputs: tuple[Output, ...],
    unbound: tuple[str, ...],
) -> BlockPlan:
    class_name = context.naming.block_class(key)
    helpers, components = _helpers_and_components(context, rewritten.used, class_name)
    first, last = segment.statements[0], segment.statements[-1]
    return BlockPlan(
        key=key,
        class_name=class_name,
        label=segment.label,
        kind=segment.kind,
        lines=(context.source.line_span(first)[0], context.source.line_span(last)[1]),
        body=tuple(rewritten.body),
        inputs=inputs,
        outputs=outputs,
        components=components,
        helpers=helpers,
        unbound_outputs=unbound,
    )


def _helpers_and_components(
    context: _Context, used: dict[str, dict[str, None]], owner: str
) -> tuple[tuple[Helper, ...], tuple[str, ...]]:
    facts = context.facts
    helpers: dict[str, Helper] = {}
    components: dict[str, None] = dict.fromkeys(used.get("component", {}))
    derived: dict[str, None] = dict(used.get("derived", {}))
    pending = list(used.get("helper", {}))
    while pending:
        name = pending.pop(0)
        if name in helpers:
            continue
        origin = f"{context.origin}.{name}"
        function, helper_used = as_static_helper(facts.methods[name], context.meaning, owner, origin)
        _check_per_call_use(context, facts.methods[name], helper_used)
        context.helper_usage.merge(helper_used)
        helpers[name] = Helper(name, function, origin)
        components.update(dict.fromkeys(helper_used.get("component", {})))
        derived.update(helper_used.get("derived", {}))
        pending += [h for h in helper_used.get("helper", {}) if h not in helpers]
    for name in _derived_closure(facts, derived):
        expression = facts.init.derived[name]
        for attribute in m.findall(expression, m.Attribute(value=m.Name("self"), attr=m.Name())):
            if attribute.attr.value in facts.init.components:
                components.setdefault(attribute.attr.value, None)
        for parameter in names_read(expression):
            if parameter in facts.init.components:
                components.setdefault(parameter, None)
    ordered = tuple(n for n in facts.init.components if n in components)
    return tuple(helpers[n] for n in sorted(helpers)), ordered


def _check_per_call_use(context: _Context, node: cst.CSTNode, used: dict[str, dict[str, None]]) -> None:
    for attribute in used.get("per_call", {}):
        if attribute != context.condition_name:
            raise context.source.refuse(node, f"a helper reads per-call state `self.{attribute}`")


def _derived_closure(facts: ClassFacts, names: dict[str, None]) -> list[str]:
    result: list[str] = []
    pending = [n for n in names if n in facts.init.derived]
    while pending:
        name = pending.pop(0)
        if name in result:
            continue
        result.append(name)
        expression = facts.init.derived[name]
        for attribute in m.findall(expression, m.Attribute(value=m.Name("self"), attr=m.Name())):
            if attribute.attr.value in facts.init.derived:
                pending.append(attribute.attr.value)
    return [n for n in facts.init.derived if n in result]


def _components(context: _Context, blocks: Sequence[BlockPlan | LoopPlan]) -> tuple[Component, ...]:
    used: dict[str, None] = {}
    for block in blocks:
        used.update(dict.fromkeys(block.components))
        if isinstance(block, LoopPlan):
            for step in block.steps:
                used.update(dict.fromkeys(step.components))
    parameters = {p.name: p for p in context.facts.init.parameters}
    result = []
    for name in context.facts.init.components:
        if name in used:
            parameter = parameters.get(name)
            optional = bool(parameter and parameter.default is not None)
            result.append(Component(name, parameter.annotation if parameter else None, optional))
    for name in context.facts.init.components:
        if name not in used:
            context.note("dropped", None, f"component `{name}`", "no block uses it", "safe")
    return tuple(result)


def _merged_usage(results: Sequence[_Rewritten]) -> dict[str, dict[str, None]]:
    merged = _Rewritten([])
    for result in results:
        merged.merge(result.used)
    return merged.used


# -- the ModularPipeline subclass --------------------------------------------------------------------------------
def _pipeline_class_plan(
    context: _Context, blocks: Sequence[BlockPlan | LoopPlan], used: dict[str, dict[str, None]], cfg
) -> PipelineClassPlan:
    facts = context.facts
    for kind, names in context.helper_usage.used.items():
        for name in names:
            used.setdefault(kind, {}).setdefault(name, None)
    bases = tuple(b for b in facts.bases if b not in _DROPPED_BASES and not b.endswith("Pipeline"))
    for base in facts.bases:
        if base not in bases:
            context.note("dropped", facts.node, f"base class `{base}`", "not meaningful on a ModularPipeline", "safe")
    class_attributes = tuple(
        facts.class_attributes[n] for n in facts.class_attributes if n in used.get("class_attribute", {})
    )
    properties = []
    for name in _derived_closure(facts, used.get("derived", {})):
        properties.append(_derived_property(facts, name))
    for name in used.get("property", {}):
        properties.append(facts.properties[name])
    for name in used.get("inherited", {}):
        context.note(
            "assumed",
            None,
            f"`self.{name}`",
            f"not defined in the module; assumed to come from a kept base class, reached as `components.{name}`",
            "unsafe",
        )
    adaptation = _adaptation(context)
    return PipelineClassPlan(
        class_name=context.naming.pipeline_class,
        bases=bases,
        class_attributes=class_attributes,
        properties=tuple(properties),
        adaptation=adaptation,
        init_components=facts.init.components,
    )


def _derived_property(facts: ClassFacts, name: str) -> cst.FunctionDef:
    """`self.vae_scale_factor = 2 ** (...)` in `__init__` -> a property computing it from the components."""
    expression = facts.init.derived[name]
    expression = substitute_names(
        expression, {c: cst.Attribute(cst.Name("self"), cst.Name(c)) for c in facts.init.components}
    )
    text = f"@property\ndef {name}(self):\n    return {code(expression).strip()}\n"
    return cst.parse_statement(text)


def _is_display_only(statement: cst.BaseStatement) -> bool:
    """An `if` whose body only logs or warns: it changes nothing a pipeline computes."""
    if not isinstance(statement, cst.If) or statement.orelse is not None:
        return False
    for line in statement.body.body:
        if not m.matches(line, m.SimpleStatementLine(body=[m.Expr(value=m.Call())])):
            return False
        func = line.body[0].value.func
        root = func
        while isinstance(root, cst.Attribute):
            root = root.value
        if not (isinstance(root, cst.Name) and root.value in _DISPLAY_ONLY_CALL):
            return False
    return True


def _adaptation(context: _Context) -> cst.FunctionDef | None:
    """The side effects of the standard `__init__` on its components, as a method run on registration."""
    init = context.facts.init
    statements = []
    for statement in init.adaptation:
        if _is_display_only(statement):
            context.note(
                "dropped", statement, f"`{snippet(statement)}` in `__init__`", "only logs a warning", "display-only"
            )
            continue
        statements.append(statement)
    for name in init.config:
        context.note("dropped", init.node, f"config `{name}`", "registered config of the standard pipeline", "safe")
    if not statements:
        return None
    for statement in statements:
        context.note(
            "kept", statement, f"`{snippet(statement)}` in `__init__`", "reproduced on component registration"
        )
    # Annotations are dropped: this is a registration hook, and its types would only add imports.
    params = init.node.params.with_changes(
        params=[p.with_changes(annotation=None) for p in init.node.params.params],
        kwonly_params=[p.with_changes(annotation=None) for p in init.node.params.kwonly_params],
    )
    statements[0] = statements[0].with_changes(leading_lines=[])
    function = cst.FunctionDef(
        name=cst.Name("_adapt_components"),
        params=params,
        body=cst.IndentedBlock(body=statements),
        leading_lines=[
            cst.EmptyLine(
                comment=cst.Comment(f"# Copied from {context.origin}.__init__ (its side effects on components)")
            )
        ],
    )
    return function


# -- module-level definitions ------------------------------------------------------------------------------------
def _module_definitions(source: SourceModule, facts: ClassFacts) -> tuple[ModuleDefinition, ...]:
    definitions = []
    origin_module = source.module_name or source.label
    for statement in source.tree.body:
        if statement is facts.node:
            continue
        if isinstance(statement, cst.SimpleStatementLine) and isinstance(
            statement.body[0], (cst.Import, cst.ImportFrom)
        ):
            definitions.extend(_import_definitions(source, statement.body[0]))
            continue
        if isinstance(statement, (cst.FunctionDef, cst.ClassDef)):
            kind = "function" if isinstance(statement, cst.FunctionDef) else "class"
            name = statement.name.value
            definitions.append(ModuleDefinition((name,), statement, kind, f"{origin_module}.{name}"))
            continue
        names = tuple(flow_of([statement]).writes)
        if names:
            definitions.append(ModuleDefinition(names, statement, "statement", origin_module))
    return tuple(definitions)


def _import_definitions(source: SourceModule, node: cst.Import | cst.ImportFrom) -> list[ModuleDefinition]:
    result = []
    if isinstance(node, cst.ImportFrom):
        if isinstance(node.names, cst.ImportStar):
            return []
        module = absolute_module(node, source.module_name, source.path)
        for alias in node.names:
            name = code(alias.name).strip()
            bound = alias.asname.name.value if alias.asname else name
            result.append(ModuleDefinition((bound,), node, "import", f"{module}:{name}"))
        return result
    for alias in node.names:
        name = code(alias.name).strip()
        bound = alias.asname.name.value if alias.asname else name.split(".")[0]
        result.append(ModuleDefinition((bound,), node, "import", f"{name}"))
    return result
