"""A bound on how deeply the input nests, checked before anything recurses over it.

LibCST's parser, its code generation (positions, `code_for_node`), its visitors and black all recurse once (or a few
times) per level of the syntax tree, so a pathological input -- `1 + 1 + ... + 1` with 500 terms, a list nested 199
deep -- ends in a `RecursionError`, minutes of parsing, or a crash of LibCST's native parser (measured with libcst
1.9: a 10,000-term sum or lists nested 1,600 deep kill the process; lists nested 800 deep take 8 s to parse).
Nothing in a real pipeline comes near: diffusers 0.42.1's deepest pipeline module is 23 levels deep.

Two checks, both refusing with `file:line:col` of the statement holding the deep expression:

    check_source_nesting(text, path)   # before LibCST parses: CPython's parser (C, iterative here) and an estimate
    check_tree_nesting(tree, text, path)   # after: the exact depth of the LibCST tree, before positions are computed

The first only keeps LibCST's parser safe (its limit is twice the real one); the second is the bound every later
pass relies on: a tree at most `MAX_DEPTH` deep converts without recursion errors (tests/test_robustness.py converts
trees just under it on a deepened stack).
"""

from __future__ import annotations

import ast
import dataclasses
import io
import operator
import tokenize
from collections.abc import Callable

import libcst as cst

from ..errors import ConversionError, InputError, Location

# levels of the LibCST tree, counted from the module (a statement in a method of a class starts about 7 deep)
MAX_DEPTH = 120
# the estimate made before LibCST parses overcounts (it takes the widest LibCST shape of each Python construct)
_SOURCE_LIMIT = 2 * MAX_DEPTH

# LibCST nodes between an `ast` node and its child, at most, by the child's field (statement bodies: the indented
# block and the statement line; arguments: `Arg`; subscripts: `SubscriptElement` and `Index`; ...)
_FIELD_WEIGHT = {
    "body": 3,
    "orelse": 3,
    "finalbody": 3,
    "handlers": 3,
    "cases": 3,
    "args": 4,
    "keywords": 2,
    "elts": 2,
    "keys": 2,
    "values": 2,
    "slice": 3,
    "comparators": 2,
    "generators": 3,
    "ifs": 2,
    "decorator_list": 2,
    "returns": 2,
    "annotation": 2,
    "bases": 2,
    "items": 2,
    "names": 2,
    "format_spec": 3,
}


def _message(limit: int) -> str:
    return f"expression nested deeper than {limit} levels"


_FIX = "split the expression into assignments of a few levels each"


def _refusal(path: str, text: str, line: int, column: int, limit: int) -> ConversionError:
    lines = text.splitlines()
    construct = lines[line - 1].strip() if 0 < line <= len(lines) else ""
    if len(construct) > 80:
        construct = construct[:77] + "..."
    return ConversionError(_message(limit), Location(path, line, column), construct=construct, fix=_FIX)


def check_source_nesting(text: str, path: str) -> ast.Module:
    """Refuse sources LibCST's parser cannot take safely; report CPython's syntax errors (they name the problem
    better than LibCST's). The module's `ast` (its statements' lines locate LibCST's: `parse.Positions`)."""
    try:
        tree = ast.parse(text, filename=path)
    except SyntaxError as error:
        location = Location(path, error.lineno or 0, max((error.offset or 1) - 1, 0))
        raise InputError(f"syntax error: {error.msg}", location, fix="make the file valid Python") from None
    except (RecursionError, MemoryError):  # CPython's own parser gave up: far beyond any limit of ours
        line, column = _longest_logical_line(text)
        raise _refusal(path, text, line, column, MAX_DEPTH) from None
    if _source_deeper_than(tree, _SOURCE_LIMIT):  # every real module: one cheap pass, no statement paths
        line, column = _deep_statement(tree)
        raise _refusal(path, text, line, column, MAX_DEPTH)
    return tree


def _deep_statement(tree: ast.Module) -> tuple[int, int]:
    """Where the statement holding the first node found deeper than the source limit starts."""
    statement: ast.AST = tree
    stack: list[tuple[ast.AST, int, ast.AST]] = [(tree, 0, tree)]
    while stack:
        node, depth, statement = stack.pop()
        if isinstance(node, ast.stmt):
            statement = node
        if depth > _SOURCE_LIMIT:
            return statement.lineno, statement.col_offset
        if isinstance(node, ast.BoolOp):  # `a and b and c` is one node here, a chain in LibCST
            depth += len(node.values)
        elif isinstance(node, ast.alias):  # `import a.b.c` is a chain of attributes in LibCST
            depth += node.name.count(".")
        elif isinstance(node, ast.ImportFrom) and node.module:
            depth += node.module.count(".")
        for field in node._fields:
            value = getattr(node, field, None)
            weight = _FIELD_WEIGHT.get(field, 1)
            if isinstance(value, ast.AST):
                stack.append((value, depth + weight, statement))
            elif isinstance(value, list):
                stack.extend((item, depth + weight, statement) for item in value if isinstance(item, ast.AST))
    return 0, 0


# per `ast` class: its fields with their weights, read once
_AST_FIELDS: dict[type, tuple[tuple[str, int], ...]] = {}


def _ast_fields(cls: type) -> tuple[tuple[str, int], ...]:
    fields = _AST_FIELDS[cls] = tuple((name, _FIELD_WEIGHT.get(name, 1)) for name in cls._fields)
    return fields


def _source_deeper_than(tree: ast.Module, limit: int) -> bool:
    """Whether `_deep_statement` finds a node deeper than `limit`: the same depths, without carrying the statement
    holding each node along (classes compared exactly: `ast` node classes are final)."""
    stack: list[tuple[ast.AST, int]] = [(tree, 0)]
    node_class = ast.AST
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        kind = type(node)
        if kind is ast.BoolOp:  # `a and b and c` is one node here, a chain in LibCST
            depth += len(node.values)
        elif kind is ast.alias:  # `import a.b.c` is a chain of attributes in LibCST
            depth += node.name.count(".")
        elif kind is ast.ImportFrom and node.module:
            depth += node.module.count(".")
        for name, weight in _AST_FIELDS.get(kind) or _ast_fields(kind):
            value = getattr(node, name, None)
            if value is None:
                continue
            if type(value) is list:
                below = depth + weight
                stack.extend((item, below) for item in value if isinstance(item, node_class))
            elif isinstance(value, node_class):
                stack.append((value, depth + weight))
    return False


_NESTING_KEYWORDS = frozenset({"and", "or", "not", "if", "lambda", "await", "yield"})


def _longest_logical_line(text: str) -> tuple[int, int]:
    """Where the first logical line with more operators than the limit starts (each level of nesting takes one):
    found with the tokenizer, which does not recurse, when CPython's parser could not build the tree."""
    start, count, fresh = (1, 0), 0, True
    skipped = (tokenize.NL, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT)
    try:
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.type == tokenize.NEWLINE:
                count, fresh = 0, True
                continue
            if fresh and token.type not in skipped:
                start, fresh = token.start, False
            if token.type == tokenize.OP or (token.type == tokenize.NAME and token.string in _NESTING_KEYWORDS):
                count += 1
                if count > _SOURCE_LIMIT:
                    return start
    except (tokenize.TokenError, SyntaxError):
        pass
    return (0, 0)


# LibCST fields that hold only whitespace, punctuation or leaves: nothing nests below them
_LEAF_FIELDS = frozenset(
    {
        "lpar",
        "rpar",
        "comma",
        "leading_lines",
        "lines_after_decorators",
        "trailing_whitespace",
        "header",
        "footer",
        "semicolon",
        "equal",
        "operator",
        "newline",
        "dot",
        "colon",
        "asynchronous",
        "star",
        "first_colon",
        "second_colon",
        "posonly_ind",
        "relative",
    }
)
_FIELDS: dict[type, tuple[str, ...]] = {}


def _nesting_fields(cls: type) -> tuple[str, ...]:
    names = _FIELDS.get(cls)
    if names is None:
        names = tuple(
            f.name
            for f in dataclasses.fields(cls)
            if f.name not in _LEAF_FIELDS and not f.name.startswith("whitespace")
        )
        _FIELDS[cls] = names
    return names


# per node class, one C call returning the values of its nesting fields; per value type, 1 a node, 2 a tuple or
# list (of nodes, maybe), 0 anything else (`isinstance(value, cst.CSTNode)` is a Python-level ABC check)
_GETTERS: dict[type, Callable[[cst.CSTNode], tuple]] = {}
_KINDS: dict[type, int] = {}


def _getter(cls: type) -> Callable[[cst.CSTNode], tuple]:
    names = _nesting_fields(cls)
    if len(names) > 1:
        getter = operator.attrgetter(*names)
    elif names:
        single = operator.attrgetter(names[0])
        getter = lambda node: (single(node),)  # noqa: E731
    else:
        getter = lambda node: ()  # noqa: E731
    _GETTERS[cls] = getter
    return getter


def _kind(cls: type) -> int:
    kind = _KINDS[cls] = 1 if issubclass(cls, cst.CSTNode) else 2 if cls in (tuple, list) else 0
    return kind


def _deeper_than(tree: cst.Module, limit: int) -> bool:
    """Whether any node lies deeper than `limit` (the same nodes and depths as `tree_depth_violation`), found
    level by level: no per-node tuples or statement paths."""
    getters, kinds = _GETTERS, _KINDS
    level: list[cst.CSTNode] = [tree]
    for _ in range(limit + 1):  # after k rounds, `level` holds the nodes at depth k
        below: list[cst.CSTNode] = []
        for node in level:
            for value in (getters.get(type(node)) or _getter(type(node)))(node):
                kind = kinds.get(type(value))
                if kind is None:
                    kind = _kind(type(value))
                if kind == 1:
                    below.append(value)
                elif kind == 2:
                    for item in value:
                        item_kind = kinds.get(type(item))
                        if item_kind is None:
                            item_kind = _kind(type(item))
                        if item_kind == 1:
                            below.append(item)
        if not below:
            return False
        level = below
    return True


def tree_depth_violation(tree: cst.Module, limit: int = MAX_DEPTH) -> list[cst.CSTNode] | None:
    """The statements leading to the first node (in source order) deeper than `limit`: module-level statement
    first, the innermost statement holding the node last. None when the tree is within the limit."""
    if not _deeper_than(tree, limit):  # every real module: one cheap pass, no paths built
        return None
    stack: list[tuple[cst.CSTNode, int, tuple[cst.CSTNode, ...]]] = [(tree, 0, ())]
    node_class = cst.CSTNode
    while stack:
        node, depth, statements = stack.pop()
        if isinstance(node, cst.BaseStatement):
            statements = (*statements, node)
        if depth > limit:
            return list(statements)
        children = []
        for name in _nesting_fields(type(node)):
            value = getattr(node, name)
            if isinstance(value, node_class):
                children.append(value)
            elif type(value) in (tuple, list):
                children.extend(item for item in value if isinstance(item, node_class))
        depth += 1
        stack.extend((child, depth, statements) for child in reversed(children))
    return None


def _marker_position(tree: cst.Module, path: list[cst.CSTNode]) -> tuple[int, int]:
    """Line and column where the innermost statement of `path` starts, found without generating code for anything
    too deep: the statement is replaced by a marker, everything after it is cut, and the rest is printed."""
    marker_name = "__modularize_depth_marker__"

    def marker(statement: cst.CSTNode) -> cst.SimpleStatementLine:
        leading = getattr(statement, "leading_lines", ())
        return cst.SimpleStatementLine(body=[cst.Expr(cst.Name(marker_name))], leading_lines=leading)

    replacement: cst.CSTNode = marker(path[-1])
    parents: list[cst.CSTNode] = [tree, *path[:-1]]
    child = path[-1]
    for parent in reversed(parents):
        # a statement not in its parent's first block (`elif`, `else`, `except`): the parent is marked instead
        replacement = _cut_after(parent, child, replacement) or marker(parent)
        child = parent
    text = replacement.code  # type: ignore[union-attr]
    offset = text.index(marker_name)
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1)
    return line, column


def _cut_after(parent: cst.CSTNode, child: cst.CSTNode, replacement: cst.CSTNode) -> cst.CSTNode | None:
    """`parent` with `child` (one of the statements of its first block) replaced and everything after it cut; None
    when `child` is elsewhere in `parent`."""
    if isinstance(parent, cst.Module):
        body = list(parent.body)
        return parent.with_changes(body=[*body[: _index(body, child)], replacement], footer=[])
    if isinstance(parent, (cst.If, cst.For, cst.While, cst.With, cst.FunctionDef, cst.ClassDef)) and isinstance(
        parent.body, cst.IndentedBlock
    ):
        statements = list(parent.body.body)
        if any(statement is child for statement in statements):
            block = parent.body.with_changes(body=[*statements[: _index(statements, child)], replacement])
            changes: dict = {"body": block}
            if hasattr(parent, "orelse"):
                changes["orelse"] = None
            return parent.with_changes(**changes)
    return None


def _index(statements: list[cst.CSTNode], child: cst.CSTNode) -> int:
    return next(index for index, statement in enumerate(statements) if statement is child)


def check_tree_nesting(tree: cst.Module, text: str, path: str) -> None:
    violation = tree_depth_violation(tree)
    if violation is None:
        return
    line, column = _marker_position(tree, violation)
    raise _refusal(path, text, line, column, MAX_DEPTH)
