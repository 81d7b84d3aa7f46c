"""A model family: several standard pipelines (text-to-image, image-to-image, inpainting, ...) as the workflows of
one package. This module decides, from their plans alone, how the workflows are told apart and which of their
code is the same.

    family_plan([plan_of(StableDiffusionPipeline), plan_of(StableDiffusionImg2ImgPipeline),
                 plan_of(StableDiffusionInpaintPipeline)])
    ->
    FamilyPlan(prefix="StableDiffusion",
               workflows=(Workflow("inpaint", trigger="mask_image", ...),    # the first whose trigger is given runs
                          Workflow("img2img", trigger="image", ...),
                          Workflow("base", trigger=None, ...)),              # none given: the default
               blocks=(FamilyBlock("prepare_extra_step_kwargs", (("inpaint", "img2img", "base"),), ...),
                       FamilyBlock("denoise", (("inpaint",), ("img2img",), ("base",)), ...), ...),
               helpers=(FamilyHelper("encode_prompt", (("inpaint", "img2img", "base"),), ...), ...))

**Telling workflows apart.** diffusers' modular packages select a workflow by the inputs a call gives
(`AutoPipelineBlocks`: the first block whose trigger input is not None runs). Here the workflows are ordered by how
placed one at a time, each one but the last with a trigger: the first argument of its own (in signature order)
that no workflow placed after it takes and that defaults to None, so that a call meant for a later workflow cannot
give it, and one meant for this workflow gives it when it uses what the workflow is for (an argument with another
default, `strength=0.8`, is left out: a call may rely on the default). The last workflow runs when no trigger is
given.

**The same code.** A block is the same in two workflows when their plans agree on everything that decides the
generated code: statements and helpers compared as Python ASTs (comments, layout and parentheses aside), with the
workflows' own generated class names (`StableDiffusionImg2ImgEncodeInputPromptStep`) taken as the block they
name; inputs by name and default (type hints and descriptions only document), outputs, components and config
values. What is merely how something is named or where it came from (stage labels, source lines, a helper's
`# Copied from` origin) does not count. Blocks are compared at the same key only, and never merged by how close
they are: two blocks differing in one statement are two blocks. Helpers (`encode_prompt`, ...) are compared the
same way by name, across blocks: a block that differs in its statements often calls the same helper.
"""

from __future__ import annotations

import ast
import dataclasses
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import libcst as cst
import libcst.matchers as m

from ..cst.substitute import substitute_names
from ..cst.tree_walk import findall, names_in, walk
from ..errors import ConversionError
from ..frontend.parse import code, snippet
from .family_modules import module_names, names_read_by_blocks, nodes_of
from .naming import Naming, words_of
from .plan import BlockPlan, Component, Helper, LoopPlan, ModuleDefinition, Param, PipelinePlan

# Fields that say how something is named, described or where it came from, not what the generated code does
_NAMING_FIELDS = frozenset(
    {"class_name", "wrapper_class_name", "label", "lines", "description", "producer", "type_hint", "origin"}
)
DEFAULT_WORKFLOW = "base"


@dataclass(frozen=True)
class Workflow:
    name: str  # the class name without the family's prefix, in snake case ("img2img"); `base` when nothing is left
    trigger: str | None  # the `__call__` argument whose presence selects it; None for the default workflow
    plan: PipelinePlan


@dataclass(frozen=True)
class Difference:
    """Where a group first differs from the first group at the same key: a path into the plans (`body[2]`,
    `steps[denoiser].body[4]`, `inputs`) and the first line of Python there that differs, in each."""

    where: str
    first: str | None = None  # the line in the first group
    other: str | None = None  # the line in this group


@dataclass(frozen=True)
class FamilyBlock:
    """The blocks of the workflows at one key, grouped by their code: one group is one block of the package."""

    key: str
    groups: tuple[tuple[str, ...], ...]  # workflow names, one tuple per distinct code, in workflow order
    lines: tuple[int, ...]  # per group, the source lines its stage spans (of its first workflow)
    differences: tuple[Difference, ...] = ()  # per group after the first
    # per group, the prefix of its classes in the family's package: the family's for a shared block, the
    # workflow's own otherwise (`StableDiffusionImg2Img`; `StableDiffusionBase` where that is the family's)
    prefixes: tuple[str, ...] = ()
    # a denoising loop's parts (its wrapper, each of its steps), grouped the same way: a step two loops run alike
    # is one class of the package even where the loops differ in another step
    parts: tuple[FamilyBlock, ...] = ()

    @property
    def shared(self) -> bool:
        return len(self.groups) == 1 and len(self.groups[0]) > 1


@dataclass(frozen=True)
class FamilyHelper:
    """The helpers of one name (`encode_prompt`) over every block of every workflow, grouped by their code."""

    name: str
    groups: tuple[tuple[str, ...], ...]
    lines: tuple[int, ...]  # per group, the helper's lines
    differences: tuple[Difference, ...] = ()


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
        largest = max(_lines_of_workflow(w.plan) for w in self.workflows)
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
        for block in _family_blocks(workflows, modules.variants)
    )
    helpers = _family_helpers(workflows, modules.variants)
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
    own = _own_class_names(plan)
    function = next(h.function for h in _helpers_of(plan) if h.name == name)
    through = findall(function, m.Attribute(value=m.Name()))
    called = {a.attr.value for a in through if isinstance(a.value, cst.Name) and a.value.value in own}
    named = sum(1 for found in walk(function) if isinstance(found, cst.Name) and found.value in own)
    return called if named == len([a for a in through if a.value.value in own]) else None


def _with_prefixes(block: FamilyBlock, workflows: Sequence[Workflow], prefix: str) -> FamilyBlock:
    """The prefix of each group's classes: `StableDiffusion` + `EncodeInputPromptStep` for a shared block, the
    workflow's own for one of its own, `StableDiffusion` + `Base` for the family's namesake when a shared block
    at the same key already takes the family's prefix."""
    own = {w.name: w.plan.prefix for w in workflows}
    chosen = [prefix if len(group) > 1 else own[group[0]] for group in block.groups]
    for index, group in enumerate(block.groups):
        if chosen.count(chosen[index]) > 1 and len(group) == 1:
            chosen[index] = prefix + "".join(word.capitalize() for word in group[0].split("_"))
    return dataclasses.replace(block, prefixes=tuple(chosen))


def _ordered_with_triggers(workflows: list[Workflow]) -> tuple[Workflow, ...]:
    """The default first: the workflow named like the family (`StableDiffusionPipeline` of `StableDiffusion`), or
    else the first given. Then the others placed one at a time: the first (in the given order) with a trigger that
    none of the workflows still to place takes goes next."""
    arguments = {w.name: {p.name for p in w.plan.call_arguments} for w in workflows}
    default = next((w for w in workflows if w.name == DEFAULT_WORKFLOW), workflows[0])
    remaining, placed = [*(w for w in workflows if w is not default), default], []
    while len(remaining) > 1:
        for workflow in remaining[:-1]:
            others = set().union(*(arguments[o.name] for o in remaining if o is not workflow))
            trigger = _trigger(workflow, others)
            if trigger is not None:
                placed.append(dataclasses.replace(workflow, trigger=trigger))
                remaining.remove(workflow)
                break
        else:
            raise _refusal(
                remaining[0].plan,
                f"each of {_listed(w.plan.class_name for w in remaining)} takes every argument defaulting to None "
                "that another of them takes: no call can select one of them by its inputs",
            )
    return (*placed, remaining[0])


def _trigger(workflow: Workflow, others: set[str]) -> str | None:
    """The first argument of the workflow's own that defaults to None (or to nothing): given by a call that uses
    what it is for, never by a call meant for the others."""
    for param in workflow.plan.call_arguments:
        if param.name not in others and param.default in (None, "None") and not param.name.startswith("_"):
            return param.name
    return None


@dataclass(frozen=True)
class _Member:
    """One workflow's block (or helper) at a key, with what is needed to group and report it."""

    workflow: str
    value: BlockPlan | LoopPlan | Helper
    fingerprint: object
    own: dict[str, str]
    lines: int


def _family_blocks(
    workflows: Sequence[Workflow], variants: Mapping[str, Mapping[str, int]]
) -> tuple[FamilyBlock, ...]:
    keys: dict[str, list[_Member]] = {}
    for workflow in workflows:
        own = _own_class_names(workflow.plan)
        for block in workflow.plan.blocks:
            lines = block.lines[1] - block.lines[0] + 1 if block.lines[0] else 0
            context = _context_fingerprint(workflow.plan, block, own)
            fingerprint = (_fingerprint(block, own), context, _module_variants(block, variants[workflow.name]))
            keys.setdefault(block.key, []).append(_Member(workflow.name, block, fingerprint, own, lines))
    return tuple(
        FamilyBlock(key, *_grouped(members), parts=_loop_parts(members, workflows, variants))
        for key, members in keys.items()
    )


WRAPPER = "wrapper"  # the name of a loop's wrapper among its parts


def _loop_parts(
    members: list[_Member], workflows: Sequence[Workflow], variants: Mapping[str, Mapping[str, int]]
) -> tuple[FamilyBlock, ...]:
    """A denoising loop's wrapper and steps, each grouped by its code: the wrapper by everything of the loop but
    its steps, a step by its own plan and the loop header it is called with; both with the guidance and the
    components they declare."""
    loops = [m for m in members if isinstance(m.value, LoopPlan)]
    if not loops:
        return ()
    plans = {w.name: w.plan for w in workflows}
    parts: dict[str, list[_Member]] = {}
    for member in loops:
        loop, plan = member.value, plans[member.workflow]
        context = _context_fingerprint(plan, loop, member.own)
        alone = dataclasses.replace(loop, steps=())
        reads = _module_variants(loop, variants[member.workflow])
        wrapper = dataclasses.replace(
            member, value=alone, fingerprint=(_fingerprint(alone, member.own), context, reads)
        )
        parts.setdefault(WRAPPER, []).append(wrapper)
        for step in loop.steps:
            if not step.body:
                continue  # (a step with nothing to do is not written)
            fingerprint = (_fingerprint(step, member.own), loop.loop_targets, context, reads)
            lines = step.lines[1] - step.lines[0] + 1 if step.lines[0] else 0
            stepped = _Member(member.workflow, step, fingerprint, member.own, lines)
            parts.setdefault(step.key, []).append(stepped)
    return tuple(FamilyBlock(name, *_grouped(found)) for name, found in parts.items())


def _module_variants(value, variants: Mapping[str, int]) -> tuple[tuple[str, int], ...]:
    """Which variant of each module-level name a block (or helper) reads: two blocks calling differently defined
    `prompt_clean`s are two blocks."""
    spelled = set().union(*(names_in(node) for node in nodes_of(value)))
    return tuple(sorted((name, variants[name]) for name in spelled if name in variants))


def _family_helpers(
    workflows: Sequence[Workflow], variants: Mapping[str, Mapping[str, int]]
) -> tuple[FamilyHelper, ...]:
    names: dict[str, list[_Member]] = {}
    for workflow in workflows:
        own = _own_class_names(workflow.plan)
        seen: set[str] = set()
        for helper in _helpers_of(workflow.plan):
            if helper.name in seen:
                continue
            seen.add(helper.name)
            lines = len(code(helper.function).strip().splitlines())
            fingerprint = (_fingerprint(helper, own), _module_variants(helper, variants[workflow.name]))
            member = _Member(workflow.name, helper, fingerprint, own, lines)
            names.setdefault(helper.name, []).append(member)
    return tuple(FamilyHelper(name, *_grouped(members)) for name, members in sorted(names.items()))


def _grouped(
    members: list[_Member],
) -> tuple[tuple[tuple[str, ...], ...], tuple[int, ...], tuple[Difference, ...]]:
    groups: dict[object, list[_Member]] = {}
    for member in members:
        groups.setdefault(member.fingerprint, []).append(member)
    firsts = [group[0] for group in groups.values()]
    return (
        tuple(tuple(m.workflow for m in group) for group in groups.values()),
        tuple(first.lines for first in firsts),
        tuple(_first_difference(firsts[0], other) for other in firsts[1:]),
    )


def _first_difference(a: _Member, b: _Member) -> Difference:
    path, left, right = _difference(a.value, b.value, a.own, b.own)
    where = "".join(part if part.startswith(("[", " ")) else f".{part}" for part in path).lstrip(".")
    if not where:
        # the same code, reading module-level definitions the sources define differently
        return Difference("the module-level definitions it reads")
    if left is None or right is None:
        return Difference(where)
    return Difference(where or "its code", *_around_the_difference(left, right))


def _difference(
    a: object, b: object, own_a: dict[str, str], own_b: dict[str, str]
) -> tuple[list[str], str | None, str | None]:
    if isinstance(a, cst.CSTNode) and isinstance(b, cst.CSTNode):
        return [], *_differing_lines(a, b, own_a, own_b)
    if dataclasses.is_dataclass(a) and type(a) is type(b):
        for field in dataclasses.fields(a):
            left, right = getattr(a, field.name), getattr(b, field.name)
            if field.name in _NAMING_FIELDS or _fingerprint(left, own_a) == _fingerprint(right, own_b):
                continue
            path, x, y = _difference(left, right, own_a, own_b)
            return [field.name, *path], x, y
    if isinstance(a, tuple) and isinstance(b, tuple):
        for index, (left, right) in enumerate(zip(a, b, strict=False)):
            if _fingerprint(left, own_a) != _fingerprint(right, own_b):
                path, x, y = _difference(left, right, own_a, own_b)
                label = getattr(left, "key", None) or getattr(left, "name", None) or index
                return [f"[{label}]", *path], x, y
        return [f" ({len(a)} items / {len(b)})"], None, None
    return [], None, None


def _differing_lines(a: cst.CSTNode, b: cst.CSTNode, own_a: dict[str, str], own_b: dict[str, str]):
    """The first line of each that differs, both written out by `ast.unparse` (one layout for both)."""
    left, right = _unparsed(a, own_a).splitlines(), _unparsed(b, own_b).splitlines()
    for x, y in zip(left, right, strict=False):
        if x != y:
            return x.strip(), y.strip()
    if len(left) != len(right):
        return f"{len(left)} lines", f"{len(right)} lines"
    return snippet(a), snippet(b)


def _unparsed(node: cst.CSTNode, own: dict[str, str]) -> str:
    text = textwrap.dedent(code(node)).strip()
    try:
        return ast.unparse(_OwnNames(own).visit(ast.parse(text)))
    except SyntaxError:
        return text


def _around_the_difference(left: str, right: str, before: int = 24, limit: int = 72) -> tuple[str, str]:
    """Both lines from a little before where they part, so a long line shows what differs."""
    same = 0
    while same < min(len(left), len(right)) and left[same] == right[same]:
        same += 1
    start = max(0, same - before)

    def cut(text: str) -> str:
        text = ("..." if start else "") + text[start:]
        return text if len(text) <= limit else text[: limit - 3] + "..."

    return cut(left), cut(right)


def _helpers_of(plan: PipelinePlan) -> Iterable[Helper]:
    for block in plan.blocks:
        yield from block.helpers
        if isinstance(block, LoopPlan):
            for step in block.steps:
                yield from step.helpers


def _lines_of_workflow(plan: PipelinePlan) -> int:
    blocks = sum(b.lines[1] - b.lines[0] + 1 for b in plan.blocks if b.lines[0])
    seen: dict[str, int] = {}
    for helper in _helpers_of(plan):
        seen.setdefault(helper.name, len(code(helper.function).strip().splitlines()))
    return blocks + sum(seen.values())


def _own_class_names(plan: PipelinePlan) -> dict[str, str]:
    """The classes the workflow's package defines, each as the block it stands for (`block:encode_input_prompt`):
    a helper calling `StableDiffusionImg2ImgEncodeInputPromptStep.encode_image` calls the same thing as one calling
    `StableDiffusionInpaintEncodeInputPromptStep.encode_image`."""
    own = {}
    for block in plan.blocks:
        own[block.class_name] = f"block:{block.key}"
        if isinstance(block, LoopPlan):
            own[block.wrapper_class_name] = f"wrapper:{block.key}"
            for step in block.steps:
                own[step.class_name] = f"step:{block.key}.{step.key}"
    return own


def _fingerprint(value: object, own: dict[str, str]) -> object:
    """What of a plan value decides the generated code, as nested tuples: code as an AST dump."""
    if isinstance(value, cst.CSTNode):
        return _code_fingerprint(value, own)
    if isinstance(value, Param):
        # where an input comes from is named in its description only; whether it is a call argument decides
        # whether a `None` given for it is kept (`ExplicitNoneInputs`)
        return ("Param", value.name, value.default, value.producer is None)
    if isinstance(value, Component):
        return ("Component", value.name, value.type_hint, value.optional)
    if dataclasses.is_dataclass(value):
        fields = (f.name for f in dataclasses.fields(value) if f.name not in _NAMING_FIELDS)
        return (type(value).__name__, *((name, _fingerprint(getattr(value, name), own)) for name in fields))
    if isinstance(value, (tuple, list)):
        return tuple(_fingerprint(item, own) for item in value)
    return value


def _context_fingerprint(plan: PipelinePlan, block: BlockPlan | LoopPlan, own: dict[str, str]) -> object:
    """What a block's generated code reads from the plan around it: the specs of the components it declares, and
    the guidance (the guider it declares, the fields the guider pairs, how the loop runs guider batches)."""
    components = {c.name: c for c in plan.components}
    used = set(block.components)
    if isinstance(block, LoopPlan):
        used |= {name for step in block.steps for name in step.components}
    specs = tuple(_fingerprint(components[name], own) for name in sorted(used) if name in components)
    guided = isinstance(block, LoopPlan) or getattr(block, "reads_guider", False)
    return specs, _fingerprint(plan.guidance, own) if guided else None


class _OwnNames(ast.NodeTransformer):
    def __init__(self, own: dict[str, str]):
        self.own = own

    def visit_Name(self, node: ast.Name) -> ast.Name:
        return ast.Name(self.own.get(node.id, node.id), node.ctx)


def _code_fingerprint(node: cst.CSTNode, own: dict[str, str]) -> str:
    text = textwrap.dedent(code(node)).strip()
    try:
        tree = ast.parse(text)
    except SyntaxError:  # a part of a statement (an argument, an `else:` clause): compared as text
        return text
    return ast.dump(_OwnNames(own).visit(tree))


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


def family_summary(family: FamilyPlan) -> dict:
    """What `modularize plan A B ... --json` prints: the workflows, how each block and helper is shared, and the
    lines the family carries against its largest workflow alone."""
    carried, largest = family.lines_written()
    views = {w.name: workflow_in_family(family, w) for w in family.workflows}

    def class_of(key: str, part: str | None, workflow: str) -> str:
        (block,) = [b for b in views[workflow].blocks if b.key == key]
        if part is None:
            return block.class_name
        if part == WRAPPER:
            return block.wrapper_class_name
        return next(step.class_name for step in block.steps if step.key == part)

    def grouped(item: FamilyBlock | FamilyHelper, key: str | None = None) -> dict:
        classes = {}
        if isinstance(item, FamilyBlock):
            block_key, part = (key, item.key) if key is not None else (item.key, None)
            classes = {"classes": {", ".join(group): class_of(block_key, part, group[0]) for group in item.groups}}
        return {
            "name": getattr(item, "key", None) or item.name,
            **classes,
            "shared": [list(g) for g in item.groups if len(g) > 1],
            "own": [g[0] for g in item.groups if len(g) == 1],
            "lines": list(item.lines),
            "differences": [
                {
                    "workflows": list(group),
                    "from": item.groups[0][0],
                    "where": difference.where,
                    "lines": [difference.first, difference.other] if difference.first is not None else [],
                }
                for group, difference in zip(item.groups[1:], item.differences, strict=True)
            ],
            **({"parts": [grouped(part, item.key) for part in item.parts]} if getattr(item, "parts", ()) else {}),
        }

    return {
        "prefix": family.prefix,
        "workflows": [
            {"name": w.name, "pipeline": w.plan.class_name, "source": w.plan.source_label, "trigger": w.trigger}
            for w in family.workflows
        ],
        "blocks": [grouped(b) for b in family.blocks],
        "helpers": [grouped(h) for h in family.helpers],
        "lines": {"family": carried, "largest_workflow": largest, "ratio": round(carried / max(largest, 1), 2)},
    }


def _classes(item: dict) -> str:
    """`StableDiffusionEncodeInputPromptStep` (one class), or each with its workflows."""
    classes = item["classes"]
    if len(classes) == 1:
        return next(iter(classes.values()))
    return ", ".join(f"{name} ({workflows})" for workflows, name in classes.items())


def _sharing(item: dict) -> str:
    groups = [*item["shared"], *([name] for name in item["own"])]
    if len(groups) == 1 and len(groups[0]) == 1:
        return f"only in {groups[0][0]}"
    parts = [f"shared by {', '.join(g)}" for g in item["shared"]]
    if item["own"]:
        parts.append(f"its own in {', '.join(item['own'])}")
    return "; ".join(parts)


def render_family_plan(family: FamilyPlan) -> str:
    summary = family_summary(family)
    lines = [
        f"family {family.prefix}: {len(family.workflows)} workflows",
        "",
        "workflows (the first whose trigger is given runs):",
    ]
    for w in summary["workflows"]:
        trigger = f"when `{w['trigger']}` is given" if w["trigger"] else "default"
        lines.append(f"  {w['name']}: {w['pipeline']} ({w['source']}), {trigger}")

    for title, items in (("blocks", summary["blocks"]), ("helpers", summary["helpers"])):
        lines += ["", f"{title} (compared as Python: comments, layout and names of generated classes aside):"]
        for item in items:
            lines.append(f"  {item['name']}: {_sharing(item)}")
            if "classes" in item:
                lines.append(f"      as {_classes(item)}")
            for part in item.get("parts", ()):
                lines.append(f"    - {part['name']}: {_sharing(part)}; as {_classes(part)}")
            for difference in item["differences"]:
                others = difference["workflows"]
                verb = "differs" if len(others) == 1 else "differ"
                lines.append(f"      {', '.join(others)} {verb} from {difference['from']} at {difference['where']}")
                if difference["lines"]:
                    first, other = difference["lines"]
                    lines.append(f"          {difference['from']}: {first}")
                    lines.append(f"          {others[0]}: {other}")
    counts = summary["lines"]
    lines += [
        "",
        f"source lines of blocks and helpers, each distinct one once: {counts['family']}, against "
        f"{counts['largest_workflow']} for the largest workflow alone (x{counts['ratio']})",
    ]
    return "\n".join(lines) + "\n"


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
        function = next(h.function for h in _helpers_of(plan) if h.name == name)
        names = dict.fromkeys(_own_class_names(plan), cst.Name(family.helpers_class_name))
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
