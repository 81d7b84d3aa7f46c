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
so is one its code can do without, `_handled_when_missing`). Where two workflows both need an argument of the
same name and nothing else tells them apart, the later given takes it as `<workflow>_<argument>`
(`planning.family_rename`): SDXL ControlNet's control `image` becomes `control_net_image` beside image-to-image.

**Names.** A block written once for several workflows takes the family's prefix
(`StableDiffusionEncodeInputPromptStep`); one of a workflow's own keeps the workflow's
(`StableDiffusionImg2ImgSetTimestepsStep`); a helper whose code workflows share is written once, in a class their
blocks inherit (`StableDiffusionFamilyHelpers`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import libcst as cst
import libcst.matchers as m

from ..cst.match_filter import matches
from ..cst.tree_walk import findall, names_in, walk
from ..errors import ConversionError
from .family_modules import module_names, names_read_by_blocks, nodes_of
from .family_rename import names_taken, renamable, with_renamed_argument
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
from .naming import Naming, words_of
from .plan import BlockPlan, LoopPlan, LoopStepPlan, ModuleDefinition, PipelinePlan

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
        raise _refusal(plans[0], f"`{_repeated(classes)}` is given twice: each workflow is one pipeline class")
    prefix = _common_prefix([p.prefix for p in plans])
    names = [_workflow_name(p.prefix, prefix) for p in plans]
    if len(set(names)) < len(names):
        raise _refusal(plans[0], f"two pipelines give the workflow name `{_repeated(names)}`")
    built = next((p for p in plans if p.sub_pipelines), None)
    if built is not None:
        raise _refusal(built, f"`{built.class_name}` calls pipelines it builds: it is not a workflow of a family yet")
    workflows = _ordered_with_triggers([Workflow(n, None, p) for n, p in zip(names, plans, strict=True)])
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


def _ordered_with_triggers(workflows: list[Workflow]) -> tuple[Workflow, ...]:
    """The default first: the workflow named like the family (`StableDiffusionPipeline` of `StableDiffusion`), or
    else the first given. Then the others placed one at a time: the first (in the given order) with a trigger that
    none of the workflows still to place takes goes next. Where none has one because two of them need an argument
    of the same name, the later given takes it under a name of its own (`_renamed_for_a_trigger`)."""
    default = next((w for w in workflows if w.name == DEFAULT_WORKFLOW), workflows[0])
    remaining, placed = [*(w for w in workflows if w is not default), default], []

    def others(workflow: Workflow) -> set[str]:
        return set().union(*({p.name for p in o.plan.call_arguments} for o in remaining if o is not workflow))

    while len(remaining) > 1:
        for workflow in remaining[:-1]:
            trigger = _trigger(workflow, others(workflow))
            if trigger is not None:
                placed.append(dataclasses.replace(workflow, trigger=trigger))
                remaining.remove(workflow)
                break
        else:
            renamed = _renamed_for_a_trigger(remaining, [*placed, *remaining])
            if renamed is not None:
                remaining = [renamed if w.name == renamed.name else w for w in remaining]
                continue
            optional = [
                f"`{w.plan.class_name}` handles {_listed(names)} missing"
                for w in remaining[:-1]
                if (names := _candidates(w, others(w)))
            ]
            raise _refusal(
                remaining[0].plan,
                f"no call can select one of {_listed(w.plan.class_name for w in remaining)} by its inputs: each takes "
                "every argument defaulting to None that another of them takes"
                + (f", but for ones its calls may leave out ({'; '.join(optional)})" if optional else ""),
            )
    return (*placed, remaining[0])


def _renamed_for_a_trigger(remaining: list[Workflow], every: list[Workflow]) -> Workflow | None:
    """The last given of the workflows still to place (the default aside) that needs an argument another of them
    takes too, with that argument renamed `<workflow>_<argument>`; None when there is none to rename.

        img2img: image (init image), controlnet: image (control image), base: no image
        -> controlnet with `controlnet_image`: then `image` selects img2img, `controlnet_image` ControlNet

    An argument the default workflow takes is not renamed: a call meant for the default gives it too. Neither is
    one the workflow can do without (`_handled_when_missing`), nor one the guider reads by its name."""
    *choices, default = remaining
    defaults = {p.name for p in default.plan.call_arguments}
    taken = set().union(*(names_taken(w.plan) for w in every))
    for workflow in reversed(choices):
        shared = set().union(*({p.name for p in o.plan.call_arguments} for o in choices if o is not workflow))
        for param in workflow.plan.call_arguments:
            name, new = param.name, f"{workflow.name}_{param.name}"
            if (
                name in shared
                and name not in defaults
                and param.default in (None, "None")
                and not name.startswith("_")
                and new not in taken
                and renamable(workflow.plan, name)
                and not _handled_when_missing(workflow.plan, name)
            ):
                plan = with_renamed_argument(workflow.plan, name, new)
                return dataclasses.replace(workflow, plan=plan, renamed=(*workflow.renamed, (name, new)))
    return None


def _trigger(workflow: Workflow, others: set[str]) -> str | None:
    """The first argument of the workflow's own that defaults to None (or to nothing) and that its code does not
    handle being None: given by a call that uses what the workflow is for, never by a call meant for the others.

        image=None; ...; image = self.image_processor.preprocess(image)         -> a trigger
        denoising_start=None; ...; add_noise = True if denoising_start is None   -> not: a call may leave it out
    """
    plan = workflow.plan
    return next((name for name in _candidates(workflow, others) if not _handled_when_missing(plan, name)), None)


def _candidates(workflow: Workflow, others: set[str]) -> list[str]:
    """The workflow's own arguments (none of `others`) that its blocks take and that default to None or to nothing,
    in signature order: an argument the blocks do not take (a deprecated `callback` the package drops) reaches
    no block, so no block could be selected by it."""
    taken = set(workflow.plan.block_arguments)
    return [
        p.name
        for p in workflow.plan.call_arguments
        if p.name not in others and p.name in taken and p.default in (None, "None") and not p.name.startswith("_")
    ]


def _handled_when_missing(plan: PipelinePlan, name: str) -> bool:
    """Whether the workflow's code runs without `name`: tests it other than to refuse the call (`if x is None:
    raise`), in its blocks or in when it guides (`do_true_cfg = true_cfg_scale > 1 and negative_prompt is not
    None`, now the guider's). Then a call meant for it may leave it out.

        if denoising_start is None: ...      prompt_2 = prompt_2 or prompt      x if image else y      -> handled
        if image is None: raise ValueError(...)                                                       -> not
    """
    if plan.guidance.condition and _missing_tests(cst.parse_expression(plan.guidance.condition), name):
        return True
    if any(_replaced(block, name) for block in _blocks_and_parts(plan)):
        return True
    helpers = {helper.name: helper.function for helper in helpers_of(plan)}
    return _handled_in(list(nodes_of(plan.blocks)), name, helpers)


def _replaced(block: BlockPlan | LoopPlan | LoopStepPlan, name: str) -> bool:
    """Whether a block taking `name` from the call computes it from another argument when that one is given:
    then a call may give the other instead (`if last_image is not None: last_image_latents = encode(last_image)`).
    `image = preprocess(image)` uses what the call gave."""
    if not any(p.name == name and p.producer is None for p in block.inputs):
        return False
    statements = block.wrapper_body if isinstance(block, LoopPlan) else block.body
    for statement in statements:
        for branch in findall(statement, m.If()):
            given = [
                term for term in _operands(branch.test) if m.matches(term, _given(m.MatchIfTrue(str.isidentifier)))
            ]
            if not any(_given_name(term) != name for term in given):
                continue
            for assign in findall(branch.body, m.Assign()):
                targets = {n.value for target in assign.targets for n in walk(target.target) if type(n) is cst.Name}
                if name in targets and name not in names_in(assign.value):
                    return True
    return False


def _given_name(test: cst.BaseExpression) -> str:
    """The argument a given-test (`x is not None`, `x`) tests."""
    return test.left.value if isinstance(test, cst.Comparison) else test.value


def _blocks_and_parts(plan: PipelinePlan) -> list[BlockPlan | LoopPlan | LoopStepPlan]:
    parts: list[BlockPlan | LoopPlan | LoopStepPlan] = []
    for block in plan.blocks:
        parts.append(block)
        if isinstance(block, LoopPlan):
            parts += block.steps
    return parts


def _handled_in(roots: list[cst.CSTNode], name: str, helpers: dict[str, cst.FunctionDef] | None = None) -> bool:
    """`_handled_when_missing` over `roots`; with `helpers`, also where a call hands `name` to a helper that
    handles its parameter missing (`self.encode_prompt(components, prompt_2=negative_prompt_2)`, whose
    `prompt_2 = prompt_2 or prompt` does without it)."""
    tests = refusing = 0
    for root in roots:
        tests += len(_missing_tests(root, name))
        for branch in findall(root, m.If()):
            if all(matches(s, m.SimpleStatementLine(body=[m.Raise()])) for s in branch.body.body):
                if any(matches(term, _given(name)) for term in _alternatives(branch.test)):
                    return True  # refused whenever given (`if x is not None or ...: raise`, not served here)
                refusing += len(_missing_tests(branch.test, name))  # `if x is None: raise`: required
        for function, parameter in _handed_to(root, name, helpers or {}):
            if parameter != name and _handled_in([function.body], parameter):
                return True
    return tests > refusing


def _handed_to(root: cst.CSTNode, name: str, helpers: dict[str, cst.FunctionDef]) -> list[tuple[cst.FunctionDef, str]]:
    """(helper, its parameter) for each call below `root` of a helper (`self.<helper>(components, ...)`) that
    passes `name` as that parameter, by keyword or by position."""
    found = []
    for call in findall(root, m.Call(func=m.Attribute(value=m.Name("self")))):
        function = helpers.get(call.func.attr.value)
        if function is None:
            continue
        parameters = [p.name.value for p in (*function.params.posonly_params, *function.params.params)]
        for position, argument in enumerate(call.args):
            if not matches(argument.value, m.Name(name)) or argument.star:
                continue
            if argument.keyword is not None:
                found.append((function, argument.keyword.value))
            elif position < len(parameters):
                found.append((function, parameters[position]))
    return found


def _given(name: str | m.MatchIfTrue) -> m.BaseMatcherNode:
    """`x is not None`, `x != None`, `x`: true when the argument was given."""
    named = m.Name(name)
    return m.Comparison(named, [m.ComparisonTarget(m.IsNot() | m.NotEqual(), m.Name("None"))]) | named


def _alternatives(test: cst.BaseExpression) -> list[cst.BaseExpression]:
    """`a or b or c` -> [a, b, c]: each enough for the test to hold."""
    if isinstance(test, cst.BooleanOperation) and isinstance(test.operator, cst.Or):
        return [*_alternatives(test.left), *_alternatives(test.right)]
    return [test]


def _missing_tests(root: cst.CSTNode, name: str) -> list[cst.CSTNode]:
    """The places below `root` that ask whether `name` was given: compared with None, or taken for its truth
    (`x or default`, `not x`, `if x:`, `y if x else z`, `x and y` as a test)."""
    named = m.Name(name)
    compared = m.Comparison(named, [m.ComparisonTarget(m.Is() | m.IsNot() | m.Equal() | m.NotEqual(), m.Name("None"))])
    # (`x or default` tests `x`; `default or x` only falls back to it)
    truth = m.BooleanOperation(left=named) | m.UnaryOperation(m.Not(), named)
    found = findall(root, compared | truth)
    for branch in findall(root, m.If() | m.While() | m.IfExp()):
        found += [term for term in _operands(branch.test) if matches(term, named)]
    return found


def _operands(test: cst.BaseExpression) -> list[cst.BaseExpression]:
    """`a and (b or c)` -> [a, b, c]: what a test takes the truth of."""
    if isinstance(test, cst.BooleanOperation):
        return [*_operands(test.left), *_operands(test.right)]
    return [test]


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


def _listed(names: Iterable[str]) -> str:
    return ", ".join(f"`{n}`" for n in names)


def _refusal(plan: PipelinePlan, message: str) -> ConversionError:
    return ConversionError(
        message, plan.class_location, fix="convert these pipelines one by one, or leave this one out of the family"
    )
