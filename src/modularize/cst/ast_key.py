"""A key of a Python `ast` tree for telling trees apart: equal keys, equal trees.

    ast_key(ast.parse("(a + b)", mode="eval")) == ast_key(ast.parse("a+b", mode="eval"))   # True
    ast_key(ast.parse("1", mode="eval")) == ast_key(ast.parse("1.0", mode="eval"))         # False (as reprs)

It tells apart what `ast.dump` tells apart (node classes, fields in order, values by their `repr`), but `ast.dump`
recurses through a nested function that refers to itself: every call leaves a reference cycle for the cyclic
collector, and the analysis compares expressions thousands of times per conversion.
"""

from __future__ import annotations

import ast


def ast_key(node: object) -> object:
    """A hashable value standing for `node` (an `ast` node, a list of them, or a field's plain value)."""
    if isinstance(node, ast.AST):
        return (type(node).__name__, *(ast_key(getattr(node, field, None)) for field in node._fields))
    if isinstance(node, list):
        return ("[]", *(ast_key(item) for item in node))
    return repr(node)
