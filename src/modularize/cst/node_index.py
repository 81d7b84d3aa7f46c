"""One traversal of `__call__`, many queries: every node of interest, by type, with its top-level statement.

LibCST traversals are the converter's main cost (a full pass over a large `__call__` is tens of milliseconds), and
the analysis asks many questions of the same statements: which `if`s test the CFG flag, which calls reach helper
methods, which lines assign `self._x`. Indexing once answers them all.

    index = NodeIndex(body)
    index.find(cst.If, within=body[:10])               # every `if` in the first ten statements
    index.find(cst.Call, m.Call(func=m.Name("retrieve_timesteps")))
    index.statement_of(node)                           # the top-level statement holding a node
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import libcst as cst
import libcst.matchers as m

from .match_filter import matcher_test
from .tree_walk import walk

_INDEXED = (cst.If, cst.IfExp, cst.Call, cst.Assign, cst.SimpleStatementLine, cst.Attribute)


class NodeIndex:
    def __init__(self, statements: Sequence[cst.CSTNode]):
        self.statements = list(statements)
        self._nodes: dict[type, list[tuple[int, cst.CSTNode]]] = {kind: [] for kind in _INDEXED}
        self._position: dict[int, int] = {}
        for position, statement in enumerate(self.statements):
            for node in walk(statement):
                # by exact type (LibCST's node classes are final): `isinstance` is an ABC check per class per node
                found = self._nodes.get(type(node))
                if found is not None:
                    self._position[id(node)] = position
                    found.append((position, node))

    def find(
        self,
        kind: type,
        matcher: m.BaseMatcherNode | None = None,
        within: Iterable[cst.CSTNode] | None = None,
    ) -> list[cst.CSTNode]:
        """Nodes of `kind` (in source order), optionally matching `matcher`, inside the `within` statements."""
        positions = None if within is None else {self.statements.index(s) for s in within}
        test = None if matcher is None else matcher_test(matcher)
        return [
            node
            for position, node in self._nodes[kind]
            if (positions is None or position in positions) and (test is None or test(node))
        ]

    def statement_of(self, node: cst.CSTNode) -> cst.CSTNode:
        return self.statements[self._position[id(node)]]
