"""Build generated classes from template text with placeholders, then splice real statements in.

Templates are plain Python with two placeholder statements, `__modularize_body__` (inside a function) and
`__modularize_members__` (inside a class body). Splicing LibCST nodes rather than pasting text keeps indentation,
comments and multi-line strings of the copied statements exactly as they were.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import libcst as cst
import libcst.matchers as m

BODY = "__modularize_body__"
MEMBERS = "__modularize_members__"


class _Splice(cst.CSTTransformer):
    def __init__(self, fills: Mapping[str, Sequence[cst.BaseStatement]]):
        super().__init__()
        self._fills = fills

    def leave_SimpleStatementLine(self, original_node, updated_node):
        if m.matches(updated_node, m.SimpleStatementLine(body=[m.Expr(value=m.Name())])):
            name = updated_node.body[0].value.value
            if name in self._fills:
                statements = list(self._fills[name])
                if not statements:
                    return cst.RemoveFromParent()
                return cst.FlattenSentinel(statements)
        return updated_node


def splice(template: str, fills: Mapping[str, Sequence[cst.BaseStatement]]) -> list[cst.BaseStatement]:
    """Parse `template` and replace each placeholder statement with its statements."""
    module = cst.parse_module(template)
    return list(module.visit(_Splice(fills)).body)


def statement(text: str) -> cst.BaseStatement:
    return cst.parse_statement(text if text.endswith("\n") else text + "\n")
