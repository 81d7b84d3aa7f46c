"""Emit the `ModularPipeline` subclass: derived attributes, `__init__` side effects and the standard-call mapping.

The mapping is what lets a caller (and `modularize verify`) run the modular pipeline exactly like a standard call:

    pipe = StableDiffusionGeneratedModularPipeline()
    pipe.update_components(**components)
    images = pipe(**pipe.translate_standard_call(prompt="a cat", guidance_scale=7.5), output="images")

`translate_standard_call` installs the guider the standard pipeline would have guided with, decided by the
standard pipeline's own condition (`guidance_scale > 1 and self.unet.config.time_cond_proj_dim is None`), and
refuses arguments the package does not serve instead of ignoring them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePosixPath

import libcst as cst

from ..kinds import GuidancePattern
from ..planning.pipeline_class import SUB_PIPELINE
from ..planning.plan import PERTURBED_ATTENTION_GUIDER, PipelinePlan
from .layout import FIXED_FILES, blocks_file
from .runtime import copied_definition, runtime_definitions
from .splice import MEMBERS, Emitted, printed_class

ATTRIBUTES = "__modularize_attributes__"
# every generated `modular_pipeline.py` carries it; blocks list it first among their bases (`emit.blocks`)
EXPLICIT_NONE_MIXIN = "modularize.emit.runtime.explicit_none.ExplicitNoneInputs"
EXPLICIT_NONE_NAME = EXPLICIT_NONE_MIXIN.rpartition(".")[2]
# ... and so does the mixin every block class lists first: `init_pipeline` builds the package's own pipeline class
PACKAGE_BLOCKS_MIXIN = "modularize.emit.runtime.package_blocks.PackageBlocks"
PACKAGE_BLOCKS_NAME = PACKAGE_BLOCKS_MIXIN.rpartition(".")[2]
INSTALL_STANDARD_GUIDER = "modularize.emit.runtime.standard_guider.install_standard_guider"
# `save_pretrained` saves the package's code too; the blocks module registers the package's classes in `diffusers`
SAVED_WITH_PACKAGE_MIXIN = "modularize.emit.runtime.saved_package.SavedWithPackage"
SAVED_WITH_PACKAGE_NAME = SAVED_WITH_PACKAGE_MIXIN.rpartition(".")[2]
REGISTER_IN_DIFFUSERS = "modularize.emit.runtime.saved_package.register_in_diffusers"
REGISTER_IN_DIFFUSERS_NAME = REGISTER_IN_DIFFUSERS.rpartition(".")[2]
# a PAG pipeline's package guides with the PAG mixin's guidance, whose CFG flag the number of batches does not tell
GUIDER_RUNS_UNCONDITIONAL = "guider_runs_unconditional"


def tuple_literal(items) -> str:
    """`('a', 'b', )`: the Python text of a tuple of values (their reprs), the same for one item as for several."""
    return "(" + "".join(f"{item!r}, " for item in items) + ")"


def _guider_methods(plan: PipelinePlan) -> str:
    guidance = plan.guidance
    if guidance.pattern == GuidancePattern.NONE:
        return ""
    condition_name = guidance.condition_name
    params = ", ".join(
        f"{p.name}: {p.type_hint} = {p.default}" if p.type_hint else f"{p.name}={p.default}"
        for p in guidance.arguments
    )
    perturbed = guidance.perturbed
    runs_unconditional = "self.guider.num_conditions > 1"
    if perturbed is None:
        config = [f"guidance_scale={guidance.scale}"]
    else:
        # the guider perturbs attention whether CFG is on or not: a scale of 1 turns CFG off
        config = [f"guidance_scale={guidance.scale} if {condition_name} else 1.0"]
        runs_unconditional = "guider_runs_unconditional(self.guider)"
    if guidance.rescale:
        config.append(f"guidance_rescale={guidance.rescale} if {guidance.rescale_condition} else 0.0")
    if perturbed is None:
        config.append(f"enabled={condition_name}")
    else:
        config.append(f"perturbed_guidance_scale={perturbed.scale}")
        if perturbed.adaptive_scale:
            config.append(f"perturbed_guidance_adaptive_scale={perturbed.adaptive_scale}")
    doc_rescale = (
        f" Rescaling applies when `{guidance.rescale_condition}`, as in the standard pipeline."
        if guidance.rescale
        else ""
    )
    return (
        "    @property\n"
        f"    def {condition_name}(self):\n"
        "        # Whether the guider runs an unconditional batch. `guider_for_standard_call` configures the guider\n"
        "        # with the standard pipeline's own condition, so this matches the standard pipeline's flag.\n"
        f"        return self.guider is not None and {runs_unconditional}\n\n"
        f"    def guider_for_standard_call(self, {params}):\n"
        f'        """The guider `{plan.class_name}.__call__` would guide with for these arguments.\n\n'
        f"        CFG is on exactly when the standard pipeline's `{condition_name}` holds: `{guidance.condition}`.\n"
        + (f"       {doc_rescale}\n" if doc_rescale else "")
        + '        """\n'
        f"        {condition_name} = {guidance.condition}\n"
        f'        return self.get_component_spec("guider").create({", ".join(config)})\n\n'
    )


def pipeline_class(plan: PipelinePlan, prefix: str = "", modules: Sequence[str] | None = None) -> Emitted:
    """The pipeline class and the runtime it needs; `modules`: the package's modules a saved pipeline carries
    (default: a single pipeline's package's, those of the pipelines it builds too)."""
    pipeline = plan.pipeline
    bases = ", ".join([SAVED_WITH_PACKAGE_NAME, "ModularPipeline", *pipeline.bases])
    # a module outside any package is importable by its file name once its directory is on sys.path
    module = plan.source_module or PurePosixPath(plan.source_label).stem
    standard = f"{module}.{plan.class_name}"
    guidance = plan.guidance
    unserved = "{" + ", ".join(f"{name!r}: {default}" for name, default in plan.unserved_arguments) + "}"
    guided = guidance.pattern != GuidancePattern.NONE
    install_guider = "        install_standard_guider(self, kwargs, strict)\n" if guided else ""
    # the guider the pipeline starts with is its own to replace; one the user installs later is not
    own_guider = "        self._own_guider = getattr(self, 'guider', None)\n" if guided else ""
    adaptation = ""
    if pipeline.adaptation is not None:
        names = tuple_literal(pipeline.init_components)
        adapt = "self._adapt_components(**{name: getattr(self, name, None) for name in adapted})"
        if pipeline.rebound_components:
            adapt = f"super().register_components(**{adapt})"
        adaptation = (
            "    def register_components(self, **kwargs):\n"
            f"        # {plan.class_name}.__init__ adapts its components (e.g. fixes outdated scheduler configs);\n"
            "        # registration is where a ModularPipeline receives components, so the same happens here\n"
            "        # (not while it registers empty specs).\n"
            "        super().register_components(**kwargs)\n"
            f"        adapted = {names}\n"
            "        if any(kwargs.get(name) is not None for name in adapted):\n"
            f"            {adapt}\n\n"
        )
    docstring = (
        f'    """A ModularPipeline converted from `{plan.class_name}` by modularize.\n\n'
        f"    `translate_standard_call(**kwargs)` turns the keyword arguments of a `{plan.class_name}` call into\n"
        "    inputs of this pipeline (installing the guider that call would guide with); the standard call's outputs\n"
        "    are then in the pipeline state under the names in `standard_outputs`.\n"
        '    """\n\n'
    )
    template = (
        f"class {pipeline.class_name}({bases}):\n"
        + docstring
        + f"    standard_pipeline = {standard!r}\n"
        + f"    denoiser_name = {guidance.denoiser!r}\n"
        + f"    standard_batches_cfg = {guidance.kind in ('batched', 'branched')!r}\n"
        + (f"    auxiliary_models = {tuple_literal(guidance.auxiliaries)}\n" if guidance.auxiliaries else "")
        + (
            f"    built_pipelines = {tuple_literal(s.attribute for s in plan.sub_pipelines)}\n"
            if plan.sub_pipelines
            else ""
        )
        + f"    block_arguments = {tuple_literal(plan.block_arguments)}\n"
        + f"    guider_arguments = {tuple_literal(p.name for p in guidance.arguments)}\n"
        + f"    unserved_arguments = {unserved}\n"
        + "    # accepted and dropped: the standard call never reads them (or overwrites them before it does)\n"
        + f"    ignored_arguments = {tuple_literal(plan.ignored_arguments)}\n"
        + f"    standard_outputs = {dict(plan.outputs)!r}\n"
        + f"    package_modules = {tuple_literal(modules if modules is not None else _package_modules(plan, prefix))}\n"
        + f"    {ATTRIBUTES}\n\n"
        + "    def __init__(self, blocks=None, *args, **kwargs):\n"
        + "        if blocks is None:\n"
        + f"            from .{prefix}{_blocks_module(plan)} import {plan.blocks_class_name}\n\n"
        + f"            blocks = {plan.blocks_class_name}()\n"
        + "        super().__init__(blocks, *args, **kwargs)\n"
        + own_guider
        + "\n"
        + adaptation
        + f"    {MEMBERS}\n\n"
        + _guider_methods(plan)
        + "    def __call__(self, state=None, output=None, **kwargs):\n"
        + "        # Arguments of the standard call that configure guidance (or that this package cannot serve) mean here\n"
        + "        # what they mean there: passing `guidance_scale` installs the guider the standard call would use.\n"
        + "        standard = (*self.guider_arguments, *self.unserved_arguments, *self.ignored_arguments)\n"
        + "        if any(name in kwargs for name in standard):\n"
        + "            kwargs = self._from_standard_arguments(kwargs, strict=False)\n"
        + "        return super().__call__(state, output, **kwargs)\n\n"
        + "    def translate_standard_call(self, **kwargs) -> dict:\n"
        + f'        """Keyword arguments of `{plan.class_name}.__call__` -> keyword arguments of this pipeline."""\n'
        + "        return self._from_standard_arguments(kwargs, strict=True)\n\n"
        + "    def _from_standard_arguments(self, kwargs: dict, strict: bool) -> dict:\n"
        + "        known = {\n"
        + "            *self.block_arguments,\n"
        + "            *self.guider_arguments,\n"
        + "            *self.unserved_arguments,\n"
        + "            *self.ignored_arguments,\n"
        + "            'return_dict',\n"
        + "        }\n"
        + "        unknown = sorted(set(kwargs) - known)\n"
        + "        if strict and unknown:\n"
        + f'            raise TypeError(f"{plan.class_name}.__call__ got unexpected keyword arguments: {{unknown}}")\n'
        + "        # a pipeline built from some of the blocks takes what earlier blocks would have produced as inputs,\n"
        + "        # under their names (`height`, set from the image): those are its inputs, not the standard arguments\n"
        + "        inputs = {param.name for param in self._blocks.inputs if param.name}\n"
        + "        for name, default in self.unserved_arguments.items():\n"
        + "            value = kwargs.get(name, default)\n"
        + "            if name in inputs:\n"
        + "                continue\n"
        + "            if (value is not None) if default is None else (value != default):\n"
        + "                raise ValueError(\n"
        + '                    f"`{name}` is not supported by this generated package (leave it at {default!r}); "\n'
        + f'                    "use {plan.class_name} for it"\n'
        + "                )\n"
        + install_guider
        + "        served = {*self.block_arguments, *unknown, *inputs}\n"
        + "        return {name: value for name, value in kwargs.items() if name in served}\n"
    )
    members: list[cst.BaseStatement] = []
    if pipeline.adaptation is not None:
        members.append(pipeline.adaptation)
    members += list(pipeline.properties)
    printed = printed_class(template, {ATTRIBUTES: list(pipeline.class_attributes), MEMBERS: members})
    runtime = [
        copied_definition(EXPLICIT_NONE_MIXIN),
        copied_definition(PACKAGE_BLOCKS_MIXIN),
        copied_definition(REGISTER_IN_DIFFUSERS),
    ]
    if guidance.pattern != GuidancePattern.NONE:
        runtime.append(copied_definition(INSTALL_STANDARD_GUIDER))
    if guidance.perturbed is not None:
        runtime += runtime_definitions([PERTURBED_ATTENTION_GUIDER, GUIDER_RUNS_UNCONDITIONAL])
    if plan.sub_pipelines:
        runtime += runtime_definitions([SUB_PIPELINE])
    # a base of the pipeline class, so defined above it
    return Emitted([copied_definition(SAVED_WITH_PACKAGE_MIXIN), *printed.statements, *runtime], printed.bodies)


def _blocks_module(plan: PipelinePlan) -> str:
    return blocks_file(plan.package)[: -len(".py")]


def _package_modules(plan: PipelinePlan, prefix: str = "") -> list[str]:
    """The modules a saved pipeline's directory needs (all but `__init__`: diffusers loads them one by one), those
    of the pipelines it builds too."""
    files = [name for name in FIXED_FILES if name != "__init__.py"] + [blocks_file(plan.package)]
    modules = [f"{prefix}{name[: -len('.py')]}" for name in files]
    for sub in plan.sub_pipelines:
        modules += _package_modules(sub.plan, prefix + sub.prefix)
    return sorted(modules)
