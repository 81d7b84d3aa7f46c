"""The module-level definitions of a family's sources in one package: each distinct definition once, and a
definition the sources spell differently kept per variant, under a name of its own.

    pipeline_wan.py:      def basic_clean(text): if is_ftfy_available(): text = ftfy.fix_text(text) ...
                          def prompt_clean(text): return whitespace_clean(basic_clean(text))
    pipeline_wan_i2v.py:  def basic_clean(text): text = ftfy.fix_text(text) ...
                          def prompt_clean(text): return whitespace_clean(basic_clean(text))
    ->
    ModuleNames(definitions=(..., basic_clean, prompt_clean, basic_clean_i2v, prompt_clean_i2v),
                renamed={"i2v": {"basic_clean": "basic_clean_i2v", "prompt_clean": "prompt_clean_i2v"}},
                variants={"i2v": {"basic_clean": 1, "prompt_clean": 1, "whitespace_clean": 0, ...}, ...})

Two definitions of a name are the same when their code is (as Python: a `# Copied from` comment aside) and so is
everything of the module they read (`prompt_clean` above differs through `basic_clean`); imports when they import
the same thing (a package re-exporting its submodule's name counts: Python's convention for `__init__`). The
variant a block reads is part of what makes two blocks the same (`planning.family`): a block calling
`prompt_clean` is one block for the workflows reading one `prompt_clean`.
"""

from __future__ import annotations

import ast
import dataclasses
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import libcst as cst

from ..cst.substitute import substitute_names
from ..cst.tree_walk import names_in
from ..errors import ConversionError
from ..frontend.parse import code
from ..kinds import DefinitionKind
from .plan import ModuleDefinition, PipelinePlan


@dataclass(frozen=True)
class ModuleNames:
    definitions: tuple[ModuleDefinition, ...]  # what the package's modules may copy or import, each name once
    # workflow -> {a name of its source's module -> the name its variant has in the package}, where they differ
    renamed: Mapping[str, Mapping[str, str]]
    # workflow -> {name -> which variant of it the workflow's source defines (0: the first workflow's)}
    variants: Mapping[str, Mapping[str, int]]


def module_names(plans: Mapping[str, PipelinePlan], read: set[str]) -> ModuleNames:
    """`plans`: each workflow's plan, in the family's order; `read`: the names the workflows' code may read."""
    by_name = {
        workflow: {name: d for d in plan.module_definitions for name in d.names} for workflow, plan in plans.items()
    }
    representatives: dict[str, list[tuple[str, ModuleDefinition]]] = {}
    variants: dict[str, dict[str, int]] = {workflow: {} for workflow in plans}

    def variant(workflow: str, name: str, visiting: frozenset[str] = frozenset()) -> int:
        known = variants[workflow].get(name)
        if known is not None:
            return known
        definition = by_name[workflow][name]
        found = representatives.setdefault(name, [])
        for index, (other, representative) in enumerate(found):
            if _same_definition(representative, definition) and all(
                n in by_name[workflow]
                and n in by_name[other]
                and variant(other, n, visiting | {name}) == variant(workflow, n, visiting | {name})
                for n in _module_names_read(definition, by_name[workflow], by_name[other])
                if n not in visiting
            ):
                variants[workflow][name] = index
                return index
        found.append((workflow, definition))
        variants[workflow][name] = len(found) - 1
        return len(found) - 1

    for workflow in plans:
        for name in by_name[workflow]:
            variant(workflow, name)
    taken = {name for table in by_name.values() for name in table}
    renamed: dict[str, dict[str, str]] = {workflow: {} for workflow in plans}
    for name, found in representatives.items():
        if len(found) < 2 or name not in read:
            continue
        for index, (first, _) in enumerate(found[1:], start=1):
            new = _free_name(f"{name}_{first}", taken)
            taken.add(new)
            for workflow in plans:
                if variants[workflow].get(name) == index:
                    renamed[workflow][name] = new
    definitions: list[ModuleDefinition] = []
    written: set[str] = set()
    for workflow, plan in plans.items():
        for definition in plan.module_definitions:
            names = tuple(renamed[workflow].get(n, n) for n in definition.names)
            if set(names) <= written:
                continue
            if set(names) & written:
                _refuse_tangled(plan, definition)
            definitions.append(_renamed_definition(definition, renamed[workflow], names, plan))
            written |= set(names)
    return ModuleNames(tuple(definitions), renamed, variants)


def _module_names_read(definition: ModuleDefinition, *tables: Mapping[str, ModuleDefinition]) -> list[str]:
    """The names of either module a definition reads (an import reads none)."""
    if definition.kind == DefinitionKind.IMPORT:
        return []
    return sorted(n for n in names_in(definition.node) if n not in definition.names and any(n in t for t in tables))


def _same_definition(a: ModuleDefinition, b: ModuleDefinition) -> bool:
    """The same import, or the same code (as Python: a `# Copied from` comment aside)."""
    if DefinitionKind.IMPORT in (a.kind, b.kind):
        return a.kind == b.kind and same_import(a.origin, b.origin)
    return _dumped(a.node) == _dumped(b.node)


def same_import(a: str, b: str) -> bool:
    """`module:Name` imports of one thing: the same, or one from a package re-exporting its submodule's
    (`diffusers.pipelines.stable_diffusion:X` and `diffusers.pipelines.stable_diffusion.pipeline_output:X`), as a
    package's `__init__` does by Python's convention."""
    (module_a, _, name_a), (module_b, _, name_b) = a.partition(":"), b.partition(":")
    if name_a != name_b:
        return False
    return module_a == module_b or module_b.startswith(module_a + ".") or module_a.startswith(module_b + ".")


def _dumped(node: cst.CSTNode) -> str:
    text = textwrap.dedent(code(node)).strip()
    try:
        return ast.dump(ast.parse(text))
    except SyntaxError:
        return text


def _free_name(name: str, taken: set[str]) -> str:
    candidate, number = name, 2
    while candidate in taken:
        candidate, number = f"{name}_{number}", number + 1
    return candidate


def _renamed_definition(
    definition: ModuleDefinition, renamed: Mapping[str, str], names: tuple[str, ...], plan: PipelinePlan
) -> ModuleDefinition:
    """The definition under the workflow's names for its variants (`def basic_clean_i2v(...)`, what it reads
    from the module renamed too); an import under a name of its own (`import X as X_i2v`)."""
    if not renamed or not (set(renamed) & (set(definition.names) | names_in(definition.node))):
        return definition
    if definition.kind == DefinitionKind.IMPORT:
        if isinstance(definition.node, cst.Import) and names != definition.names:
            _refuse_tangled(plan, definition)
        return dataclasses.replace(definition, names=names)
    node = definition.node
    if isinstance(node, (cst.FunctionDef, cst.ClassDef)) and node.name.value in renamed:
        node = node.with_changes(name=cst.Name(renamed[node.name.value]))
    node = substitute_names(node, {old: cst.Name(new) for old, new in renamed.items()}, rename_targets=True)
    return dataclasses.replace(definition, node=node, names=names)


def _refuse_tangled(plan: PipelinePlan, definition: ModuleDefinition) -> None:
    raise ConversionError(
        f"`{', '.join(definition.names)}` of {definition.origin} is defined differently by the workflows' modules, "
        "together with other names: one package cannot hold each workflow's",
        plan.class_location,
        fix="convert these pipelines one by one",
    )


def nodes_of(value) -> Iterable[cst.CSTNode]:
    """Every LibCST node a plan value holds (a block's statements, its helpers, a loop's steps...)."""
    if isinstance(value, cst.CSTNode):
        yield value
    elif isinstance(value, tuple):
        for item in value:
            yield from nodes_of(item)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for field in dataclasses.fields(value):
            yield from nodes_of(getattr(value, field.name))


def names_read_by_blocks(plans: Sequence[PipelinePlan]) -> set[str]:
    """Every name spelled in the plans' blocks and pipeline classes, and in the module definitions those names
    reach: a superset of what the generated code reads from module level."""
    spelled: set[str] = set()
    for plan in plans:
        for node in (*nodes_of(plan.blocks), *nodes_of(plan.pipeline)):
            spelled |= names_in(node)
    definitions = [d for p in plans for d in p.module_definitions if d.kind != DefinitionKind.IMPORT]
    grown = True
    while grown:
        grown = False
        for definition in definitions:
            if spelled & set(definition.names) and not names_in(definition.node) <= spelled:
                spelled |= names_in(definition.node)
                grown = True
    return spelled
