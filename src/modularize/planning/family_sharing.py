"""Which code of a family's workflows is the same: their blocks (a denoising loop's wrapper and steps one by one)
and helpers, grouped by what decides their generated code, with where each group first differs from the first.

    family_blocks(workflows, variants)
    -> (FamilyBlock("encode_input_prompt", groups=(("inpaint", "img2img"), ("base",)),
                    differences=(Difference("body[0]", "text_encoder_lora_scale = ...", "lora_scale = ..."),)),
        FamilyBlock("denoise", groups=(("inpaint",), ("img2img",), ("base",)),
                    parts=(FamilyBlock("denoiser", groups=(("inpaint", "img2img"), ("base",))), ...)), ...)

A block is the same in two workflows when their plans agree on everything that decides the generated code:
statements and helpers compared as Python ASTs (comments, layout and parentheses aside), with the workflows' own
generated class names (`StableDiffusionImg2ImgEncodeInputPromptStep`) taken as the block they name; inputs by name,
default and whether they are call arguments (type hints and descriptions only document); outputs, components (with
their spec types), config values, the guidance a block declares, and the variants of the module-level definitions
it reads (`planning.family_modules`). How something is named or where it came from (stage labels, source lines, a
helper's `# Copied from` origin) does not count. Blocks are compared at the same key only, and never merged by how
close they are: two blocks differing in one statement are two blocks. Helpers (`encode_prompt`, ...) are compared
the same way by name, across blocks: blocks that differ in their statements often call the same helper.
"""

from __future__ import annotations

import ast
import dataclasses
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import libcst as cst
import libcst.matchers as m

from ..cst.tree_walk import findall, names_in
from ..frontend.parse import code, snippet
from .family_modules import nodes_of
from .plan import BlockPlan, Component, Helper, LoopPlan, Param, PipelinePlan

# Fields that say how something is named, described or where it came from, not what the generated code does
_NAMING_FIELDS = frozenset(
    {"class_name", "wrapper_class_name", "label", "lines", "description", "producer", "type_hint", "origin"}
)


@dataclass(frozen=True)
class Workflow:
    name: str  # the class name without the family's prefix, in snake case ("img2img"); `base` when nothing is left
    trigger: str | None  # the `__call__` argument whose presence selects it; None for the default workflow
    plan: PipelinePlan  # its plan in the family: with its arguments as `renamed` names them
    # (standard argument, the family's name for it): an argument another workflow needs under the same name
    # (`("image", "controlnet_image")`, `planning.family_rename`)
    renamed: tuple[tuple[str, str], ...] = ()


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
class _Member:
    """One workflow's block (or helper) at a key, with what is needed to group and report it."""

    workflow: str
    value: BlockPlan | LoopPlan | Helper
    fingerprint: object
    own: dict[str, str]
    lines: int


def family_blocks(workflows: Sequence[Workflow], variants: Mapping[str, Mapping[str, int]]) -> tuple[FamilyBlock, ...]:
    keys: dict[str, list[_Member]] = {}
    for workflow in workflows:
        plan, own = workflow.plan, own_class_names(workflow.plan)
        for block in plan.blocks:
            lines = block.lines[1] - block.lines[0] + 1 if block.lines[0] else 0
            components = set(block.components)
            if isinstance(block, LoopPlan):
                components |= {name for step in block.steps for name in step.components}
            guided = isinstance(block, LoopPlan) or getattr(block, "reads_guider", False)
            context = _context(plan, components, guided, own)
            fingerprint = _aspects_of(block, _fingerprint(block, own), context, plan, variants[workflow.name])
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
    its steps, a step by its own plan and the loop header it is called with; both with the guidance (every step
    declares what the guider pairs; the denoiser declares the guider) and the components they declare."""
    plans = {w.name: w.plan for w in workflows}
    parts: dict[str, list[_Member]] = {}
    for member in (each for each in members if isinstance(each.value, LoopPlan)):
        loop, plan, read = member.value, plans[member.workflow], variants[member.workflow]
        alone = dataclasses.replace(loop, steps=())
        context = _context(plan, loop.components, True, member.own)
        fingerprint = _aspects_of(alone, _fingerprint(alone, member.own), context, plan, read)
        parts.setdefault(WRAPPER, []).append(dataclasses.replace(member, value=alone, fingerprint=fingerprint))
        for step in loop.steps:
            if not step.body:
                continue  # (a step with nothing to do is not written)
            context = _context(plan, step.components, True, member.own)
            code_fingerprint = (_fingerprint(step, member.own), loop.loop_targets)
            lines = step.lines[1] - step.lines[0] + 1 if step.lines[0] else 0
            fingerprint = _aspects_of(step, code_fingerprint, context, plan, read)
            parts.setdefault(step.key, []).append(_Member(member.workflow, step, fingerprint, member.own, lines))
    return tuple(FamilyBlock(name, *_grouped(found)) for name, found in parts.items())


def _module_variants(value, variants: Mapping[str, int]) -> tuple[tuple[str, int], ...]:
    """Which variant of each module-level name a block (or helper) reads: two blocks calling differently defined
    `prompt_clean`s are two blocks."""
    spelled = set().union(*(names_in(node) for node in nodes_of(value)))
    return tuple(sorted((name, variants[name]) for name in spelled if name in variants))


def family_helpers(
    workflows: Sequence[Workflow], variants: Mapping[str, Mapping[str, int]]
) -> tuple[FamilyHelper, ...]:
    names: dict[str, list[_Member]] = {}
    for workflow in workflows:
        own = own_class_names(workflow.plan)
        seen: set[str] = set()
        for helper in helpers_of(workflow.plan):
            if helper.name in seen:
                continue
            seen.add(helper.name)
            lines = len(code(helper.function).strip().splitlines())
            fingerprint = _aspects(_fingerprint(helper, own), None, _module_variants(helper, variants[workflow.name]))
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


_CODE = "its code"


def _aspects(
    code_fingerprint: object, context: object, module_variants: object, pipeline_reads: object = None
) -> tuple[tuple[str, object], ...]:
    """A member's fingerprint, each part named by what it is, so that a difference says which part differs."""
    return (
        (_CODE, code_fingerprint),
        ("the components and guidance it declares", context),
        ("the module-level definitions it reads", module_variants),
        ("what it reads of its pipeline (a derived attribute the pipelines define differently)", pipeline_reads),
    )


def _aspects_of(
    value, code_fingerprint: object, context: object, plan: PipelinePlan, variants: Mapping[str, int]
) -> tuple[tuple[str, object], ...]:
    """A block's (or loop part's) fingerprint: its code, what it declares, and what it reads of its module and of
    its pipeline."""
    reads = _pipeline_reads(value, _pipeline_members(plan))
    return _aspects(code_fingerprint, context, _module_variants(value, variants), reads)


def _pipeline_members(plan: PipelinePlan) -> dict[str, str]:
    """What the workflow's pipeline class defines (derived attributes, class attributes), each as its code."""
    found = {prop.name.value: code_fingerprint(prop, {}) for prop in plan.pipeline.properties}
    for statement in plan.pipeline.class_attributes:
        for assign in findall(statement, m.AssignTarget(target=m.Name())):
            found[assign.target.value] = code_fingerprint(statement, {})
    return found


def _pipeline_reads(value, members: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The members of its pipeline a block reads (`components.image_processor`), with their code: a block reading
    a derived attribute two workflows' pipelines define differently runs differently alone (its pipeline is then
    one workflow's), so it is not one block for both."""
    read = {
        attribute.attr.value
        for node in nodes_of(value)
        for attribute in findall(node, m.Attribute(value=m.Name("components"), attr=m.Name()))
    }
    return tuple(sorted((name, members[name]) for name in read if name in members))


def _first_difference(a: _Member, b: _Member) -> Difference:
    differing = next(label for (label, x), (_, y) in zip(a.fingerprint, b.fingerprint, strict=True) if x != y)
    if differing != _CODE:
        return Difference(differing)
    path, left, right = _difference(a.value, b.value, a.own, b.own)
    where = "".join(part if part.startswith(("[", " ")) else f".{part}" for part in path).lstrip(".")
    if left is None or right is None:
        return Difference(where or "the loop header it runs in")
    return Difference(where or _CODE, *_around_the_difference(left, right))


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


def helpers_of(plan: PipelinePlan) -> Iterable[Helper]:
    for part in plan.block_parts:
        yield from part.helpers


def lines_of_workflow(plan: PipelinePlan) -> int:
    blocks = sum(b.lines[1] - b.lines[0] + 1 for b in plan.blocks if b.lines[0])
    seen: dict[str, int] = {}
    for helper in helpers_of(plan):
        seen.setdefault(helper.name, len(code(helper.function).strip().splitlines()))
    return blocks + sum(seen.values())


def own_class_names(plan: PipelinePlan) -> dict[str, str]:
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
        return code_fingerprint(value, own)
    if isinstance(value, Param):
        # where an input comes from is named in its description only; whether it is a call argument decides
        # whether a `None` given for it is kept (`ExplicitNoneInputs`); the local it is bound to is code
        return ("Param", value.name, value.default, value.producer is None, value.local)
    if isinstance(value, Component):
        return ("Component", value.name, value.type_hint, value.optional)
    if dataclasses.is_dataclass(value):
        fields = (f.name for f in dataclasses.fields(value) if f.name not in _NAMING_FIELDS)
        return (type(value).__name__, *((name, _fingerprint(getattr(value, name), own)) for name in fields))
    if isinstance(value, (tuple, list)):
        return tuple(_fingerprint(item, own) for item in value)
    return value


def _context(plan: PipelinePlan, components: Iterable[str], guided: bool, own: dict[str, str]) -> object:
    """What generated code reads from the plan around it: the specs of the components it declares, and, where it
    declares the guider or what the guider pairs, the guidance (the guider, the fields it pairs, how the loop runs
    guider batches)."""
    by_name = {c.name: c for c in plan.components}
    specs = tuple(_fingerprint(by_name[name], own) for name in sorted(components) if name in by_name)
    return specs, _fingerprint(plan.guidance, own) if guided else None


class _OwnNames(ast.NodeTransformer):
    def __init__(self, own: dict[str, str]):
        self.own = own

    def visit_Name(self, node: ast.Name) -> ast.Name:
        return ast.Name(self.own.get(node.id, node.id), node.ctx)


def code_fingerprint(node: cst.CSTNode, own: dict[str, str]) -> str:
    """A node's code as workflows compare it: its Python AST (comments, layout, parentheses aside), with the
    workflow's own generated class names (`own_class_names`) as the blocks they stand for."""
    text = textwrap.dedent(code(node)).strip()
    try:
        tree = ast.parse(text)
    except SyntaxError:  # a part of a statement (an argument, an `else:` clause): compared as text
        return text
    return ast.dump(_OwnNames(own).visit(tree))
