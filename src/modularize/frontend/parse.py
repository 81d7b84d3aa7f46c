"""Parse pass: source text -> `SourceModule` (LibCST tree, positions, the pipeline class).

Nothing of the input is imported or executed: a pipeline module is only ever read as text.
"""

from __future__ import annotations

import ast
import re
from bisect import bisect_right
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace

import libcst as cst
from libcst._nodes.internal import CodegenState
from libcst.metadata import CodePosition, CodeRange

from ..cst.tree_walk import walk
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
    positions: Positions | _Aliased

    def location(self, node: cst.CSTNode) -> Location:
        start = self.positions.start(node)
        if start is None:
            return Location(self.path)
        return Location(self.path, start.line, start.column)

    def start(self, node: cst.CSTNode) -> CodePosition | None:
        """Where a node starts (a statement's start is known without computing every position in it)."""
        return self.positions.start(node)

    def line_span(self, node: cst.CSTNode) -> tuple[int, int]:
        return self.positions.lines(node) or (0, 0)

    def with_positions(self, positions: Mapping[cst.CSTNode, cst.CSTNode]) -> SourceModule:
        """The same source where new nodes report the position of the original they stand for ({new: old})."""
        return replace(self, positions=_Aliased(positions, self.positions))

    def refuse(self, node: cst.CSTNode, message: str, fix: str | None = None) -> ConversionError:
        return ConversionError(message, self.location(node), construct=snippet(node), fix=fix)

    def class_named(self, name: str) -> cst.ClassDef:
        for statement in self.tree.body:
            if isinstance(statement, cst.ClassDef) and statement.name.value == name:
                return statement
        raise InputError(f"no class named {name!r}", Location(self.path))


class _Aliased(Mapping[cst.CSTNode, CodeRange]):
    """Positions where new nodes report the position of the original they stand for ({new: old}), looked up
    when asked (`SourceModule.with_positions`): a rewrite does not make every position be computed."""

    def __init__(self, aliases: Mapping[cst.CSTNode, cst.CSTNode], base: Positions | _Aliased):
        self._aliases = dict(aliases)
        self._base = base

    def __getitem__(self, node: cst.CSTNode) -> CodeRange:
        old = self._aliases.get(node)
        if old is not None and old in self._base:
            return self._base[old]
        return self._base[node]

    def __contains__(self, node: object) -> bool:
        old = self._aliases.get(node)  # type: ignore[call-overload]
        return (old is not None and old in self._base) or node in self._base

    def __iter__(self) -> Iterator[cst.CSTNode]:
        return iter(
            {**dict.fromkeys(self._base), **dict.fromkeys(n for n, o in self._aliases.items() if o in self._base)}
        )

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def start(self, node: cst.CSTNode) -> CodePosition | None:
        old = self._aliases.get(node)
        found = self._base.start(old) if old is not None else None
        return found if found is not None else self._base.start(node)

    def lines(self, node: cst.CSTNode) -> tuple[int, int] | None:
        old = self._aliases.get(node)
        found = self._base.lines(old) if old is not None else None
        return found if found is not None else self._base.lines(node)


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
    syntax = check_source_nesting(text, path)
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
        positions=Positions(tree, text, syntax),
    )


# libcst's own newline rule for positions (`libcst.metadata.position_provider.NEWLINE_RE`)
_NEWLINE = re.compile(r"\r\n?|\n")


class Positions(Mapping[cst.CSTNode, CodeRange]):
    """`PositionProvider`'s positions of every node of a parsed module, the same values, computed when first asked.

    libcst's provider (pinned 1.9) spends more than a parse on them: per token it splits the text on newlines to
    count lines and columns, per node it builds three dataclasses. Here code generation records character offsets
    by node id, and a position is built from an offset (a bisect over line starts) only when asked; a file refused
    before any position is asked for (most of a survey's) never runs the pass at all.

    And it runs piece by piece: the analysis asks about the nodes of a few methods (`__call__`, `__init__`), so
    each module-level statement and each method of a class is a *unit* whose code is generated alone, starting at
    the offset where the module's `ast` puts its first line. What a unit generates must be the text there, or
    every position is computed at once, as one pass over the module would:

        units: [import torch, ..., def retrieve_timesteps, Pipeline.__init__, ..., Pipeline.__call__]
        positions[node in __call__]   ->  code generated for `__call__` only
    """

    def __init__(self, tree: cst.Module, text: str, syntax: ast.Module | None = None):
        self._tree = tree  # keeps every node alive, so node ids stay unique
        self._text = text
        self._syntax = syntax
        self._offsets: dict[int, tuple[int, int]] = {}
        self._complete = False
        self._line_starts: list[int] | None = None
        self._units: list[_Unit] | None = None
        self._unit_of: dict[int, _Unit] = {}
        self._listed = 0  # units whose nodes are in `_unit_of`, in `_units` order
        self._starts: dict[int, tuple[int, int]] = {}  # the syntactic starts of definitions, from the `ast`
        self._spans: dict[int, tuple[int, int, int]] | None = None  # statements' (line, column, last line)

    def _offsets_of(self, node: object) -> tuple[int, int] | None:
        found = self._offsets.get(id(node))
        if found is not None or self._complete:
            return found
        unit = self._unit_holding(node)
        if unit is not None and not unit.done:
            self._generate(unit)
            found = self._offsets.get(id(node))
            if found is not None or self._complete:
                return found
        self._generate_all()
        return self._offsets.get(id(node))

    def _lines(self) -> list[int]:
        if self._line_starts is None:
            # the code generated is the parsed text (plus the newline libcst adds, then drops, at a missing end)
            text = self._text if self._tree.has_trailing_newline else self._text + self._tree.default_newline
            self._line_starts = [0, *(match.end() for match in _NEWLINE.finditer(text))]
        return self._line_starts

    def _generate_all(self) -> None:
        state = _OffsetState(default_indent=self._tree.default_indent, default_newline=self._tree.default_newline)
        self._tree._codegen(state)
        self._offsets = state.offsets
        self._complete = True

    def _generate(self, unit: _Unit) -> None:
        unit.done = True
        state = _OffsetState(default_indent=self._tree.default_indent, default_newline=self._tree.default_newline)
        state.offset = unit.offset
        state.indent_tokens = list(unit.indent)
        unit.node._codegen(state)
        if "".join(state.tokens) != self._text[unit.offset : state.offset]:
            self._generate_all()  # the `ast` did not locate the unit after all
            return
        self._offsets.update(state.offsets)

    def _unit_holding(self, node: object) -> _Unit | None:
        """The unit whose code holds `node`, listing the units' nodes largest unit first until it is found."""
        units = self._listed_units()
        while id(node) not in self._unit_of and self._listed < len(units):
            unit = units[self._listed]
            self._listed += 1
            self._unit_of.update(dict.fromkeys(map(id, walk(unit.node)), unit))
        return self._unit_of.get(id(node))

    def _listed_units(self) -> list[_Unit]:
        if self._units is None:
            self._units = []
            if self._syntax is not None:
                located = _located(self._tree.body, self._syntax.body, (), self._lines(), self._tree.default_indent)
                if located is not None:
                    self._units, self._starts = located
                    self._units.sort(key=lambda unit: -unit.lines)
        return self._units

    def start(self, node: cst.CSTNode) -> CodePosition | None:
        """`self[node].start` (None for a node not in the module); a statement's start is read off the `ast`
        without generating any code."""
        self._listed_units()
        start = self._starts.get(id(node))
        if start is None:
            span = self._statement_spans().get(id(node))
            start = span[:2] if span is not None else None
        if start is not None:
            return CodePosition(*start)
        found = self._offsets_of(node)
        return None if found is None else self._position(found[0])

    def lines(self, node: cst.CSTNode) -> tuple[int, int] | None:
        """(first line, last line) of `self[node]`; a simple statement's read off the `ast`."""
        span = self._statement_spans().get(id(node))
        if span is not None and span[2] >= 0:
            return span[0], span[2]
        found = self._offsets_of(node)
        return None if found is None else (self._position(found[0]).line, self._position(found[1]).line)

    def _statement_spans(self) -> dict[int, tuple[int, int, int]]:
        if self._spans is None:
            self._spans = {}
            if self._syntax is not None and not _statement_spans(self._tree.body, self._syntax.body, self._spans):
                self._spans = {}
        return self._spans

    def _position(self, offset: int) -> CodePosition:
        line_starts = self._lines()
        line = bisect_right(line_starts, offset)
        return CodePosition(line, offset - line_starts[line - 1])

    def __getitem__(self, node: cst.CSTNode) -> CodeRange:
        found = self._offsets_of(node)
        if found is None:
            raise KeyError(node)
        return CodeRange(self._position(found[0]), self._position(found[1]))

    def __contains__(self, node: object) -> bool:
        return self._offsets_of(node) is not None

    def __iter__(self) -> Iterator[cst.CSTNode]:
        if not self._complete:
            self._generate_all()
        return (node for node in _all_nodes(self._tree) if id(node) in self._offsets)

    def __len__(self) -> int:
        if not self._complete:
            self._generate_all()
        return len(self._offsets)


def _statement_spans(
    statements: Sequence[cst.BaseStatement], syntax: Sequence[ast.stmt], spans: dict[int, tuple[int, int, int]]
) -> bool:
    """Where each statement of a block (and of the blocks below it) starts, and where each simple one ends, from
    the `ast` of the same block: its first line and column and its last line (-1 for a compound statement, whose
    block may end in comment lines the `ast` does not see), as `PositionProvider` gives them; False where the two
    do not line up."""
    aligned = _aligned(statements, syntax)
    if aligned is None:
        return False
    for statement, parts in aligned:
        if isinstance(statement, cst.SimpleStatementLine):
            spans[id(statement)] = (parts[0].lineno, parts[0].col_offset, parts[-1].end_lineno or parts[-1].lineno)
            continue
        spans[id(statement)] = (parts[0].lineno, parts[0].col_offset, -1)  # (its last line: unknown here)
        for block, inner in _blocks(statement, parts[0]):
            if not _statement_spans(block, inner, spans):
                return False
    return True


def _aligned(
    statements: Sequence[cst.BaseStatement], syntax: Sequence[ast.stmt]
) -> list[tuple[cst.BaseStatement, Sequence[ast.stmt]]] | None:
    """Each statement of a block with the `ast` statements it holds (one per small statement of a line: `a = 1;
    b = 2` is two); None where the two blocks do not line up."""
    aligned = []
    position = 0
    for statement in statements:
        taken = len(statement.body) if isinstance(statement, cst.SimpleStatementLine) else 1
        parts = syntax[position : position + taken]
        position += taken
        if len(parts) != taken:
            return None
        aligned.append((statement, parts))
    return aligned if position == len(syntax) else None


def _blocks(statement: cst.BaseStatement, syntax: ast.stmt) -> list[tuple[Sequence[cst.BaseStatement], list]]:
    """The statement blocks of a compound statement, each with the `ast` statements of the same block (none where
    the two are not both indented blocks read the same way)."""
    pairs: list[tuple[Sequence[cst.BaseStatement], list]] = []

    def add(suite: object, inner: list) -> None:
        if isinstance(suite, cst.IndentedBlock):
            pairs.append((suite.body, inner))

    if isinstance(statement, (cst.FunctionDef, cst.ClassDef, cst.With)):
        add(statement.body, syntax.body)
    elif isinstance(statement, (cst.For, cst.While)):
        add(statement.body, syntax.body)
        if statement.orelse is not None:
            add(statement.orelse.body, syntax.orelse)
    elif isinstance(statement, cst.If):
        add(statement.body, syntax.body)
        if isinstance(statement.orelse, cst.If):  # `elif`: the `ast` holds it as the one statement of `orelse`
            pairs.append(([statement.orelse], syntax.orelse))
        elif statement.orelse is not None:
            add(statement.orelse.body, syntax.orelse)
    elif isinstance(statement, cst.Try) and isinstance(syntax, ast.Try):
        add(statement.body, syntax.body)
        if len(statement.handlers) == len(syntax.handlers):
            for handler, inner in zip(statement.handlers, syntax.handlers, strict=True):
                add(handler.body, inner.body)
        if statement.orelse is not None:
            add(statement.orelse.body, syntax.orelse)
        if statement.finalbody is not None:
            add(statement.finalbody.body, syntax.finalbody)
    return pairs


@dataclass
class _Unit:
    """A statement whose code is generated alone: where its code starts, the indentation it is generated at."""

    node: cst.BaseStatement
    offset: int
    indent: tuple[str, ...]
    lines: int
    done: bool = False


def _located(
    statements: Sequence[cst.BaseStatement],
    syntax: Sequence[ast.stmt],
    indent: tuple[str, ...],
    line_starts: list[int],
    default_indent: str,
) -> tuple[list[_Unit], dict[int, tuple[int, int]]] | None:
    """The units of a block of statements (the methods of a class, not the class), located with the `ast` of
    the same block, and the syntactic starts of the definitions among them; None where the two do not line up."""
    units: list[_Unit] = []
    starts: dict[int, tuple[int, int]] = {}
    aligned = _aligned(statements, syntax)
    if aligned is None:
        return None
    for statement, parts in aligned:
        first = parts[0]
        decorators = getattr(first, "decorator_list", None)
        line = min([first.lineno, *(decorator.lineno for decorator in decorators or ())])
        line -= len(statement.leading_lines)
        if not 0 < line <= len(line_starts):
            return None
        if isinstance(statement, (cst.ClassDef, cst.FunctionDef)):
            starts[id(statement)] = (first.lineno, first.col_offset)
        body = getattr(statement, "body", None)
        if isinstance(statement, cst.ClassDef) and isinstance(body, cst.IndentedBlock):
            inner = (*indent, body.indent if body.indent is not None else default_indent)
            found = _located(body.body, first.body, inner, line_starts, default_indent)
            if found is None:
                return None
            units += found[0]
            starts.update(found[1])
            continue
        end = max(getattr(part, "end_lineno", None) or part.lineno for part in parts)
        units.append(_Unit(statement, line_starts[line - 1], indent, end - line))
    return units, starts


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
