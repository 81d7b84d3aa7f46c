"""A model family: several standard pipelines (text-to-image, image-to-image, inpainting, ...) as the workflows of
one package. This module decides, from their plans alone, how the workflows are told apart, what of their code
the package writes once (`planning.family_sharing`, `planning.family_modules`) and under which names.

    family_plan([plan_of(StableDiffusionPipeline), plan_of(StableDiffusionImg2ImgPipeline),
                 plan_of(StableDiffusionInpaintPipeline)])
    ->
    FamilyPlan(prefix="StableDiffusion",
               workflows=(Workflow("inpaint", trigger="mask_image", ...),    # the first whose trigger is given runs
                          Workflow("img2img", trigger="image", ...),
                          Workflow("base", trigger=None, ...)),              # none given: the default
               blocks=(FamilyBlock("prepare_extra_step_kwargs", (("inpaint", "img2img", "base"),), ...),
                       FamilyBlock("denoise", (("inpaint",), ("img2img",), ("base",)), ...), ...),
               helpers=(FamilyHelper("encode_prompt", (("inpaint", "img2img", "base"),), ...), ...),
               shared_helpers=(("encode_prompt", ("inpaint", "img2img", "base")), ...))

**Telling workflows apart.** diffusers' modular packages select a workflow by the inputs a call gives
(`AutoPipelineBlocks`: the first block whose trigger input is not None runs). Here the default is the workflow
named like the family (or the first given); the others are placed one at a time, each with a trigger: the first
argument of its own (in signature order) that no workflow placed after it takes and that defaults to None, so that
a call meant for a later workflow cannot give it, and one meant for this workflow gives it when it uses what the
workflow is for (an argument with another default, `strength=0.8`, is left out: a call may rely on the default;
so is one its code can do without: `planning.family_triggers`). Where two workflows both need an argument of the
same name and nothing else tells them apart, the later given takes it as `<workflow>_<argument>`
(`planning.family_rename`): SDXL ControlNet's control `image` becomes `control_net_image` beside image-to-image.

**Names.** A block written once for several workflows takes the family's prefix
(`StableDiffusionEncodeInputPromptStep`); one of a workflow's own keeps the workflow's
(`StableDiffusionImg2ImgSetTimestepsStep`); a helper whose code workflows share is written once, in a class their
blocks inherit (`StableDiffusionFamilyHelpers`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import libcst as cst
import libcst.matchers as m

from ..cst.tree_walk import findall, walk
from .family_modules import module_names, names_read_by_blocks
from .family_sharing import (
    FamilyBlock,
    FamilyHelper,
    Workflow,
    family_blocks,
    family_helpers,
    helpers_of,
    lines_of_workflow,
    own_class_names,
)
from .family_triggers import ordered_with_triggers, refusal
from .naming import Naming, words_of
from .plan import ModuleDefinition, PipelinePlan

__all__ = ["DEFAULT_WORKFLOW", "FamilyBlock", "FamilyHelper", "FamilyPlan", "Workflow", "family_plan"]

DEFAULT_WORKFLOW = "base"


@dataclass(frozen=True)
class FamilyPlan:
    prefix: str  # the class names' common prefix ("StableDiffusion")
    workflows: tuple[Workflow, ...]  # in selection order: every trigger before the default
    blocks: tuple[FamilyBlock, ...]
    helpers: tuple[FamilyHelper, ...]
    # the module-level definitions of the workflows' sources (`retrieve_timesteps`, imports), each name once
    module_definitions: tuple[ModuleDefinition, ...] = ()
    # helpers written once for the workflows sharing their code (`FamilyHelpers`), with those workflows
    shared_helpers: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # per workflow, the names its source's module definitions have in the package where the sources define them
    # differently (`basic_clean` -> `basic_clean_i2v`, `planning.family_modules`)
    module_renames: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()

    def renamed_module_names(self, workflow: str) -> dict[str, str]:
        return dict(next((pairs for name, pairs in self.module_renames if name == workflow), ()))

    @property
    def naming(self) -> Naming:
        return Naming.of_pipeline(f"{self.prefix}Pipeline")

    @property
    def package(self) -> str:
        return self.naming.package

    @property
    def model_name(self) -> str:
        return f"{self.naming.model_name}-family"

    # "Family" keeps the family's classes apart from those of the workflow named like it (`StableDiffusionPipeline`)
    @property
    def pipeline_class_name(self) -> str:
        return f"{self.naming.prefix}FamilyGeneratedModularPipeline"

    @property
    def blocks_class_name(self) -> str:
        return f"{self.naming.prefix}FamilyGeneratedBlocks"

    @property
    def workflows_class_name(self) -> str:
        return f"{self.naming.prefix}WorkflowsStep"

    @property
    def helpers_class_name(self) -> str:
        return f"{self.naming.prefix}FamilyHelpers"

    @property
    def default_workflow(self) -> str:
        return self.workflows[-1].name

    def workflow(self, name: str) -> Workflow:
        return next(w for w in self.workflows if w.name == name)

    def lines_written(self) -> tuple[int, int]:
        """(what the family carries once per group, what its largest workflow carries alone): source lines of
        block statements and helpers, the part of a package that grows with the pipeline."""
        family = sum(sum(b.lines) for b in self.blocks) + sum(sum(h.lines) for h in self.helpers)
        largest = max(lines_of_workflow(w.plan) for w in self.workflows)
        return family, largest


def family_plan(plans: Sequence[PipelinePlan]) -> FamilyPlan:
    if len(plans) < 2:
        raise ValueError("a family has two workflows or more")
    classes = [p.class_name for p in plans]
    if len(set(classes)) < len(classes):
        raise refusal(plans[0], f"`{_repeated(classes)}` is given twice: each workflow is one pipeline class")
    prefix = _common_prefix([p.prefix for p in plans])
    names = [_workflow_name(p.prefix, prefix) for p in plans]
    if len(set(names)) < len(names):
        raise refusal(plans[0], f"two pipelines give the workflow name `{_repeated(names)}`")
    built = next((p for p in plans if p.sub_pipelines), None)
    if built is not None:
        raise refusal(built, f"`{built.class_name}` calls pipelines it builds: it is not a workflow of a family yet")
    workflows = ordered_with_triggers(
        [Workflow(n, None, p) for n, p in zip(names, plans, strict=True)], DEFAULT_WORKFLOW
    )
    modules = module_names({w.name: w.plan for w in workflows}, names_read_by_blocks(plans))
    blocks = tuple(
        dataclasses.replace(
            _with_prefixes(block, workflows, prefix),
            parts=tuple(_with_prefixes(part, workflows, prefix) for part in block.parts),
        )
        for block in family_blocks(workflows, modules.variants)
    )
    helpers = family_helpers(workflows, modules.variants)
    shared = _shared_helpers(helpers, workflows)
    renames = tuple((w, tuple(sorted(modules.renamed[w].items()))) for w in modules.renamed if modules.renamed[w])
    return FamilyPlan(prefix, workflows, blocks, helpers, modules.definitions, shared, renames)


def _shared_helpers(
    helpers: Sequence[FamilyHelper], workflows: Sequence[Workflow]
) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Each helper whose code two workflows or more share, with the largest such group: written once, as a static
    method of a class the blocks carrying it inherit. A helper calling another helper through a class of the
    package (`StableDiffusionEncodeInputPromptStep.encode_image(...)`) is shared only with that one shared for
    the same workflows at least (it then calls the shared one)."""
    chosen = {}
    for helper in helpers:
        group = max((g for g in helper.groups if len(g) > 1), key=len, default=None)
        if group is not None:
            chosen[helper.name] = group
    first = {w.name: w for w in workflows}
    changed = True
    while changed:
        changed = False
        for name, group in list(chosen.items()):
            called = _helpers_called_through_classes(first[group[0]].plan, name)
            if called is None or any(not set(group) <= set(chosen.get(other, ())) for other in called):
                del chosen[name]
                changed = True
    return tuple(sorted(chosen.items()))


def _helpers_called_through_classes(plan: PipelinePlan, name: str) -> set[str] | None:
    """The helpers `name` calls as `SomeBlockClass.helper`, or None when it names a class of the package
    otherwise."""
    own = own_class_names(plan)
    function = next(h.function for h in helpers_of(plan) if h.name == name)
    through = [a for a in findall(function, m.Attribute(value=m.Name())) if a.value.value in own]
    named = sum(1 for found in walk(function) if isinstance(found, cst.Name) and found.value in own)
    return {a.attr.value for a in through} if named == len(through) else None


def _with_prefixes(block: FamilyBlock, workflows: Sequence[Workflow], prefix: str) -> FamilyBlock:
    """The prefix of each group's classes: `StableDiffusion` + `EncodeInputPromptStep` for a shared block, the
    workflow's own for one of its own, `StableDiffusion` + `Base` for the family's namesake when a shared block
    at the same key already takes the family's prefix."""
    own = {w.name: w.plan.prefix for w in workflows}
    chosen = [prefix if len(group) > 1 else own[group[0]] for group in block.groups]
    for index, group in enumerate(block.groups):
        if chosen.count(chosen[index]) > 1 and len(group) == 1:
            chosen[index] = prefix + "".join(word.capitalize() for word in group[0].split("_"))
    # two groups of several workflows at one key (ControlNet inpainting with inpainting, ControlNet with the
    # default): the first keeps the family's prefix, another takes its first workflow's
    for index, group in enumerate(block.groups):
        if len(group) > 1 and chosen.index(chosen[index]) != index:
            taken = own[group[0]] in chosen
            chosen[index] = prefix + "".join(w.capitalize() for w in group[0].split("_")) if taken else own[group[0]]
    return dataclasses.replace(block, prefixes=tuple(chosen))


def _workflow_name(own_prefix: str, family_prefix: str) -> str:
    return "_".join(words_of(own_prefix[len(family_prefix) :])) or DEFAULT_WORKFLOW


def _common_prefix(prefixes: Sequence[str]) -> str:
    """The longest common start that ends where a word of every prefix ends (`StableDiffusion` of
    `StableDiffusion`, `StableDiffusionImg2Img`; not `StableDiffusionX` of `StableDiffusionXL`, `StableDiffusionX2`)."""
    shortest = min(prefixes, key=len)
    for end in range(len(shortest), 0, -1):
        start = shortest[:end]
        if all(p.startswith(start) and _at_word_end(p, end) for p in prefixes):
            return start
    return ""


def _at_word_end(name: str, end: int) -> bool:
    """A word of `name` ends before `end`: the name ends there, or a capital starts a word there (after a small
    letter or a digit, or as the first letter of a capitalized word after an acronym: `XL|Img`)."""
    if end == len(name):
        return True
    before, at, after = name[end - 1], name[end], name[end + 1 : end + 2]
    return at.isupper() and (before.islower() or before.isdigit() or after.islower())


def _repeated(values: Sequence[str]) -> str:
    return next(v for v in values if values.count(v) > 1)
