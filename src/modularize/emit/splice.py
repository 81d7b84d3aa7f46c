"""Build generated classes from template text with placeholders, then splice real statements in.

Templates are plain Python with two placeholder statements, `__modularize_body__` (inside a function) and
`__modularize_members__` (inside a class body). Splicing LibCST nodes rather than pasting text keeps indentation,
comments and multi-line strings of the copied statements exactly as they were.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import libcst as cst

BODY = "__modularize_body__"
MEMBERS = "__modularize_members__"


def splice(template: str, fills: Mapping[str, Sequence[cst.BaseStatement]]) -> list[cst.BaseStatement]:
    """Parse `template` and replace each placeholder statement with its statements."""
    module = cst.parse_module(template)
    body, _ = _filled_block(module.body, fills)
    return body


# Placeholders are statements, so only statement blocks are searched: down through compound statements, never
# into expressions. A LibCST transformer would rebuild every node of the template on the way (its declarations
# of inputs and outputs are most of a generated file's nodes); this rebuilds only the blocks that hold a placeholder.
_BLOCK_FIELDS = ("body", "orelse", "handlers", "finalbody")


def _filled_block(
    statements: Sequence[cst.BaseStatement], fills: Mapping[str, Sequence[cst.BaseStatement]]
) -> tuple[list[cst.BaseStatement], bool]:
    result: list[cst.BaseStatement] = []
    changed = False
    for statement in statements:
        name = _placeholder(statement)
        if name is not None and name in fills:
            result += fills[name]
            changed = True
            continue
        filled = _filled(statement, fills)
        changed = changed or filled is not statement
        result.append(filled)
    return result, changed


def _filled(node: cst.CSTNode, fills: Mapping[str, Sequence[cst.BaseStatement]]) -> cst.CSTNode:
    """`node` with the placeholders in the statement blocks below it filled; `node` itself when it holds none."""
    if isinstance(node, cst.IndentedBlock):
        body, changed = _filled_block(node.body, fills)
        return node.with_changes(body=body) if changed else node
    if isinstance(node, cst.SimpleStatementLine) or not isinstance(node, cst.CSTNode):
        return node
    changes = {}
    for field in _BLOCK_FIELDS:
        value = getattr(node, field, None)
        if isinstance(value, cst.CSTNode):
            filled = _filled(value, fills)
            if filled is not value:
                changes[field] = filled
        elif field == "handlers" and value:
            handlers = tuple(_filled(handler, fills) for handler in value)
            if any(new is not old for new, old in zip(handlers, value, strict=True)):
                changes[field] = handlers
    return node.with_changes(**changes) if changes else node


def _placeholder(statement: cst.BaseStatement) -> str | None:
    """The name of a placeholder statement (a line holding one bare name), None for any other statement."""
    if isinstance(statement, cst.SimpleStatementLine) and len(statement.body) == 1:
        expression = statement.body[0]
        if isinstance(expression, cst.Expr) and isinstance(expression.value, cst.Name):
            return expression.value.value
    return None


def statement(text: str) -> cst.BaseStatement:
    return cst.parse_statement(text if text.endswith("\n") else text + "\n")
