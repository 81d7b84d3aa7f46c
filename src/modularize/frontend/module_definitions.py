"""Module-level definitions of the source that generated files may need: imports, functions, constants.

Each import alias is its own definition (resolved to an absolute module), so a generated file imports exactly the
names it uses; functions and other statements are copied whole, with their own dependencies.
"""

from __future__ import annotations

import libcst as cst

from ..cst.dataflow import flow_of
from ..kinds import DefinitionKind
from ..planning.plan import ModuleDefinition
from ..transforms.imports import absolute_module, with_absolute_imports
from .class_facts import ClassFacts
from .parse import SourceModule, code


def module_definitions(source: SourceModule, facts: ClassFacts) -> tuple[ModuleDefinition, ...]:
    definitions = []
    origin_module = source.module_name or source.label
    for statement in source.tree.body:
        if statement is facts.node:
            continue
        if isinstance(statement, cst.SimpleStatementLine) and isinstance(
            statement.body[0], (cst.Import, cst.ImportFrom)
        ):
            definitions.extend(_import_definitions(source, statement.body[0]))
            continue
        if isinstance(statement, (cst.FunctionDef, cst.ClassDef)):
            kind = DefinitionKind.FUNCTION if isinstance(statement, cst.FunctionDef) else DefinitionKind.CLASS
            name = statement.name.value
            definitions.append(ModuleDefinition((name,), statement, kind, f"{origin_module}.{name}"))
            continue
        names = tuple(flow_of([statement]).writes)
        if names:
            copied = with_absolute_imports(statement, source)
            definitions.append(ModuleDefinition(names, copied, DefinitionKind.STATEMENT, origin_module))
    return tuple(definitions)


def _import_definitions(source: SourceModule, node: cst.Import | cst.ImportFrom) -> list[ModuleDefinition]:
    result = []
    if isinstance(node, cst.ImportFrom):
        if isinstance(node.names, cst.ImportStar):
            return []
        module = absolute_module(node, source)
        for alias in node.names:
            name = code(alias.name).strip()
            bound = alias.asname.name.value if alias.asname else name
            result.append(ModuleDefinition((bound,), node, DefinitionKind.IMPORT, f"{module}:{name}"))
        return result
    for alias in node.names:
        name = code(alias.name).strip()
        bound = alias.asname.name.value if alias.asname else name.split(".")[0]
        result.append(ModuleDefinition((bound,), node, DefinitionKind.IMPORT, f"{name}"))
    return result
