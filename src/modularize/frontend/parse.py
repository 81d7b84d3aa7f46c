"""Parse pass: source text -> `SourceModule` (LibCST tree, positions, the pipeline class).

Nothing of the input is imported or executed: a pipeline module is only ever read as text.
"""

from __future__ import annotations

import ast
import re
from bisect import bisect_right
from collections import ChainMap
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace

import libcst as cst
from libcst._nodes.internal import CodegenState
from libcst.metadata import CodePosition, CodeRange

from ..errors import ConversionError, InputError, Location
from . import codegen
from .nesting import check_source_nesting, check_tree_nesting

_EMPTY_MODULE = cst.Module(body=[])

codegen.install()  # every expression printed without a generator (the same tokens; see codegen)


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
    return code_in(_EMPTY_MODULE, node)


def module_code(module: cst.Module) -> str:
    """`module.code`, the same text, generated without libcst's per-expression position bookkeeping."""
    return code_in(module, module)


def code_in(module: cst.Module, node: cst.CSTNode) -> str:
    """`module.code_for_node(node)`, the same text. libcst's code generation enters a generator-based context
    manager at every parenthesizable expression to let a position provider record where it is; plain code
    generation records nothing there, so a do-nothing context manager does it at a fraction of the cost."""
    state = _CodeState(default_indent=module.default_indent, default_newline=module.default_newline)
    node._codegen(state)
    return "".join(state.tokens)


def code_indented(statements: Sequence[cst.CSTNode], indent: str) -> str:
    """The statements' code as a module with the default indentation prints them inside blocks indented by
    `indent` (every line of theirs, continuation lines of strings aside, starts with it)."""
    state = _CodeState(default_indent=_EMPTY_MODULE.default_indent, default_newline=_EMPTY_MODULE.default_newline)
    if indent:
        state.increase_indent(indent)
    for statement in statements:
        statement._codegen(state)
    return "".join(state.tokens)


class _NoPosition:
    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exception: object) -> None:
        return None


_NO_POSITION = _NoPosition()


class _CodeState(CodegenState):
    def record_syntactic_position(
        self, node: cst.CSTNode, *, start_node: cst.CSTNode | None = None, end_node: cst.CSTNode | None = None
    ) -> _NoPosition:
        return _NO_POSITION


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
    return SourceModule(
        path=path,
        label=label or path,
        module_name=module_name,
        text=text,
        tree=tree,
        positions=Positions(tree, text),
    )


# libcst's own newline rule for positions (`libcst.metadata.position_provider.NEWLINE_RE`)
_NEWLINE = re.compile(r"\r\n?|\n")


class Positions(Mapping[cst.CSTNode, CodeRange]):
    """`PositionProvider`'s positions of every node of a parsed module, the same values, computed when first asked.

    libcst's provider (pinned 1.9) spends more than a parse on them: per token it splits the text on newlines to
    count lines and columns, per node it builds three dataclasses. Here one code-generation pass records
    character offsets by node id, and a position is built from an offset (a bisect over line starts) only when
    asked; a file refused before any position is asked for (most of a survey's) never runs the pass at all.
    """

    def __init__(self, tree: cst.Module, text: str):
        self._tree = tree  # keeps every node alive, so node ids stay unique
        self._text = text
        self._offsets: dict[int, tuple[int, int]] | None = None
        self._line_starts: list[int] = []

    def _computed(self) -> dict[int, tuple[int, int]]:
        if self._offsets is None:
            state = _OffsetState(default_indent=self._tree.default_indent, default_newline=self._tree.default_newline)
            self._tree._codegen(state)
            # the code generated is the parsed text (plus the newline libcst adds, then drops, at a missing end)
            text = self._text if self._tree.has_trailing_newline else self._text + self._tree.default_newline
            self._line_starts = [0, *(match.end() for match in _NEWLINE.finditer(text))]
            self._offsets = state.offsets
        return self._offsets

    def _position(self, offset: int) -> CodePosition:
        line = bisect_right(self._line_starts, offset)
        return CodePosition(line, offset - self._line_starts[line - 1])

    def __getitem__(self, node: cst.CSTNode) -> CodeRange:
        found = self._computed().get(id(node))
        if found is None:
            raise KeyError(node)
        return CodeRange(self._position(found[0]), self._position(found[1]))

    def __contains__(self, node: object) -> bool:
        return id(node) in self._computed()

    def __iter__(self) -> Iterator[cst.CSTNode]:
        offsets = self._computed()
        return (node for node in _all_nodes(self._tree) if id(node) in offsets)

    def __len__(self) -> int:
        return len(self._computed())


class _OffsetState(CodegenState):
    """Code generation that records each node's range as character offsets, with `PositionProvider`'s rules:
    a node's syntactic range where its code generation records one, its whole range otherwise."""

    def __init__(self, default_indent: str, default_newline: str):
        super().__init__(default_indent=default_indent, default_newline=default_newline)
        self.offset = 0
        self.offsets: dict[int, tuple[int, int]] = {}
        self._starts: list[int] = []

    def add_indent_tokens(self) -> None:
        self.tokens.extend(self.indent_tokens)
        for token in self.indent_tokens:
            self.offset += len(token)

    def add_token(self, value: str) -> None:
        self.tokens.append(value)
        self.offset += len(value)

    def before_codegen(self, node: cst.CSTNode) -> None:
        self._starts.append(self.offset)

    def after_codegen(self, node: cst.CSTNode) -> None:
        start = self._starts.pop()
        if id(node) not in self.offsets:  # a syntactic range already recorded stays
            self.offsets[id(node)] = (start, self.offset)

    def record_syntactic_position(
        self, node: cst.CSTNode, *, start_node: cst.CSTNode | None = None, end_node: cst.CSTNode | None = None
    ) -> _SyntacticRange:
        return _SyntacticRange(self, node, start_node, end_node)


class _SyntacticRange:
    """`PositionProvidingCodegenState.record_syntactic_position` as a plain context manager (no generator)."""

    __slots__ = ("state", "node", "start_node", "end_node", "start")

    def __init__(
        self, state: _OffsetState, node: cst.CSTNode, start_node: cst.CSTNode | None, end_node: cst.CSTNode | None
    ):
        self.state, self.node, self.start_node, self.end_node = state, node, start_node, end_node

    def __enter__(self) -> None:
        self.start = self.state.offset

    def __exit__(self, *exception: object) -> None:
        offsets = self.state.offsets
        start, end = self.start, self.state.offset
        if self.start_node is not None:
            start = offsets[id(self.start_node)][0]
        if self.end_node is not None:
            end = offsets[id(self.end_node)][1]
        offsets[id(self.node)] = (start, end)


def _all_nodes(node: cst.CSTNode) -> Iterator[cst.CSTNode]:
    yield node
    for child in node.children:
        yield from _all_nodes(child)


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
            fix="choose one with --class NAME (a family's workflow: FILE::NAME)",
        )
    return candidates[0]
