"""LibCST's code generation without a generator per expression: the same calls, in the same order.

libcst (pinned at 1.9.0) generates every expression's code inside `_parenthesize`, and the
brackets of lists and braces of sets and dicts inside `_bracketize` / `_braceize`: three `@contextmanager`
generators. Creating and driving a generator (and its `_GeneratorContextManager`) costs more than most expressions'
own tokens: a third of printing a pipeline module, a sixth of computing its positions. `install()` replaces the
three methods with plain context-manager objects doing exactly what the generators do:

    with self._parenthesize(state):   # lpar tokens, then record_syntactic_position(self) entered
        ...                           # the expression's own tokens
                                      # record_syntactic_position exited, then rpar tokens

so every token, every `before_codegen` / `after_codegen` and every syntactic range a position provider records is
the one the original records (an exception leaves the same way too: the closing tokens are skipped unless the
inner context manager swallows it). Only the pinned version is patched: any other libcst keeps its own methods
(correct, just slower). Installed once, when the parse pass is imported.
"""

from __future__ import annotations

from typing import Any

import libcst as cst
from libcst import _version
from libcst._nodes import expression

PATCHED_VERSION = "1.9.0"

# (class, method name, libcst's own method): what `install` replaces, kept for tests comparing the two
ORIGINALS = tuple(
    (cls, name, getattr(cls, name))
    for cls, name in (
        (expression._BaseParenthesizedNode, "_parenthesize"),
        (expression.BaseList, "_bracketize"),
        (expression._BaseSetOrDict, "_braceize"),
    )
)


class _Parenthesized:
    """`_parenthesize(state)` (of every parenthesizable node): `lpar`, the syntactic range of the expression, `rpar`."""

    __slots__ = ("node", "state", "syntactic")

    def __init__(self, node: Any, state: Any):
        self.node, self.state = node, state

    def __enter__(self) -> None:
        node, state = self.node, self.state
        for lpar in node.lpar:
            lpar._codegen(state)
        self.syntactic = state.record_syntactic_position(node)
        self.syntactic.__enter__()

    def __exit__(self, kind: Any, value: Any, traceback: Any) -> bool:
        swallowed = bool(self.syntactic.__exit__(kind, value, traceback))
        if kind is None or swallowed:
            for rpar in self.node.rpar:
                rpar._codegen(self.state)
        return swallowed


class _Enclosed:
    """`_bracketize` / `_braceize`: an opening token node, the body, a closing token node."""

    __slots__ = ("opening", "closing", "state")

    def __init__(self, opening: cst.CSTNode, closing: cst.CSTNode, state: Any):
        self.opening, self.closing, self.state = opening, closing, state

    def __enter__(self) -> None:
        self.opening._codegen(self.state)

    def __exit__(self, kind: Any, value: Any, traceback: Any) -> bool:
        if kind is None:
            self.closing._codegen(self.state)
        return False


def _parenthesize(self: Any, state: Any) -> _Parenthesized:
    return _Parenthesized(self, state)


def _bracketize(self: Any, state: Any) -> _Enclosed:
    return _Enclosed(self.lbracket, self.rbracket, state)


def _braceize(self: Any, state: Any) -> _Enclosed:
    return _Enclosed(self.lbrace, self.rbrace, state)


_REPLACEMENTS = {"_parenthesize": _parenthesize, "_bracketize": _bracketize, "_braceize": _braceize}


def install() -> bool:
    """Patch the pinned libcst (once; idempotent). False, and nothing changed, for any other version."""
    if _version.__version__ != PATCHED_VERSION:
        return False
    for cls, name, _ in ORIGINALS:
        setattr(cls, name, _REPLACEMENTS[name])
    return True
