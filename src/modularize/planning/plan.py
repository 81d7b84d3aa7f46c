"""The conversion plan: frozen dataclasses that hold every decision between analysis and emission.

`modularize plan pipeline_foo.py` prints one (`render_plan`); `emit` turns one into package files. Statements are
kept as LibCST nodes, already rewritten for their block; everything else is plain data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import libcst as cst

from ..emit.layout import FILE_OF_KIND
from ..errors import Location
from ..kinds import CfgKind, DefinitionKind, GuidancePattern, StageKind
from .naming import Naming


@dataclass(frozen=True)
class Note:
    """A decision the report shows: something dropped, rewritten, refused at run time, or assumed."""

    action: str  # "dropped" | "rewritten" | "raises" | "assumed" | "kept"
    what: str
    why: str
    line: int = 0
    safety: str = "safe"  # like ruff's fix labels: "safe" | "unsafe" | "display-only"


@dataclass(frozen=True)
class Param:
    name: str
    type_hint: str | None = None  # source text of the annotation
    default: str | None = None  # source text of the default value
    description: str = ""
    producer: str | None = None  # the block that produces it; None for `__call__` arguments
    # the local its block binds it to, where that is another name: a family's workflow given the argument under a
    # name of its own (`controlnet_image`, bound to `image`; `planning.family_rename`)
    local: str | None = None


@dataclass(frozen=True)
class Output:
    name: str  # name in the pipeline state
    local: str  # the local variable holding it inside the block
    description: str = ""


@dataclass(frozen=True)
class Component:
    name: str
    type_hint: str | None  # source text of the `__init__` annotation
    optional: bool = False


@dataclass(frozen=True)
class Helper:
    name: str
    function: cst.FunctionDef  # already a static method taking `components` first
    origin: str  # dotted path of the method it was copied from


@dataclass(frozen=True)
class BlockPlan:
    key: str  # name in the blocks dict
    class_name: str
    label: str  # the stage comment it came from
    kind: StageKind  # never DENOISE: that is a LoopPlan
    lines: tuple[int, int]
    body: tuple[cst.BaseStatement, ...]
    inputs: tuple[Param, ...]
    outputs: tuple[Output, ...]
    components: tuple[str, ...]
    helpers: tuple[Helper, ...]
    configs: tuple[tuple[str, str], ...] = ()  # (name, default) of pipeline config values the code reads
    unbound_outputs: tuple[str, ...] = ()  # written on some paths only, with no value coming in
    reads_guider: bool = False  # reads the CFG flag the pipeline answers from its guider: declares the guider
    mixins: tuple[str, ...] = ()  # classes holding helpers it calls (a family's shared helpers), first bases

    @property
    def file(self) -> str:
        return FILE_OF_KIND[self.kind]


@dataclass(frozen=True)
class LoopStepPlan:
    key: str  # before_denoiser | denoiser | after_denoiser
    class_name: str
    body: tuple[cst.BaseStatement, ...]
    inputs: tuple[Param, ...]  # read from the pipeline state
    guided: tuple[str, ...]  # inputs read only through the guider (declared, not bound to locals)
    carried_in: tuple[str, ...]  # read from the loop's block state (produced by another step)
    carried_out: tuple[str, ...]  # written back to the loop's block state
    unbound: tuple[str, ...]  # carried out but written on some paths only: start as None
    outputs: tuple[Output, ...]  # declared: read after the loop
    components: tuple[str, ...]
    helpers: tuple[Helper, ...]
    configs: tuple[tuple[str, str], ...] = ()
    lines: tuple[int, int] = (0, 0)
    mixins: tuple[str, ...] = ()


@dataclass(frozen=True)
class LoopPlan:
    key: str
    class_name: str  # the denoise step (wrapper with its sub-blocks)
    wrapper_class_name: str
    label: str
    lines: tuple[int, int]
    loop_targets: tuple[str, ...]  # `i, t`
    wrapper_body: tuple[cst.BaseStatement, ...]  # pre-loop statements and the loop, whose body runs the steps
    inputs: tuple[Param, ...]
    to_block_state: tuple[str, ...]  # wrapper locals the steps read
    components: tuple[str, ...]
    steps: tuple[LoopStepPlan, ...]
    configs: tuple[tuple[str, str], ...] = ()
    kind: StageKind = StageKind.DENOISE
    # what the wrapper (an outer loop around the denoising loop) sets and later blocks read: in the loop's block
    # state already (`shared`), or a wrapper local written back after the loop (`written_back`)
    wrapper_outputs: tuple[Output, ...] = ()
    written_back: tuple[str, ...] = ()
    helpers: tuple[Helper, ...] = ()  # helper methods the wrapper calls (a progress bar of the pipeline's own)
    mixins: tuple[str, ...] = ()

    @property
    def file(self) -> str:
        return FILE_OF_KIND[StageKind.DENOISE]

    @property
    def outputs(self) -> tuple[Output, ...]:
        return (*(output for step in self.steps for output in step.outputs), *self.wrapper_outputs)


@dataclass(frozen=True)
class GuidanceField:
    name: str  # the variable the denoiser call reads
    cond: str  # state name of the conditional value
    uncond: str  # state name of the unconditional value
    # state names of the values of the guider's further batches, in its batch order (three-way guidance)
    others: tuple[str, ...] = ()
    layers: bool = False  # a list of batched tensors, one per layer (a T2I-Adapter's features): merged layer by layer


# the guider of a package converted from a PAG pipeline (`emit.runtime.perturbed_attention`)
PERTURBED_ATTENTION_GUIDER = "StandardPerturbedAttentionGuidance"
PERTURBED_BATCH = "pred_cond_skip"  # ... and the identifier of its perturbed batch


def batch_identifiers(ways: int) -> tuple[str, ...]:
    """The guider's batch identifiers, in its order: `ClassifierFreeGuidance`'s two, then one per further part of a
    prediction split into more (`emit.runtime.many_batches`)."""
    return ("pred_cond", "pred_uncond", *(f"pred_uncond_{batch}" for batch in range(2, ways)))


@dataclass(frozen=True)
class PerturbedAttentionPlan:
    """Perturbed-attention guidance the guider adds to the pipeline's CFG (`analysis.guidance.perturbed_attention`)."""

    scale: str  # `__call__` argument holding the PAG scale (`pag_scale`)
    adaptive_scale: str | None  # ... and the adaptive one (`pag_adaptive_scale`)
    layers: str  # the layers perturbed by default, as source text (`"mid"`): `__init__`'s default
    processors: tuple[str, str] | None = None  # the pipeline's own PAG processor classes (with CFG, without)


@dataclass(frozen=True)
class GuidancePlan:
    pattern: GuidancePattern
    kind: CfgKind | None = None  # how the generated denoiser runs guider batches
    guider: str | None = None  # guider class used
    denoiser: str | None = None  # component called in the loop
    fields: tuple[GuidanceField, ...] = ()
    scale: str | None = None  # `__call__` argument holding the guidance scale
    rescale: str | None = None  # `__call__` argument holding the guidance rescale factor
    condition: str | None = None  # when the standard pipeline does CFG, over `__call__` arguments and `self`
    condition_name: str | None = None  # the source's name for that condition (`do_classifier_free_guidance`)
    rescale_condition: str | None = None  # when it rescales, with `condition_name` standing for the condition
    arguments: tuple[Param, ...] = ()  # `__call__` arguments that configure the guider
    model_output: str | None = None  # local assigned by the denoiser call
    guided: str | None = None  # local assigned the guided prediction
    repeated: tuple[str, ...] = ()  # denoiser inputs the source repeats for each guidance batch
    batch_order: tuple[str, ...] = ()  # guider batch identifiers in the source's concatenation order
    formulation: str = "diffusers"  # "original": `cond + s * (cond - uncond)` (`use_original_formulation=True`)
    combine: object | None = None  # `guidance.CustomCombine`: the source's combine, for a guider subclass
    cache_contexts: tuple[tuple[str, str], ...] = ()  # guider batch -> the source's `cache_context` label
    distilled: str | None = None  # a guidance scale the denoiser embeds (guidance-distilled): a plain input
    denoiser_local: str | None = None  # the loop local the denoiser is called through (`current_model`)
    denoisers: tuple[str, ...] = ()  # the components that local holds, in order
    step_scale: str | None = None  # the loop local holding a per-step guidance scale (`current_guidance_scale`)
    step_scales: tuple[str, ...] = ()  # the `__call__` arguments it takes
    auxiliaries: tuple[str, ...] = ()  # models each guider batch runs before its denoiser call (a ControlNet)
    shared_auxiliary: bool = False  # the batches make the auxiliary call as one when they can (as the source did)
    perturbed: PerturbedAttentionPlan | None = None  # PAG, added by the guider

    @property
    def merges_calls(self) -> bool:
        """Whether the generated denoiser can run all guider batches in one call, as the source did."""
        return self.kind in (CfgKind.BATCHED, CfgKind.BRANCHED) and (not self.auxiliaries or self.shared_auxiliary)

    @property
    def label(self) -> str:
        """The pattern in one word or a few: `batched-cfg`, `separate-passes+custom-combine`, `distilled`, ..."""
        parts = [] if self.pattern == GuidancePattern.NONE and self.distilled else [self.pattern]
        if self.combine is not None:
            parts.append("custom-combine")
        if self.perturbed is not None:
            parts.append("perturbed-attention")
        if self.distilled:
            parts.append("distilled")
        return "+".join(parts)


@dataclass(frozen=True)
class PipelineClassPlan:
    class_name: str
    bases: tuple[str, ...]  # mixins kept from the standard pipeline
    class_attributes: tuple[cst.SimpleStatementLine, ...]
    properties: tuple[cst.FunctionDef, ...]  # derived attributes and copied properties
    adaptation: cst.FunctionDef | None  # side effects of the standard `__init__` on components
    init_components: tuple[str, ...]  # `__init__` parameters that are components
    rebound_components: tuple[str, ...] = ()  # components `__init__` replaces before registering them


@dataclass(frozen=True)
class ModuleDefinition:
    """A module-level statement of the source that generated code may need (import, function, constant)."""

    names: tuple[str, ...]
    node: cst.CSTNode
    kind: DefinitionKind
    origin: str  # dotted path for `# Copied from`


@dataclass(frozen=True)
class PipelinePlan:
    source_label: str
    source_module: str | None
    class_name: str  # the standard pipeline class
    class_location: Location  # where the class is defined, for errors found after analysis
    model_name: str  # "stable-diffusion"
    prefix: str  # "StableDiffusion"
    package: str  # "modular_stable_diffusion"
    blocks: tuple[BlockPlan | LoopPlan, ...]
    components: tuple[Component, ...]
    guidance: GuidancePlan
    pipeline: PipelineClassPlan
    call_arguments: tuple[Param, ...]  # every argument of the standard `__call__`
    block_arguments: tuple[str, ...]  # `__call__` arguments the blocks take as inputs
    unserved_arguments: tuple[tuple[str, str], ...]  # (name, default) that raise when given another value
    ignored_arguments: tuple[str, ...]  # accepted and dropped, as the standard call, which never reads them, does
    outputs: tuple[tuple[str, str], ...]  # (standard output field, pipeline state name)
    module_definitions: tuple[ModuleDefinition, ...]
    notes: tuple[Note, ...] = field(default=())
    # "module:Name" of the output class the standard call returns (`return Output(images=image)`), if any
    output_class: str | None = None
    sub_pipelines: tuple[SubPipelinePlan, ...] = ()  # the pipelines it builds from its components and calls

    @property
    def blocks_class_name(self) -> str:
        return Naming(self.prefix, self.model_name, self.package).blocks_class

    @property
    def pipeline_class_name(self) -> str:
        return self.pipeline.class_name

    @property
    def block_parts(self) -> tuple[BlockPlan | LoopPlan | LoopStepPlan, ...]:
        """Every block, a denoising loop followed by its steps: each part declares inputs, outputs and helpers."""
        return tuple(part for block in self.blocks for part in (block, *getattr(block, "steps", ())))


@dataclass(frozen=True)
class SubPipelinePlan:
    """A pipeline another one builds from its components (`self.prior_pipe = KandinskyV22PriorPipeline(...)`) and
    calls: converted too, its package's modules go beside the pipeline's own, named with the attribute in front
    (`prior_pipe_denoise.py`): diffusers loads a saved package's modules from one directory."""

    attribute: str
    plan: PipelinePlan
    source_text: str  # its source, recorded in its package's headers
    generator: str  # the generator string its package records (its own conversion options)

    @property
    def prefix(self) -> str:
        return f"{self.attribute}_"


def plan_summary(plan: PipelinePlan) -> dict:
    """The plan as plain data (what `modularize plan --json` prints)."""

    def params(items):
        return [
            {
                k: v
                for k, v in (("name", p.name), ("default", p.default), ("from", p.producer), ("local", p.local))
                if v is not None
            }
            for p in items
        ]

    def block(b):
        if isinstance(b, LoopPlan):
            return {
                "name": b.key,
                "class": b.class_name,
                "label": b.label,
                "kind": "denoise",
                "file": b.file,
                "lines": list(b.lines),
                "inputs": params(b.inputs),
                "components": list(b.components),
                "steps": [
                    {
                        "name": s.key,
                        "class": s.class_name,
                        "inputs": params(s.inputs),
                        "carried_in": list(s.carried_in),
                        "carried_out": list(s.carried_out),
                        "outputs": [o.name for o in s.outputs],
                        "components": list(s.components),
                        "helpers": [h.name for h in s.helpers],
                    }
                    for s in b.steps
                ],
            }
        return {
            "name": b.key,
            "class": b.class_name,
            "label": b.label,
            "kind": b.kind,
            "file": b.file,
            "lines": list(b.lines),
            "inputs": params(b.inputs),
            "outputs": [o.name if o.name == o.local else f"{o.name} (= {o.local})" for o in b.outputs],
            "components": (["guider"] if b.reads_guider else []) + list(b.components),
            "helpers": [h.name for h in b.helpers],
        }

    guidance = plan.guidance
    return {
        "source": plan.source_label,
        "pipeline": plan.class_name,
        "package": plan.package,
        "modular_pipeline": plan.pipeline.class_name,
        "blocks": [block(b) for b in plan.blocks],
        "components": [{"name": c.name, "type": c.type_hint} for c in plan.components],
        "guidance": {
            "pattern": guidance.pattern,
            "label": guidance.label,
            "guider": guidance.guider,
            "formulation": guidance.formulation,
            "custom_combine": guidance.combine is not None,
            "distilled": guidance.distilled,
            "denoiser_local": guidance.denoiser_local,
            "denoisers": list(guidance.denoisers),
            "auxiliaries": list(guidance.auxiliaries),
            "step_scale": guidance.step_scale,
            "step_scales": list(guidance.step_scales),
            "denoiser": guidance.denoiser,
            "fields": {f.name: [f.cond, f.uncond, *f.others] for f in guidance.fields},
            "condition": guidance.condition,
            "guider_arguments": [p.name for p in guidance.arguments],
            "perturbed": None
            if guidance.perturbed is None
            else {
                "scale": guidance.perturbed.scale,
                "adaptive_scale": guidance.perturbed.adaptive_scale,
                "layers": guidance.perturbed.layers,
                "processors": list(guidance.perturbed.processors or ()),
            },
        },
        "call": {
            "block_arguments": list(plan.block_arguments),
            "unserved_arguments": [name for name, _ in plan.unserved_arguments],
            "ignored_arguments": list(plan.ignored_arguments),
            "outputs": dict(plan.outputs),
            "output_class": plan.output_class,
        },
        # each built pipeline's own plan: its package is the modules named with the attribute in front
        "sub_pipelines": {sub.attribute: plan_summary(sub.plan) for sub in plan.sub_pipelines},
        "notes": [
            {"action": n.action, "what": n.what, "why": n.why, "line": n.line, "safety": n.safety} for n in plan.notes
        ],
    }


def render_plan(plan: PipelinePlan) -> str:
    summary = plan_summary(plan)
    lines = [
        f"{plan.class_name} ({plan.source_label}) -> {plan.package}/ ({plan.pipeline.class_name})",
        "",
        "blocks:",
    ]

    def fmt_inputs(items):
        parts = []
        for item in items:
            text = item["name"]
            if "from" in item:
                text += f" <- {item['from']}"
            parts.append(text)
        return ", ".join(parts) or "-"

    for block in summary["blocks"]:
        lines.append(
            f"  {block['name']}: {block['class']}  [{block['file']}, lines {block['lines'][0]}-{block['lines'][1]}]"
        )
        lines.append(f"      stage:      {block['label']}")
        lines.append(f"      inputs:     {fmt_inputs(block['inputs'])}")
        if "steps" in block:
            lines.append(f"      components: {', '.join(block['components']) or '-'}")
            for step in block["steps"]:
                lines.append(f"      - {step['name']}: {step['class']}")
                lines.append(f"          inputs:     {fmt_inputs(step['inputs'])}")
                carried = ", ".join(step["carried_in"]) or "-"
                lines.append(f"          carried:    in {carried}; out {', '.join(step['carried_out']) or '-'}")
                if step["outputs"]:
                    lines.append(f"          outputs:    {', '.join(step['outputs'])}")
                lines.append(f"          components: {', '.join(step['components']) or '-'}")
                if step["helpers"]:
                    lines.append(f"          helpers:    {', '.join(step['helpers'])}")
        else:
            lines.append(f"      outputs:    {', '.join(block['outputs']) or '-'}")
            lines.append(f"      components: {', '.join(block['components']) or '-'}")
            if block["helpers"]:
                lines.append(f"      helpers:    {', '.join(block['helpers'])}")
    lines += ["", "components:"]
    for component in summary["components"]:
        lines.append(f"  {component['name']}: {component['type']}")
    guidance = summary["guidance"]
    lines += ["", f"guidance: {plan.guidance.label}"]
    if guidance["distilled"]:
        lines.append(f"  distilled:  `{guidance['distilled']}` is embedded by the denoiser (a plain input, no guider)")
    if guidance["pattern"] != "none":
        if guidance["custom_combine"]:
            how = "a subclass of ClassifierFreeGuidance holding the source's combine verbatim (custom combine)"
        elif guidance["formulation"] == "original":
            how = "use_original_formulation=True: `cond + scale * (cond - uncond)`"
        else:
            how = "`uncond + scale * (cond - uncond)`"
        on = f"`{guidance['denoiser']}`"
        if guidance["denoiser_local"]:
            on = f"`{guidance['denoiser_local']}` ({' / '.join(guidance['denoisers'])}, picked per step)"
        lines.append(f"  guider:     {guidance['guider']} on {on}, {how}")
        for auxiliary in guidance["auxiliaries"]:
            lines.append(
                f"  auxiliary:  `{auxiliary}` runs in each guider batch, before the batch's `{guidance['denoiser']}` call"
            )
        if guidance["step_scale"]:
            scales = " / ".join(guidance["step_scales"])
            lines.append(
                f"  scale:      `{guidance['step_scale']}` ({scales}, picked per step): the guider follows it"
            )
        perturbed = guidance["perturbed"]
        if perturbed:
            adaptive = f", lowered per step by `{perturbed['adaptive_scale']}`" if perturbed["adaptive_scale"] else ""
            lines.append(
                f"  perturbed:  a third batch, the conditional one with the self-attention of layers "
                f"{perturbed['layers']} perturbed (PAG), scaled by `{perturbed['scale']}`{adaptive}"
            )
            if perturbed["processors"]:
                lines.append(f"  perturbed by the pipeline's own processors: {' / '.join(perturbed['processors'])}")
        for name, (cond, uncond) in guidance["fields"].items():
            lines.append(f"  field:      {name} = ({cond}, {uncond})  [conditional, unconditional]")
        lines.append(f"  CFG on when (standard pipeline's own condition): {guidance['condition']}")
        lines.append(f"  guider configured from: {', '.join(guidance['guider_arguments'])}")
    lines += ["", "standard call -> modular call:"]
    lines.append(f"  block inputs: {', '.join(summary['call']['block_arguments'])}")
    if summary["call"]["unserved_arguments"]:
        lines.append(f"  raise unless left at default: {', '.join(summary['call']['unserved_arguments'])}")
    if summary["call"]["ignored_arguments"]:
        ignored = ", ".join(summary["call"]["ignored_arguments"])
        lines.append(f"  accepted and ignored (the standard call never reads them): {ignored}")
    lines.append("  outputs: " + ", ".join(f"{k} <- state[{v!r}]" for k, v in summary["call"]["outputs"].items()))
    lines += ["", "notes:"]
    for note in summary["notes"]:
        where = f"line {note['line']}: " if note["line"] else ""
        lines.append(f"  [{note['action']}, {note['safety']}] {where}{note['what']} -- {note['why']}")
    for sub in plan.sub_pipelines:
        lines += ["", f"built pipeline `self.{sub.attribute}`: its package is the {sub.prefix}*.py modules", ""]
        lines += ["    " + line if line else "" for line in render_plan(sub.plan).splitlines()]
    return "\n".join(lines) + "\n"


def plan_json(plan: PipelinePlan) -> str:
    return json.dumps(plan_summary(plan), indent=2)
