"""Mechanics shared by the transforms: replace nodes found by an analysis, substitute free names.

    replace_nodes(stmt, {found_if: cst.RemoveFromParent()})   # drop a node the analysis located
    substitute_names(stmt, {"callback_steps": cst.Name("None")})
        check(prompt, callback_steps)  ->  check(prompt, None)

Only names in load positions are substituted: attribute names (`x.callback_steps`), keyword names
(`f(callback_steps=1)`) and parameter names are left alone.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from typing import TypeVar

import libcst as cst

from ..frontend.parse import code
from .ast_key import ast_key
from .tree_walk import paths_to_nodes, remembered, walk

NodeT = TypeVar("NodeT", bound=cst.CSTNode)

Replacement = cst.CSTNode | cst.RemovalSentinel | cst.FlattenSentinel


class _ReplaceNodes(cst.CSTTransformer):
    def __init__(self, replacements: Mapping[cst.CSTNode, Replacement]):
        super().__init__()
        self._replacements = replacements

    def on_leave(self, original_node, updated_node):
        replacement = self._replacements.get(original_node)
        if replacement is None:
            return updated_node
        if isinstance(replacement, cst.FlattenSentinel) and any(n is original_node for n in replacement.nodes):
            # a replacement that keeps the node (statements added around it) keeps it with its own replacements
            return cst.FlattenSentinel([updated_node if n is original_node else n for n in replacement.nodes])
        return replacement


def replace_nodes(node: NodeT, replacements: Mapping[cst.CSTNode, Replacement]) -> NodeT | cst.RemovalSentinel:
    """Replace nodes by identity (nodes of `node`'s own tree, as found by an analysis)."""
    if not replacements:
        return node
    if node in replacements:
        return replacements[node]
    return node.visit(_ReplaceNodes(replacements))


class _SubstituteNames(cst.CSTTransformer):
    def __init__(self, mapping: Mapping[str, cst.BaseExpression], rename_targets: bool = False):
        super().__init__()
        self._mapping = mapping
        self._rename_targets = rename_targets
        self._not_variables: set[int] = set()

    def visit_Attribute(self, node: cst.Attribute) -> bool:
        self._not_variables.add(id(node.attr))
        return True

    def visit_Arg(self, node: cst.Arg) -> bool:
        if node.keyword is not None:
            self._not_variables.add(id(node.keyword))
        return True

    def visit_Param(self, node: cst.Param) -> bool:
        self._not_variables.add(id(node.name))
        return True

    def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
        self._not_variables.add(id(node.name))
        return True

    # names assigned are no values to substitute (`callback_steps = 1` must not become `None = 1`)
    def _stores(self, target: cst.CSTNode | None) -> None:
        if target is not None and not self._rename_targets:
            self._not_variables.update(id(n) for n in walk(target) if isinstance(n, cst.Name))

    def visit_AssignTarget(self, node: cst.AssignTarget) -> bool:
        self._stores(node.target)
        return True

    def visit_AugAssign(self, node: cst.AugAssign) -> bool:
        self._stores(node.target)
        return True

    def visit_AnnAssign(self, node: cst.AnnAssign) -> bool:
        self._stores(node.target)
        return True

    def visit_For(self, node: cst.For) -> bool:
        self._stores(node.target)
        return True

    def visit_CompFor(self, node: cst.CompFor) -> bool:
        self._stores(node.target)
        return True

    def visit_AsName(self, node: cst.AsName) -> bool:
        self._stores(node.name)
        return True

    def visit_NamedExpr(self, node: cst.NamedExpr) -> bool:
        self._stores(node.target)
        return True

    def leave_Name(self, original_node: cst.Name, updated_node: cst.Name) -> cst.BaseExpression:
        if id(original_node) in self._not_variables:
            return updated_node
        replacement = self._mapping.get(original_node.value)
        return updated_node if replacement is None else replacement


def substitute_names(node: NodeT, mapping: Mapping[str, cst.BaseExpression], rename_targets: bool = False) -> NodeT:
    """Free names replaced by expressions; assignment targets stay unless `rename_targets` (a pure renaming:
    `neg = neg[:, :4]` with {"neg": pos} -> `pos = pos[:, :4]`; a value never becomes a target, `None = 1`)."""
    if not mapping:
        return node
    return node.visit(_SubstituteNames(mapping, rename_targets))


def same_expression(a: cst.CSTNode, b: cst.CSTNode) -> bool:
    """Equal up to parentheses, whitespace and comments (compared as Python ASTs)."""
    return a is b or remembered("normalized", a, _normalized) == remembered("normalized", b, _normalized)


def _normalized(node: cst.CSTNode) -> object:
    text = code(node).strip()
    try:
        return ast_key(ast.parse(f"({text})", mode="eval"))
    except SyntaxError:
        return text


def has_conjunct(test: cst.BaseExpression, part: cst.BaseExpression) -> bool:
    """`flag and other` has the conjunct `flag` (compared as expressions, `same_expression`)."""
    return any(same_expression(found, part) for found in conjuncts(test))


def conjuncts(test: cst.BaseExpression) -> list[cst.BaseExpression]:
    """`a and b and c` -> [a, b, c] (parentheses around the whole test are ignored)."""
    if isinstance(test, cst.BooleanOperation) and isinstance(test.operator, cst.And):
        return [*conjuncts(test.left), *conjuncts(test.right)]
    return [test]


def indented(statements: list[cst.BaseStatement]) -> cst.IndentedBlock:
    return cst.IndentedBlock(body=statements)


def parse_statement(text: str) -> cst.BaseStatement:
    return cst.parse_statement(text)


def parse_expression(text: str) -> cst.BaseExpression:
    return cst.parse_expression(text)


class _PruneEmptyBlocks(cst.CSTTransformer):
    """An `if` whose body lost every statement is removed (or keeps its `else` behind `pass`)."""

    def leave_If(self, original_node: cst.If, updated_node: cst.If):
        if updated_node.body.body:
            return updated_node
        if updated_node.orelse is None:
            return cst.RemoveFromParent()
        return updated_node.with_changes(body=cst.IndentedBlock(body=[cst.SimpleStatementLine([cst.Pass()])]))

    def leave_Else(self, original_node: cst.Else, updated_node: cst.Else):
        return updated_node if updated_node.body.body else cst.RemoveFromParent()

    def leave_For(self, original_node: cst.For, updated_node: cst.For):
        return updated_node if updated_node.body.body else cst.RemoveFromParent()

    def leave_With(self, original_node: cst.With, updated_node: cst.With):
        return updated_node if updated_node.body.body else cst.RemoveFromParent()


def rewrite_statement(
    statement: cst.BaseStatement, replacements: Mapping[cst.CSTNode, Replacement]
) -> cst.BaseStatement | None:
    """Apply replacements to one statement and prune what they emptied; None when nothing is left."""
    result = cst.Module(body=[statement]).visit(_ReplaceNodes(replacements)) if replacements else None
    if result is None:
        return statement
    result = result.visit(_PruneEmptyBlocks())
    if not result.body:
        return None
    if len(result.body) == 1:
        return result.body[0]
    raise ValueError("a replacement turned one statement into several; use rewrite_statements")


def rewrite_statements(
    statements: list[cst.BaseStatement], replacements: Mapping[cst.CSTNode, Replacement]
) -> list[cst.BaseStatement]:
    """Apply replacements to statements and prune the blocks they emptied (`_PruneEmptyBlocks`'s rules). Only the
    nodes on a path to a replaced one are rebuilt: every other node is returned as it is."""
    if not replacements:
        return list(statements)
    paths = paths_to_nodes(statements, replacements)
    if not paths:
        return list(statements)
    module = cst.Module(body=statements)
    return list(module.visit(_ReplaceNodesOnPaths(replacements, paths | {id(module)}, prune=True)).body)


def replace_with_origins(
    statements: Sequence[cst.BaseStatement], replacements: Mapping[cst.CSTNode, Replacement], prune: bool = False
) -> tuple[list[cst.BaseStatement], dict[cst.CSTNode, cst.CSTNode]]:
    """`statements` with nodes replaced by identity, and the origin of every node rebuilt above a replaced one
    ({new: old}): a normalization's errors then report the source lines its nodes came from.

        replace_with_origins([if_statement], {if_statement.test: cst.Name("do_cfg")})
        # -> ([<the `if` testing `do_cfg`>], {<new if>: if_statement, <new Name>: <the old test>})

    Nodes off the paths to a replaced node are not rebuilt (they keep their identity, and their positions). With
    `prune`, blocks the replacements emptied go (`_PruneEmptyBlocks`' rules)."""
    if not replacements:
        return list(statements), {}
    paths = paths_to_nodes(statements, replacements)
    module = cst.Module(body=list(statements))
    transformer = _ReplaceNodesOnPaths(replacements, paths | {id(module)}, prune=prune)
    return list(module.visit(transformer).body), transformer.origins


_PRUNED = (cst.If, cst.Else, cst.For, cst.With)


class _ReplaceNodesOnPaths(_ReplaceNodes):
    """`_ReplaceNodes` that descends only into the nodes on a path to one it replaces."""

    def __init__(self, replacements: Mapping[cst.CSTNode, Replacement], paths: set[int], prune: bool = False):
        super().__init__(replacements)
        self._paths = paths
        # (only a block on a path can lose statements: pruning there prunes everything a replacement emptied)
        self._prune = _PruneEmptyBlocks() if prune else None
        self.origins: dict[cst.CSTNode, cst.CSTNode] = {}

    def on_visit(self, node: cst.CSTNode) -> bool:
        return id(node) in self._paths

    def on_leave(self, original_node, updated_node):
        result = super().on_leave(original_node, updated_node)
        if self._prune is not None and isinstance(result, _PRUNED):
            result = self._prune.on_leave(original_node, result)
        if isinstance(result, cst.CSTNode) and result is not original_node and not isinstance(result, cst.Module):
            self.origins[result] = original_node
        elif isinstance(result, cst.FlattenSentinel) and updated_node is not original_node:
            # (a replacement keeping the node around new statements keeps it rebuilt: it stands for the original)
            self.origins[updated_node] = original_node
        return result
