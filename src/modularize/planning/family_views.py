"""A workflow's plan as a family's package holds it, and the helpers the package writes once: what the family's
emitter renders (`emit.family`), computed from the family's plan alone.

    workflow_in_family(family, img2img)
    -> the img2img plan with
         StableDiffusionImg2ImgEncodeInputPromptStep (shared with inpaint) -> StableDiffusionEncodeInputPromptStep
         components: StableDiffusionImg2ImgGeneratedModularPipeline     -> StableDiffusionFamilyGeneratedModularPipeline
         encode_prompt (shared by every workflow)   -> left out, the block inheriting StableDiffusionFamilyHelpers
         prompt_clean (defined differently)         -> prompt_clean_img2img
"""

from __future__ import annotations

import dataclasses

import libcst as cst

from ..cst.substitute import substitute_names
from .family import FamilyPlan
from .family_sharing import WRAPPER, FamilyBlock, Workflow, helpers_of, own_class_names
from .plan import LoopPlan, PipelinePlan


def workflow_in_family(family: FamilyPlan, workflow: Workflow) -> PipelinePlan:
    """The workflow's plan as the family's package holds its blocks: each block's classes renamed to its group's
    prefix (references in its code too), the family's model name, package and pipeline class.

        StableDiffusionImg2ImgEncodeInputPromptStep (shared with inpaint) -> StableDiffusionEncodeInputPromptStep
        components: StableDiffusionImg2ImgGeneratedModularPipeline      -> StableDiffusionFamilyGeneratedModularPipeline
    """
    plan = workflow.plan
    renamed: dict[str, str] = {}
    for block in family.blocks:
        prefix = _prefix_of(block, workflow.name)
        if prefix is None:
            continue
        (own,) = [b for b in plan.blocks if b.key == block.key]
        classes = [(own.class_name, prefix)]
        if isinstance(own, LoopPlan):
            parts = {part.key: _prefix_of(part, workflow.name) for part in block.parts}
            classes.append((own.wrapper_class_name, parts.get(WRAPPER) or prefix))
            classes += [(step.class_name, parts.get(step.key) or prefix) for step in own.steps]
        for old, new_prefix in classes:
            renamed[old] = new_prefix + old[len(plan.prefix) :]
    names = {old: cst.Name(new) for old, new in renamed.items() if old != new}
    names.update({old: cst.Name(new) for old, new in family.renamed_module_names(workflow.name).items()})
    blocks = tuple(_renamed(block, renamed, names) for block in plan.blocks)
    shared = {name for name, group in family.shared_helpers if workflow.name in group}
    if shared:
        blocks = tuple(_without_helpers(block, shared, family.helpers_class_name) for block in blocks)
    pipeline = dataclasses.replace(plan.pipeline, class_name=family.pipeline_class_name)
    return dataclasses.replace(
        plan, blocks=blocks, model_name=family.model_name, package=family.package, pipeline=pipeline
    )


def workflow_pipeline_plan(family: FamilyPlan, workflow: Workflow) -> PipelinePlan:
    """The workflow's plan for its own pipeline class in the family's package: its names, the family's package
    (its modules), the module-level names its source's definitions have there."""
    renamed = family.renamed_module_names(workflow.name)
    pipeline = workflow.plan.pipeline
    if renamed:
        pipeline = _renamed(pipeline, {}, {old: cst.Name(new) for old, new in renamed.items()})
    return dataclasses.replace(workflow.plan, package=family.package, pipeline=pipeline)


def _without_helpers(value, shared: set[str], mixin: str):
    """A block (a loop's wrapper and steps too) without the shared helpers, inheriting the class holding them."""
    if isinstance(value, LoopPlan):
        value = dataclasses.replace(value, steps=tuple(_without_helpers(s, shared, mixin) for s in value.steps))
    kept = tuple(h for h in value.helpers if h.name not in shared)
    if len(kept) == len(value.helpers):
        return value
    return dataclasses.replace(value, helpers=kept, mixins=(mixin,))


def shared_helper_functions(family: FamilyPlan) -> list[cst.FunctionDef]:
    """The shared helpers, each from the first workflow sharing it, calling the other shared helpers through the
    class holding them: the members of `FamilyHelpers`."""
    functions = []
    for name, group in family.shared_helpers:
        plan = family.workflow(group[0]).plan
        function = next(h.function for h in helpers_of(plan) if h.name == name)
        names = dict.fromkeys(own_class_names(plan), cst.Name(family.helpers_class_name))
        names.update({old: cst.Name(new) for old, new in family.renamed_module_names(group[0]).items()})
        functions.append(substitute_names(function, names))
    return functions


def _prefix_of(block: FamilyBlock, workflow: str) -> str | None:
    """The prefix of the workflow's class at this key (or part), None where the workflow has none."""
    index = next((i for i, group in enumerate(block.groups) if workflow in group), None)
    return None if index is None else block.prefixes[index]


def _renamed(value, renamed: dict[str, str], names: dict[str, cst.Name]):
    if isinstance(value, cst.CSTNode):
        return substitute_names(value, names) if names else value
    if isinstance(value, tuple):
        return tuple(_renamed(item, renamed, names) for item in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {}
        for field in dataclasses.fields(value):
            current = getattr(value, field.name)
            if field.name in ("class_name", "wrapper_class_name"):
                changes[field.name] = renamed.get(current, current)
            elif isinstance(current, (cst.CSTNode, tuple)) or dataclasses.is_dataclass(current):
                changes[field.name] = _renamed(current, renamed, names)
        return dataclasses.replace(value, **changes)
    return value
