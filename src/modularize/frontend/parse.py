"""Parse pass: source text -> `SourceModule` (LibCST tree, positions, the pipeline class).

Nothing of the input is imported or executed: a pipeline module is only ever read as text.
"""

from __future__ import annotations

import ast
from collections import ChainMap
from collections.abc import Mapping
from dataclasses import dataclass, replace

import libcst as cst
from libcst.metadata import CodeRange, MetadataWrapper, PositionProvider

from ..errors import ConversionError, InputError, Location
from .nesting import check_source_nesting, check_tree_nesting

_EMPTY_MODULE = cst.Module(body=[])


@dataclass(frozen=True)
class SourceModule:
    """One parsed pipeline module.

    `path` is how the user named the file (used in messages), `label` the stable path recorded in generated
    headers, `module_name` the dotted import name when the file sits in a package (None otherwise).
    """

    path: str
    label: str
    module_name: str | None
    text: str
    tree: cst.Module
    positions: Mapping[cst.CSTNode, CodeRange]

    def location(self, node: cst.CSTNode) -> Location:
        position = self.positions.get(node)
        if position is None:
            return Location(self.path)
        return Location(self.path, position.start.line, position.start.column)

    def line_span(self, node: cst.CSTNode) -> tuple[int, int]:
        position = self.positions.get(node)
        if position is None:
            return (0, 0)
        return (position.start.line, position.end.line)

    def with_positions(self, positions: Mapping[cst.CSTNode, cst.CSTNode]) -> SourceModule:
        """The same source where new nodes report the position of the original they stand for ({new: old})."""
        found = {new: self.positions[old] for new, old in positions.items() if old in self.positions}
        return replace(self, positions=ChainMap(found, self.positions))

    def refuse(self, node: cst.CSTNode, message: str, fix: str | None = None) -> ConversionError:
        return ConversionError(message, self.location(node), construct=snippet(node), fix=fix)

    def class_named(self, name: str) -> cst.ClassDef:
        for statement in self.tree.body:
            if isinstance(statement, cst.ClassDef) and statement.name.value == name:
                return statement
        raise InputError(f"no class named {name!r}", Location(self.path))


def code(node: cst.CSTNode) -> str:
    """Source text of a node, exactly as it appears (comments and formatting included)."""
    return _EMPTY_MODULE.code_for_node(node)


def snippet(node: cst.CSTNode, limit: int = 80) -> str:
    """The first line of a node's source, shortened for one-line messages."""
    text = code(node).strip()
    lines = [line for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    first = lines[0].strip() if lines else text
    return first if len(first) <= limit else first[: limit - 3] + "..."


def parse_source(text: str, path: str, label: str | None = None, module_name: str | None = None) -> SourceModule:
    # LibCST's parser and everything after it recurse per level of nesting: bound the depth before and after
    check_source_nesting(text, path)
    try:
        tree = cst.parse_module(text)
    except cst.ParserSyntaxError as error:
        raise _syntax_error(text, path, error) from None
    check_tree_nesting(tree, text, path)
    # the tree was just parsed and nothing else holds it: no need for the wrapper's defensive deep copy.
    # `wrapper.resolve` would follow the position pass with a batched visit of the whole tree even with no batchable
    # provider to run (libcst 1.9, pinned): a tenth of a survey's time spent visiting for nothing.
    wrapper = MetadataWrapper(tree, unsafe_skip_copy=True)
    positions = PositionProvider()._gen(wrapper)
    return SourceModule(
        path=path,
        label=label or path,
        module_name=module_name,
        text=text,
        tree=wrapper.module,
        positions=positions,
    )


def _syntax_error(text: str, path: str, error: cst.ParserSyntaxError) -> InputError:
    # CPython's own parser names the problem better than LibCST's ("'(' was never closed"); compiling to an AST
    # only parses, it runs nothing.
    try:
        ast.parse(text, filename=path)
    except SyntaxError as python_error:
        location = Location(path, python_error.lineno or 0, max((python_error.offset or 1) - 1, 0))
        return InputError(f"syntax error: {python_error.msg}", location, fix="make the file valid Python")
    location = Location(path, error.raw_line, error.raw_column)
    return InputError(f"syntax error: {error.message}", location, fix="make the file valid Python")


def base_names(node: cst.ClassDef) -> list[str]:
    """Names of a class's bases (`a.b.C` -> `C`)."""
    names = []
    for arg in node.bases:
        value = arg.value
        if isinstance(value, cst.Attribute):
            names.append(value.attr.value)
        elif isinstance(value, cst.Name):
            names.append(value.value)
    return names


def method_named(node: cst.ClassDef, name: str) -> cst.FunctionDef | None:
    for statement in node.body.body:
        if isinstance(statement, cst.FunctionDef) and statement.name.value == name:
            return statement
    return None


def is_pipeline_class(node: cst.ClassDef) -> bool:
    """A standard pipeline: derives from a `...Pipeline` class and defines `__call__`."""
    inherits_pipeline = any(name.endswith("Pipeline") for name in base_names(node))
    return inherits_pipeline and method_named(node, "__call__") is not None


def find_pipeline_class(source: SourceModule, class_name: str | None = None) -> cst.ClassDef:
    candidates = [s for s in source.tree.body if isinstance(s, cst.ClassDef) and is_pipeline_class(s)]
    if class_name is not None:
        for candidate in candidates:
            if candidate.name.value == class_name:
                return candidate
        found = ", ".join(c.name.value for c in candidates) or "none"
        raise InputError(
            f"no pipeline class named {class_name!r} (pipeline classes here: {found})",
            Location(source.path),
            fix="pass one of the listed names to --class",
        )
    if not candidates:
        raise InputError(
            "no pipeline class found: expected a class deriving from a `...Pipeline` base that defines `__call__`",
            Location(source.path),
            fix="point modularize at a standard diffusers pipeline module (pipeline_*.py)",
        )
    if len(candidates) > 1:
        names = ", ".join(c.name.value for c in candidates)
        raise InputError(
            f"several pipeline classes in one module ({names})",
            source.location(candidates[1]),
            fix="choose one with --class NAME",
        )
    return candidates[0]
