"""Assemble a family's package: the workflows of several pipelines, each block written once per distinct code.

    emit_family(family_plan([sd, sd_img2img, sd_inpaint]), sources, generator)
    -> encoders.py        StableDiffusionEncodeInputPromptStep (inpaint, img2img), StableDiffusionBaseEncode...
       before_denoise.py  StableDiffusionPrepareExtraStepKwargsStep (all three), ...Img2ImgSetTimestepsStep, ...
       denoise.py, decoders.py
       modular_pipeline.py
           each workflow's pipeline class, as its own package has it (`StableDiffusionImg2ImgGeneratedModular...`)
           StableDiffusionFamilyGeneratedModularPipeline   the workflows' members by the workflow running
       modular_blocks_stable_diffusion.py
           each workflow's blocks (`StableDiffusionImg2ImgGeneratedBlocks`), in the order its `__call__` runs them
           StableDiffusionWorkflowsStep        AutoPipelineBlocks: `mask_image` -> inpaint, `image` -> img2img, ...
           StableDiffusionFamilyGeneratedBlocks  with `available_workflows` / `get_workflow`

What is written where was decided by the family's plan (`planning.family`); this module renders it with the same
emitters a single pipeline's package uses, over each workflow's plan as the family holds it
(`workflow_in_family`), and writes a class or definition that several workflows carry once.
"""

from __future__ import annotations

from collections.abc import Sequence

import libcst as cst

from ..planning.family import FamilyPlan
from ..planning.family_views import shared_helper_functions, workflow_in_family, workflow_pipeline_plan
from ..planning.plan import LoopPlan, PipelinePlan
from .format import format_files
from .header import with_family_header
from .layout import LEAF_FILES, blocks_file
from .package import _blocks_constant, _File, add_block
from .pipeline_class import (
    EXPLICIT_NONE_NAME,
    GUIDER_RUNS_UNCONDITIONAL,
    PACKAGE_BLOCKS_NAME,
    REGISTER_IN_DIFFUSERS_NAME,
    SAVED_WITH_PACKAGE_NAME,
    pipeline_class,
    tuple_literal,
)
from .runtime import defined_name, runtime_definitions
from .splice import MEMBERS, printed_class, splice

FAMILY_PIPELINE = "FamilyPipeline"
WORKFLOW_BLOCKS = "WorkflowBlocks"
_PIPELINE_FILE = "modular_pipeline.py"
HELPERS_FILE = "helpers.py"  # the helpers several workflows' blocks share


def emit_family(family: FamilyPlan, sources: dict[str, str], generator: str, in_tree: bool = False) -> dict[str, str]:
    """Every file of the family's package, formatted, each with the family's header. `sources`: each workflow's
    source text by its label."""
    views = {w.name: workflow_in_family(family, w) for w in family.workflows}
    default = views[family.default_workflow]
    blocks_name = blocks_file(family.package)
    modules = _modules(family)
    files = {name: _File(name, default, in_tree) for name in modules}
    package_names: dict[str, str] = {
        name: _PIPELINE_FILE
        for name in (
            family.pipeline_class_name,
            EXPLICIT_NONE_NAME,
            PACKAGE_BLOCKS_NAME,
            "install_standard_guider",
            GUIDER_RUNS_UNCONDITIONAL,
            SAVED_WITH_PACKAGE_NAME,
            REGISTER_IN_DIFFUSERS_NAME,
            FAMILY_PIPELINE,
            *(w.plan.pipeline_class_name for w in family.workflows),
        )
    }

    if family.shared_helpers:
        package_names[family.helpers_class_name] = HELPERS_FILE
        files[HELPERS_FILE].docstring = "Helpers the blocks of several workflows share, as one class they inherit."
        helpers = printed_class(
            f"class {family.helpers_class_name}:\n"
            '    """The helpers whose code the workflows named with each share: their blocks inherit them."""\n\n'
            f"    {MEMBERS}\n",
            {MEMBERS: shared_helper_functions(family)},
        )
        files[HELPERS_FILE].body = helpers.statements
        files[HELPERS_FILE].add_bodies(helpers.bodies)

    # the blocks: each group's code once, from its first workflow
    for block in family.blocks:
        for group in block.groups:
            view = views[group[0]]
            (planned,) = [b for b in view.blocks if b.key == block.key]
            add_block(files[planned.file], view, planned, package_names)
    for name in LEAF_FILES:
        files[name].body = _once(files[name].body)

    # each workflow's own pipeline class, then the family's
    pipeline_statements: list[cst.BaseStatement] = []
    saved = sorted(name[:-3] for name in modules if name != "__init__.py")
    for workflow in family.workflows:
        pipeline = pipeline_class(workflow_pipeline_plan(family, workflow), modules=saved)
        pipeline_statements += pipeline.statements
        files[_PIPELINE_FILE].add_bodies(pipeline.bodies)
    pipeline_statements += _family_pipeline_class(family, modules, _block_workflows(family, views))
    files[_PIPELINE_FILE].body = _once(pipeline_statements)

    files[blocks_name].body = _blocks_module(family, views)
    for workflow in family.workflows:
        package_names[workflow.plan.blocks_class_name] = blocks_name
        package_names[_blocks_constant(workflow.plan)] = blocks_name
    for name in (family.blocks_class_name, family.workflows_class_name):
        package_names[name] = blocks_name
    exported = sorted([family.blocks_class_name, family.pipeline_class_name])
    files["__init__.py"].docstring = f"Modular pipeline blocks of the {family.prefix or 'pipelines'} family: " + (
        ", ".join(w.plan.class_name for w in family.workflows) + "."
    )
    files["__init__.py"].body = list(
        cst.parse_module(
            f"from .{blocks_name[:-3]} import {family.blocks_class_name}\n"
            f"from .modular_pipeline import {family.pipeline_class_name}\n\n"
            f"__all__ = {exported!r}\n"
        ).body
    )
    for name in LEAF_FILES:
        if not files[name].body:
            files[name].docstring = f"No workflow of the family has a stage that belongs in {name}."

    definitions = family.module_definitions
    bodies = format_files({name: files[name].render(package_names, definitions) for name in sorted(files)})
    recorded = [(w.plan.source_label, sources[w.plan.source_label], w.plan.class_name) for w in family.workflows]
    return {name: with_family_header(body, recorded, generator) for name, body in bodies.items()}


def _modules(family: FamilyPlan) -> list[str]:
    """The package's files: a single pipeline's, and the shared helpers' module when there are any."""
    helpers = [HELPERS_FILE] if family.shared_helpers else []
    return ["__init__.py", *LEAF_FILES, *helpers, _PIPELINE_FILE, blocks_file(family.package)]


def _block_workflows(family: FamilyPlan, views: dict[str, PipelinePlan]) -> dict[str, tuple[str, ...]]:
    """Each class of a block (a loop's wrapper and steps too) -> the workflows running it, in the family's order."""
    running: dict[str, list[str]] = {}
    for workflow in family.workflows:
        for block in views[workflow.name].blocks:
            names = [block.class_name]
            if isinstance(block, LoopPlan):
                names += [block.wrapper_class_name, *(step.class_name for step in block.steps if step.body)]
            for name in names:
                running.setdefault(name, []).append(workflow.name)
    return {name: tuple(workflows) for name, workflows in sorted(running.items())}


def _family_pipeline_class(
    family: FamilyPlan, files: Sequence[str], block_workflows: dict[str, tuple[str, ...]]
) -> list[cst.BaseStatement]:
    blocks_name = blocks_file(family.package)
    bases: dict[str, None] = {}
    for workflow in family.workflows:
        bases.update(dict.fromkeys(workflow.plan.pipeline.bases))
    names = ", ".join([FAMILY_PIPELINE, SAVED_WITH_PACKAGE_NAME, "ModularPipeline", *bases])
    pipelines = "".join(f"        {w.name!r}: {w.plan.pipeline_class_name},\n" for w in family.workflows)
    triggers = "".join(f"        ({w.name!r}, {w.trigger!r}),\n" for w in family.workflows)
    adapted = "".join(
        f"        {w.name!r}: ({tuple_literal(w.plan.pipeline.init_components)}, {bool(w.plan.pipeline.rebound_components)}),\n"
        for w in family.workflows
        if w.plan.pipeline.adaptation is not None
    )
    saved = sorted(name[:-3] for name in files if name != "__init__.py")
    listed = ", ".join(f"`{w.plan.class_name}`" for w in family.workflows)
    running = "".join(
        f"        {name!r}: {tuple_literal(workflows)},\n" for name, workflows in block_workflows.items()
    )
    renamed = "".join(f"        {w.name!r}: {dict(w.renamed)!r},\n" for w in family.workflows if w.renamed)
    template = (
        f"class {family.pipeline_class_name}({names}):\n"
        f'    """The workflows of {listed}, converted by modularize, as one ModularPipeline.\n\n'
        "    A call runs the workflow its inputs select (`workflow_for`: the first whose trigger input is given, else\n"
        "    the default), as the blocks select it; what the workflows' own pipeline classes define differently is the\n"
        "    running workflow's. `translate_standard_call(**kwargs)` turns the keyword arguments of the standard call\n"
        "    of the workflow they select (`workflow=NAME`: of that one) into inputs of this pipeline.\n"
        '    """\n\n'
        f"    workflow_pipelines = {{\n{pipelines}    }}\n"
        f"    workflow_triggers = (\n{triggers}    )\n"
        f"    default_workflow = {family.default_workflow!r}\n"
        f"    adapted_components = {{\n{adapted}    }}\n"
        f"    block_workflows = {{\n{running}    }}\n"
        + (f"    renamed_arguments = {{\n{renamed}    }}\n" if renamed else "")
        + f"    package_modules = {tuple_literal(saved)}\n\n"
        "    def __init__(self, blocks=None, *args, **kwargs):\n"
        "        if blocks is None:\n"
        f"            from .{blocks_name[:-3]} import {family.blocks_class_name}\n\n"
        f"            blocks = {family.blocks_class_name}()\n"
        "        super().__init__(blocks, *args, **kwargs)\n"
        "        self._own_guider = getattr(self, 'guider', None)\n"
    )
    return [*runtime_definitions([FAMILY_PIPELINE]), *splice(template, {})]


def _blocks_module(family: FamilyPlan, views: dict[str, PipelinePlan]) -> list[cst.BaseStatement]:
    text = ""
    for workflow in family.workflows:
        plan, view = workflow.plan, views[workflow.name]
        constant = _blocks_constant(plan)
        entries = "".join(f"        ({block.key!r}, {block.class_name}),\n" for block in view.blocks)
        description = f"The `{workflow.name}` workflow: blocks converted from `{plan.class_name}`, in the order its `__call__` runs them."
        text += (
            f"{constant} = InsertableDict(\n    [\n{entries}    ]\n)\n\n\n"
            f"class {plan.blocks_class_name}({WORKFLOW_BLOCKS}, {PACKAGE_BLOCKS_NAME}, SequentialPipelineBlocks):\n"
            f"    model_name = {family.model_name!r}\n"
            f"    modular_pipeline_class = {plan.pipeline_class_name}\n"
            f"    workflow = {workflow.name!r}\n"
            f"    block_classes = list({constant}.values())\n"
            f"    block_names = list({constant}.keys())\n\n"
            "    @property\n"
            "    def description(self) -> str:\n"
            f"        return {description!r}\n\n\n"
        )
    classes = ", ".join(w.plan.blocks_class_name for w in family.workflows)
    names = ", ".join(repr(w.name) for w in family.workflows)
    triggers = ", ".join(repr(w.trigger) for w in family.workflows)
    selection = "; ".join(
        f"`{w.trigger}` given: {w.name}" if w.trigger else f"otherwise: {w.name}" for w in family.workflows
    )
    workflow_map = "".join(
        f"        {w.name!r}: { ({w.trigger: True} if w.trigger else {})!r},\n" for w in family.workflows
    )
    registered = ", ".join(
        [family.pipeline_class_name, family.blocks_class_name]
        + [name for w in family.workflows for name in (w.plan.pipeline_class_name, w.plan.blocks_class_name)]
    )
    if family.shared_helpers:
        text += (
            "# diffusers' loader copies the modules a saved pipeline's blocks module imports, and only those: the\n"
            "# module of the helpers the blocks share is one\n"
            f"SHARED_HELPERS = {family.helpers_class_name}\n\n\n"
        )
    text += (
        f"class {family.workflows_class_name}({PACKAGE_BLOCKS_NAME}, AutoPipelineBlocks):\n"
        f"    model_name = {family.model_name!r}\n"
        f"    modular_pipeline_class = {family.pipeline_class_name}\n"
        f"    block_classes = [{classes}]\n"
        f"    block_names = [{names}]\n"
        f"    block_trigger_inputs = [{triggers}]\n\n"
        "    @property\n"
        "    def description(self) -> str:\n"
        f"        return {('Runs one workflow, selected by the inputs given (' + selection + ').')!r}\n\n\n"
        f"class {family.blocks_class_name}({PACKAGE_BLOCKS_NAME}, SequentialPipelineBlocks):\n"
        f"    model_name = {family.model_name!r}\n"
        f"    modular_pipeline_class = {family.pipeline_class_name}\n"
        f"    block_classes = [{family.workflows_class_name}]\n"
        "    block_names = ['workflows']\n"
        f"    _workflow_map = {{\n{workflow_map}    }}\n\n"
        "    @property\n"
        "    def description(self) -> str:\n"
        f"        return {('The workflows of ' + ', '.join(w.plan.class_name for w in family.workflows) + ', selected by the inputs given.')!r}\n\n\n"
        f"{REGISTER_IN_DIFFUSERS_NAME}({registered})\n"
    )
    return [*runtime_definitions([WORKFLOW_BLOCKS]), *splice(text, {})]


def _once(statements: Sequence[cst.BaseStatement]) -> list[cst.BaseStatement]:
    """Each top-level definition once (the runtime code or a class several workflows' code carries), in the
    order first seen."""
    seen: set[str] = set()
    kept = []
    for statement in statements:
        name = defined_name(statement)
        if name is not None:
            if name in seen:
                continue
            seen.add(name)
        kept.append(statement)
    return kept
