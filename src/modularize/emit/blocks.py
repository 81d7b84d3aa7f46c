"""Emit the block classes: one `ModularPipelineBlocks` per stage, the denoise loop wrapper and its steps.

A block binds its inputs to locals at the top and writes its outputs back at the end, so the statements between
read exactly like the source they were copied from:

    def __call__(self, components, state):
        block_state = self.get_block_state(state)
        num_inference_steps = block_state.num_inference_steps
        # 4. Prepare timesteps
        timesteps, num_inference_steps = retrieve_timesteps(components.scheduler, num_inference_steps, ...)
        block_state.timesteps = timesteps
        self.set_block_state(state, block_state)
        return components, state
"""

from __future__ import annotations

from collections.abc import Sequence

import libcst as cst

from ..kinds import GuidancePattern
from ..planning.plan import BlockPlan, Component, GuidancePlan, LoopPlan, LoopStepPlan, Output, Param, PipelinePlan
from .pipeline_class import EXPLICIT_NONE_NAME, PACKAGE_BLOCKS_NAME
from .splice import BODY, MEMBERS, Emitted, printed_class, statement

BATCHING_CONFIG = (
    'ConfigSpec("batch_guider_calls", True, description="Run all guider batches in one denoiser call when that is '
    "valid, as the standard pipeline does (False: one call per batch, the guider's default).\")"
)


# diffusers' tag for the values the guider hands the denoiser (`state.get_by_kwargs("denoiser_input_fields")`)
DENOISER_INPUT_FIELDS = "denoiser_input_fields"


def denoiser_input_fields(plan: PipelinePlan) -> frozenset[str]:
    """The state names of what the guider pairs for the denoiser: both halves of every guided input."""
    return frozenset(name for field in plan.guidance.fields for name in (field.cond, field.uncond, *field.others))


def _input_param(param: Param, fields: frozenset[str] = frozenset()) -> str:
    parts = [repr(param.name)]
    if param.type_hint:
        parts.append(f"type_hint={param.type_hint}")
    if param.default is not None and param.default != "None":
        parts.append(f"default={param.default}")
    if param.name in fields:
        parts.append(f"kwargs_type={DENOISER_INPUT_FIELDS!r}")
    if param.description:
        parts.append(f"description={param.description!r}")
    return f"InputParam({', '.join(parts)})"


def _output_param(output: Output, fields: frozenset[str] = frozenset()) -> str:
    parts = [repr(output.name)]
    if output.name in fields:
        parts.append(f"kwargs_type={DENOISER_INPUT_FIELDS!r}")
    if output.description:
        parts.append(f"description={output.description!r}")
    return f"OutputParam({', '.join(parts)})"


def component_spec(component: Component) -> str:
    if component.type_hint:
        return f"ComponentSpec({component.name!r}, {component.type_hint})"
    return f"ComponentSpec({component.name!r})"


def guider_spec(guidance: GuidancePlan, plan: PipelinePlan) -> str:
    defaults = {p.name: p.default for p in guidance.arguments}
    config = [f'"guidance_scale": {defaults.get(guidance.scale) or "7.5"}']
    if guidance.rescale:
        config.append(f'"guidance_rescale": {defaults.get(guidance.rescale) or "0.0"}')
    if guidance.formulation == "original":
        config.append('"use_original_formulation": True')
    perturbed = guidance.perturbed
    if perturbed is not None:
        config.append(f'"perturbed_guidance_scale": {defaults.get(perturbed.scale) or "3.0"}')
        if perturbed.adaptive_scale:
            config.append(f'"perturbed_guidance_adaptive_scale": {defaults.get(perturbed.adaptive_scale) or "0.0"}')
        config.append(f'"perturbed_layers": {perturbed.layers}')
        if perturbed.processors:
            config.append(f'"perturbed_attention_processors": {list(perturbed.processors)!r}')
    return (
        f'ComponentSpec("guider", {guidance.guider}, config=FrozenDict({{{", ".join(config)}}}), '
        'default_creation_method="from_config")'
    )


def _list_property(name: str, annotation: str, items: Sequence[str]) -> str:
    """A property returning a list."""
    inner = "".join(f"            {item},\n" for item in items)
    return f"    @property\n    def {name}(self) -> {annotation}:\n        return [\n{inner}        ]\n"


def _components_of(plan: PipelinePlan, names: Sequence[str]) -> list[str]:
    by_name = {c.name: c for c in plan.components}
    return [component_spec(by_name[name]) for name in names if name in by_name]


def _declarations(
    plan: PipelinePlan,
    description: str,
    components: Sequence[str],
    inputs: Sequence[Param],
    outputs: Sequence[Output],
    components_property: str = "expected_components",
    inputs_property: str = "inputs",
    outputs_property: str = "intermediate_outputs",
    configs: Sequence[tuple[str, str]] = (),
    configs_property: str = "expected_configs",
) -> str:
    text = f"    model_name = {plan.model_name!r}\n    modular_pipeline_class = {plan.pipeline_class_name}\n\n"
    text += f"    @property\n    def description(self) -> str:\n        return {description!r}\n\n"
    if components:
        text += _list_property(components_property, "list[ComponentSpec]", components) + "\n"
    if configs:
        specs = [f"ConfigSpec({name!r}, {default})" for name, default in configs]
        text += _list_property(configs_property, "list[ConfigSpec]", specs) + "\n"
    fields = denoiser_input_fields(plan)
    if inputs:
        items = [_input_param(p, fields) for p in inputs]
        text += _list_property(inputs_property, "list[InputParam]", items) + "\n"
    if outputs:
        items = [_output_param(o, fields) for o in outputs]
        text += _list_property(outputs_property, "list[OutputParam]", items) + "\n"
    return text


def _before_loop(loop: cst.BaseStatement, inserted: list[cst.BaseStatement]) -> list[cst.BaseStatement]:
    """`inserted` right before the loop over timesteps, inside the `with` blocks around it: what the steps take
    from the wrapper may be set up there (`with self.progress_bar(...): old_pred = None; for i, t in ...`)."""
    if not isinstance(loop, cst.With) or not inserted:
        return [*inserted, loop]
    body = list(loop.body.body)
    last = max(i for i, s in enumerate(body) if not isinstance(s, cst.SimpleStatementLine))
    body[last:] = _before_loop(body[last], inserted) + body[last + 1 :]
    return [loop.with_changes(body=loop.body.with_changes(body=body))]


# The statements every block's body starts and ends with, a hundred per package, are built rather than parsed:
# the same nodes `statement(text)` gives (`deep_equals`, tested), without the parser's per-call cost.
_COMMA = cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))


def _assign(target: cst.BaseAssignTargetExpression, value: cst.BaseExpression) -> cst.SimpleStatementLine:
    return cst.SimpleStatementLine([cst.Assign([cst.AssignTarget(target)], value)])


def _from_block_state(name: str) -> cst.Attribute:
    return cst.Attribute(cst.Name("block_state"), cst.Name(name))


def _binding(name: str, local: str | None = None) -> cst.BaseStatement:
    """`name = block_state.name` (`local = block_state.name` for an input bound to another local)"""
    local = local or name
    if not (name.isidentifier() and local.isidentifier()):
        return statement(f"{local} = block_state.{name}")
    return _assign(cst.Name(local), _from_block_state(name))


def _write_back(name: str, local: str | None = None) -> cst.BaseStatement:
    """`block_state.name = local`"""
    value = local or name
    if not (name.isidentifier() and value.isidentifier()):
        return statement(f"block_state.{name} = {value}")
    return _assign(_from_block_state(name), cst.Name(value))


def _binding_or_none(name: str) -> cst.BaseStatement:
    """`name = getattr(block_state, 'name', None)`"""
    if not name.isidentifier():
        return statement(f"{name} = getattr(block_state, {name!r}, None)")
    arguments = [
        cst.Arg(cst.Name("block_state"), comma=_COMMA),
        cst.Arg(cst.SimpleString(repr(name)), comma=_COMMA),
        cst.Arg(cst.Name("None")),
    ]
    return _assign(cst.Name(name), cst.Call(cst.Name("getattr"), arguments))


def _bases(inputs: Sequence[Param], base: str, mixins: Sequence[str] = ()) -> str:
    """Every block builds its package's pipeline class (`PackageBlocks`); blocks taking a `__call__` argument whose
    default is not None keep an explicit `None` (`ExplicitNoneInputs`); a family's blocks inherit the helpers
    their workflows share (`mixins`)."""
    keeps = any(p.producer is None and p.default not in (None, "None") for p in inputs)
    names = [PACKAGE_BLOCKS_NAME, *([EXPLICIT_NONE_NAME] if keeps else []), *mixins, base]
    return ", ".join(names)


def block_class(plan: PipelinePlan, block: BlockPlan) -> Emitted:
    description = f"Stage `{block.label}` of `{plan.class_name}.__call__`."
    pipeline = plan.pipeline_class_name
    components = _components_of(plan, block.components)
    if block.reads_guider:
        components = [guider_spec(plan.guidance, plan), *components]
    template = (
        f"class {block.class_name}({_bases(block.inputs, 'ModularPipelineBlocks', block.mixins)}):\n"
        + _declarations(
            plan,
            description,
            components,
            block.inputs,
            block.outputs,
            configs=block.configs,
        )
        + f"    {MEMBERS}\n\n"
        "    @torch.no_grad()\n"
        f"    def __call__(self, components: {pipeline}, state: PipelineState) -> tuple[{pipeline}, PipelineState]:\n"
        "        block_state = self.get_block_state(state)\n"
        f"        {BODY}\n"
        "        self.set_block_state(state, block_state)\n"
        "        return components, state\n"
    )
    body = [_binding(p.name, p.local) for p in block.inputs]
    body += [_binding_or_none(name) for name in block.unbound_outputs]
    body += list(block.body)
    body += [_write_back(o.name, o.local) for o in block.outputs]
    members = [helper.function for helper in block.helpers]
    return printed_class(template, {BODY: body, MEMBERS: members})


def loop_step_class(plan: PipelinePlan, loop: LoopPlan, step: LoopStepPlan) -> Emitted:
    pipeline = plan.pipeline_class_name
    description = (
        f"The `{step.key}` step of the denoising loop (stage `{loop.label}` of `{plan.class_name}.__call__`), "
        f"run by `{loop.wrapper_class_name}` once per timestep."
    )
    components = _components_of(plan, step.components)
    configs = [f"ConfigSpec({name!r}, {default})" for name, default in step.configs]
    if step.key == "denoiser" and plan.guidance.pattern != GuidancePattern.NONE:
        components = [guider_spec(plan.guidance, plan), *components]
        if plan.guidance.merges_calls:
            configs.append(BATCHING_CONFIG)
    targets = ", ".join(loop.loop_targets)
    template = (
        f"class {step.class_name}({', '.join([PACKAGE_BLOCKS_NAME, *step.mixins, 'ModularPipelineBlocks'])}):\n"
        + _declarations(plan, description, components, step.inputs, step.outputs)
        + (_list_property("expected_configs", "list[ConfigSpec]", configs) + "\n" if configs else "")
        + f"    {MEMBERS}\n\n"
        "    @torch.no_grad()\n"
        f"    def __call__(self, components: {pipeline}, block_state: BlockState, {targets}) "
        f"-> tuple[{pipeline}, BlockState]:\n"
        f"        {BODY}\n"
        "        return components, block_state\n"
    )
    declared = [p for p in step.inputs if p.name not in step.guided]
    names = {p.name for p in declared}
    body = [_binding(p.name, p.local) for p in declared]
    body += [_binding(name) for name in step.carried_in if name not in names and name not in step.guided]
    body += [_binding_or_none(name) for name in step.unbound]
    body += list(step.body)
    body += [_write_back(name) for name in step.carried_out]
    members = [helper.function for helper in step.helpers]
    return printed_class(template, {BODY: body, MEMBERS: members})


def loop_classes(plan: PipelinePlan, loop: LoopPlan) -> Emitted:
    pipeline = plan.pipeline_class_name
    description = (
        f"Runs the denoising loop of `{plan.class_name}.__call__` (stage `{loop.label}`): "
        "its sub-blocks run once per timestep."
    )
    template = (
        f"class {loop.wrapper_class_name}({_bases(loop.inputs, 'LoopSequentialPipelineBlocks', loop.mixins)}):\n"
        + _declarations(
            plan,
            description,
            _components_of(plan, loop.components),
            loop.inputs,
            loop.wrapper_outputs,
            components_property="loop_expected_components",
            inputs_property="loop_inputs",
            outputs_property="loop_intermediate_outputs",
            configs=loop.configs,
            configs_property="loop_expected_configs",
        )
        + f"    {MEMBERS}\n\n"
        "    @torch.no_grad()\n"
        f"    def __call__(self, components: {pipeline}, state: PipelineState) -> tuple[{pipeline}, PipelineState]:\n"
        "        block_state = self.get_block_state(state)\n"
        f"        {BODY}\n"
        "        self.set_block_state(state, block_state)\n"
        "        return components, state\n"
    )
    wrapper_body = list(loop.wrapper_body)
    body = [_binding(p.name, p.local) for p in loop.inputs]
    body += wrapper_body[:-1]
    body += _before_loop(wrapper_body[-1], [_write_back(name) for name in loop.to_block_state])
    body += [_write_back(name) for name in loop.written_back]
    wrapper = printed_class(template, {BODY: body, MEMBERS: [helper.function for helper in loop.helpers]})
    statements, bodies = list(wrapper.statements), dict(wrapper.bodies)
    steps = [s for s in loop.steps if s.body]
    for step in steps:
        emitted = loop_step_class(plan, loop, step)
        statements += emitted.statements
        bodies.update(emitted.bodies)
    step_list = "".join(f"        {s.class_name},\n" for s in steps)
    name_list = "".join(f"        {s.key!r},\n" for s in steps)
    loop_class = printed_class(
        f"class {loop.class_name}({loop.wrapper_class_name}):\n"
        f"    block_classes = [\n{step_list}    ]\n"
        f"    block_names = [\n{name_list}    ]\n\n"
        "    @property\n"
        "    def description(self) -> str:\n"
        f"        return {('Denoising loop of ' + plan.class_name + ': ' + ', '.join(s.key for s in steps) + ' per timestep.')!r}\n",
        {},
    )
    return Emitted([*statements, *loop_class.statements], {**bodies, **loop_class.bodies})
