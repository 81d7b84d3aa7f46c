"""Read the pipeline's own members through `self` when `__call__` names its class to reach them:

    mean_normals = MarigoldNormalsPipeline.normalize_normals(mean_normals)

becomes

    mean_normals = self.normalize_normals(mean_normals)

The same member: the method is the class's own (a static method, called from inside the class), and the generated
package has no class of that name, only the blocks its helpers are copied onto, reached as `self.<helper>` is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import libcst as cst
import libcst.matchers as m

from ..cst.substitute import replace_with_origins
from ..cst.tree_walk import findall
from ..frontend.class_facts import ClassFacts


def with_own_members_on_self(
    facts: ClassFacts, body: Sequence[cst.BaseStatement]
) -> tuple[ClassFacts, list[cst.BaseStatement], dict[cst.CSTNode, cst.CSTNode]]:
    """The class facts (their helper methods) and `body` with `<PipelineClass>.<helper method>` read as
    `self.<helper method>`, and the origin of every new node ({new: old})."""
    own = m.Attribute(value=m.Name(facts.name), attr=m.Name(m.MatchIfTrue(lambda name: name in facts.methods)))
    origins: dict[cst.CSTNode, cst.CSTNode] = {}

    def on_self(statements: Sequence[cst.BaseStatement]) -> list[cst.BaseStatement]:
        found = {node: node.with_changes(value=cst.Name("self")) for s in statements for node in findall(s, own)}
        if not found:
            return list(statements)
        rewritten, rebuilt = replace_with_origins(statements, found)
        origins.update(rebuilt)
        origins.update({new: old for old, new in found.items()})
        return rewritten

    methods = {}
    for name, method in facts.methods.items():
        statements = on_self(method.body.body)
        changed = any(new is not old for new, old in zip(statements, method.body.body, strict=True))
        methods[name] = method.with_changes(body=method.body.with_changes(body=statements)) if changed else method
        if changed:
            origins[methods[name]] = method
    return replace(facts, methods=methods), on_self(body), origins
