"""Read-only walks over LibCST trees, at a fraction of the cost of LibCST's own.

LibCST's visitors, and `matchers.findall` built on them, go through `_visit_and_replace_children` at every node:
they rebuild their way down the tree even when nothing is replaced. Walking the nodes' own fields reaches the same
nodes in the same (pre-)order about three times faster, and the analysis does little else than look for things:

    findall(function.body, m.Assign(targets=[m.AssignTarget(m.Attribute(value=m.Name("self")))]))
    # -> the same list, in the same order, as `libcst.matchers.findall` with that matcher
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import operator
from bisect import bisect_left
from collections.abc import Callable, Collection, Hashable, Iterator, Sequence

import libcst as cst
import libcst.matchers as m

from .match_filter import necessary_condition

# Node classes whose dataclass fields are not in source order: these fields first, in this order (whitespace and
# punctuation fields follow the significant ones in every class; nothing here depends on their order)
_SOURCE_ORDER: dict[type, tuple[str, ...]] = {
    cst.Arg: ("star", "keyword", "value"),
    cst.IfExp: ("body", "test", "orelse"),
    cst.FunctionDef: ("decorators", "asynchronous", "name", "type_parameters", "params", "returns", "body"),
    cst.ClassDef: ("decorators", "name", "type_parameters", "bases", "keywords", "body"),
    cst.ExceptHandler: ("type", "name", "body"),
    cst.Parameters: ("posonly_params", "posonly_ind", "params", "star_arg", "kwonly_params", "star_kwarg"),
}
_FIELDS: dict[type, tuple[str, ...]] = {}
# per node class, one C call returning its fields' values in the order above
_GETTERS: dict[type, Callable[[cst.CSTNode], tuple]] = {}
# per value type: 1 a node, 2 a sequence (of nodes), 0 anything else. `isinstance(value, cst.CSTNode)` goes through
# `ABCMeta.__instancecheck__` (a Python call) for every field of every node; a dict lookup by type does not.
_KINDS: dict[type, int] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    names = _FIELDS.get(cls)
    if names is None:
        first = _SOURCE_ORDER.get(cls, ())
        names = _FIELDS[cls] = first + tuple(f.name for f in dataclasses.fields(cls) if f.name not in first)
    return names


def _getter(cls: type) -> Callable[[cst.CSTNode], tuple]:
    names = _field_names(cls)
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
    kind = _KINDS[cls] = 1 if issubclass(cls, cst.CSTNode) else 2 if issubclass(cls, (tuple, list)) else 0
    return kind


# While `remembered_children` is active: per kind of fact ("children", ...), id(node) -> (node, the fact). LibCST
# trees are immutable, so a fact about a node never changes; the node is kept with it so that its id cannot be
# reused by another node meanwhile.
_REMEMBERED: dict[str, dict[int, tuple[cst.CSTNode, object]]] | None = None


@contextlib.contextmanager
def remembered_children() -> Iterator[None]:
    """Within it, each node's children (and other facts asked through `remembered`) are computed once: analysis
    walks the same statements many times (one conversion walks the SD pipeline's `__call__` ~170 times).
    Forgotten on exit, so memory stays per conversion."""
    global _REMEMBERED
    outer = _REMEMBERED
    if outer is None:
        _REMEMBERED = {"children": {}, "places": {}}
    try:
        yield
    finally:
        _REMEMBERED = outer


def remembered(kind: str, node: cst.CSTNode, compute: Callable[[cst.CSTNode], object]) -> object:
    """`compute(node)`, computed once per node within `remembered_children` (every time outside it)."""
    memory = _REMEMBERED
    if memory is None:
        return compute(node)
    table = memory.setdefault(kind, {})
    hit = table.get(id(node))
    if hit is not None and hit[0] is node:
        return hit[1]
    value = compute(node)
    table[id(node)] = (node, value)
    return value


def remembered_value(kind: str, key: Hashable, compute: Callable[[], object]) -> object:
    """`compute()`, computed once per key within `remembered_children` (every time outside it): for facts keyed
    by something else than a node (another module's parse, by its path and text)."""
    memory = _REMEMBERED
    if memory is None:
        return compute()
    table = memory.setdefault(kind, {})
    if key not in table:
        table[key] = compute()
    return table[key]


def children(node: cst.CSTNode) -> list[cst.CSTNode]:
    """`node.children` without LibCST's visit: the significant ones in source order."""
    memory = _REMEMBERED
    if memory is None:
        return _children(node)
    table = memory["children"]
    hit = table.get(id(node))
    if hit is not None and hit[0] is node:
        return hit[1]
    found = _children(node)
    table[id(node)] = (node, found)
    return found


def _children(node: cst.CSTNode) -> list[cst.CSTNode]:
    found: list[cst.CSTNode] = []
    kinds = _KINDS
    for value in (_GETTERS.get(type(node)) or _getter(type(node)))(node):
        kind = kinds.get(type(value))
        if kind is None:
            kind = _kind(type(value))
        if kind == 1:
            found.append(value)
        elif kind == 2:
            for item in value:
                item_kind = kinds.get(type(item))
                if item_kind is None:
                    item_kind = _kind(type(item))
                if item_kind == 1:
                    found.append(item)
    return found


def walk(node: cst.CSTNode, skip: Callable[[cst.CSTNode], bool] | None = None) -> Iterator[cst.CSTNode]:
    """`node` and every node below it, parents before children, children in source order; a node `skip` is true
    for is left out with everything below it."""
    if _REMEMBERED is None:
        return _walked(node, skip)
    preorder, start = _placed(node)
    nodes, end = preorder.nodes, preorder.ends[start]
    if skip is None:
        return iter(nodes[start:end])
    return _walked_in(preorder, start, end, skip)


def _walked(node: cst.CSTNode, skip: Callable[[cst.CSTNode], bool] | None) -> Iterator[cst.CSTNode]:
    stack = [node]
    while stack:
        current = stack.pop()
        if skip is not None and skip(current):
            continue
        yield current
        stack.extend(reversed(children(current)))


def _walked_in(
    preorder: _Preorder, start: int, end: int, skip: Callable[[cst.CSTNode], bool]
) -> Iterator[cst.CSTNode]:
    nodes, ends = preorder.nodes, preorder.ends
    index = start
    while index < end:
        current = nodes[index]
        if skip(current):
            index = ends[index]  # past everything below it
            continue
        yield current
        index += 1


class _Preorder:
    """Every node of one subtree in walk order, and where each node's own subtree ends in that order: the subtree
    of `nodes[i]` is `nodes[i:ends[i]]`. A LibCST node's subtree is the same in every tree that shares the node,
    so one listing answers walks, searches and paths below any node in it.

        nodes = [If, Comparison, Name(a), ..., IndentedBlock, ...]     ends = [len(nodes), 5, 3, ...]
    """

    __slots__ = ("nodes", "ends", "parents", "index", "_by_class")

    def __init__(self, root: cst.CSTNode):
        nodes: list[cst.CSTNode] = []
        ends: list[int] = []
        parents: list[int] = []  # the index of each node's parent (-1 for the root)
        _list_below(root, nodes, ends, parents, -1)
        self.nodes, self.ends, self.parents = nodes, ends, parents
        self.index: dict[int, int] = dict(zip(map(id, nodes), range(len(nodes)), strict=True))
        self._by_class: dict[type, list[int]] | None = None

    def by_class(self) -> dict[type, list[int]]:
        """Per node class, the indexes of its nodes, ascending."""
        if self._by_class is None:
            self._by_class = {}
            for index, node in enumerate(self.nodes):
                listed = self._by_class.get(type(node))
                if listed is None:
                    self._by_class[type(node)] = [index]
                else:
                    listed.append(index)
        return self._by_class


def remember_tree(node: cst.CSTNode) -> None:
    """Within `remembered_children`, list every node of `node` at once: walks, searches and paths below any of
    them are then slices of that one listing, not walks of their own (analysis searches one method's statements
    after another, each a subtree of the module's)."""
    if _REMEMBERED is not None:
        _placed(node)


def _list_below(node: cst.CSTNode, nodes: list[cst.CSTNode], ends: list[int], parents: list[int], parent: int) -> None:
    """`node` and the nodes below it appended in walk order, with where each one's subtree ends: `_children`
    inlined, and nothing remembered per node (a listed node's children are a slice of the listing)."""
    # (a module-level function: a nested one calling itself would be a reference cycle holding the whole listing
    # until the cyclic collector ran; recursion is bounded: `frontend.nesting` bounds every tree's depth)
    index = len(nodes)
    nodes.append(node)
    ends.append(0)
    parents.append(parent)
    kinds = _KINDS
    for value in (_GETTERS.get(type(node)) or _getter(type(node)))(node):
        kind = kinds.get(type(value))
        if kind is None:
            kind = _kind(type(value))
        if kind == 1:
            _list_below(value, nodes, ends, parents, index)
        elif kind == 2:
            for item in value:
                item_kind = kinds.get(type(item))
                if item_kind is None:
                    item_kind = _kind(type(item))
                if item_kind == 1:
                    _list_below(item, nodes, ends, parents, index)
    ends[index] = len(nodes)


def _placed(node: cst.CSTNode) -> tuple[_Preorder, int]:
    """The listing holding `node`'s subtree and its index there, listing it (and placing every node below it) the
    first time (only while `remembered_children` is active)."""
    places = _REMEMBERED["places"]
    key = id(node)
    preorder = places.get(key)
    if preorder is not None:
        index = preorder.index[key]
        if preorder.nodes[index] is node:
            return preorder, index
    preorder = _Preorder(node)
    places.update(dict.fromkeys(preorder.index, preorder))
    return preorder, 0


def visit_read_only(node: cst.CSTNode, visitor: cst.CSTVisitor) -> None:
    """`node.visit(visitor)` for a visitor that only looks: the same `on_visit` / `on_leave` calls, parents before
    children and significant children in source order, without LibCST building a new copy of every node it
    passes (its `visit` rebuilds the tree even for a `CSTVisitor`, and throws the copy away)."""
    if visitor.on_visit(node):
        for child in children(node):
            visit_read_only(child, visitor)
    visitor.on_leave(node)


def findall(node: cst.CSTNode, matcher: m.BaseMatcherNode) -> list[cst.CSTNode]:
    """Every node below (and including) `node` that `matcher` matches, as `libcst.matchers.findall` finds them."""
    # a node matcher (`m.Call(...)`) only matches its own node class, `m.If() | m.IfExp()` one of theirs: test the
    # class (exactly: LibCST's node classes are final) before the matcher
    classes = _matched_classes(matcher)
    # (LibCST's `matches` is asked only about the nodes that pass a cheap necessary condition, and not at all where
    # that condition is the whole matcher: `match_filter`)
    condition, exact = necessary_condition(matcher)
    if condition is None:
        condition = _anything
    test = condition if exact else (lambda found: condition(found) and m.matches(found, matcher))
    if classes is None:
        return [found for found in walk(node) if test(found)]
    if _REMEMBERED is None:
        return [found for found in walk(node) if type(found) in classes and test(found)]
    # analysis searches the same statements again and again (for calls, for assignments, ...): the nodes of each
    # class are listed once per listing, and those below `node` are a slice of them
    preorder, start = _placed(node)
    end, nodes, by_class = preorder.ends[start], preorder.nodes, preorder.by_class()
    found = []
    for cls in classes:
        indexes = by_class.get(cls)
        if indexes:
            found += indexes[bisect_left(indexes, start) : bisect_left(indexes, end)]
    if len(classes) > 1:
        found.sort()
    return [nodes[index] for index in found if test(nodes[index])]


def _anything(node: object) -> bool:
    return True


def _matched_classes(matcher: m.BaseMatcherNode) -> frozenset[type] | None:
    """The node classes `matcher` can match, None when it is not a node matcher or a `OneOf` of them."""
    if isinstance(matcher, m.OneOf):
        options = [_matched_classes(option) for option in matcher.options]
        return None if any(option is None for option in options) else frozenset().union(*options)
    return _classes_of_matcher_class(type(matcher))


@functools.cache
def _classes_of_matcher_class(matcher_class: type) -> frozenset[type] | None:
    node_class = getattr(cst, matcher_class.__name__, None)
    if not (isinstance(node_class, type) and issubclass(node_class, cst.CSTNode)):
        return None
    final = [c for c in _with_subclasses(node_class) if not c.__subclasses__()]
    return frozenset(final)


def _with_subclasses(cls: type) -> list[type]:
    return [cls, *(sub for direct in cls.__subclasses__() for sub in _with_subclasses(direct))]


def names_in(node: cst.CSTNode) -> set[str]:
    """Every name spelled anywhere below `node` (loads, stores, attribute and keyword names alike)."""
    return {found.value for found in walk(node) if type(found) is cst.Name}


def paths_to(
    statements: Sequence[cst.CSTNode], is_target: Callable[[cst.CSTNode], bool], among: type | None = None
) -> set[int]:
    """Ids of the nodes in `statements` that `is_target` is true for and of every node above them: where a
    transformer that changes only those nodes must descend (it can leave every other subtree as it is). With
    `among`, only nodes of that class can be targets (they are then looked up by class, not walked to)."""
    test = is_target if among is None else (lambda node: type(node) is among and is_target(node))
    if _REMEMBERED is None:
        return _paths_walking(statements, test)
    found: set[int] = set()
    for statement in statements:
        preorder, start = _placed(statement)
        end = preorder.ends[start]
        if among is None or len(preorder.index) != len(preorder.nodes):  # (a node listed twice: walk)
            found |= _paths_in_listing(preorder, start, end, test)
            continue
        indexes = preorder.by_class().get(among, ())
        nodes = preorder.nodes
        for index in indexes[bisect_left(indexes, start) : bisect_left(indexes, end)]:
            if is_target(nodes[index]):
                found |= _path_up(preorder, index, start)
    return found


def paths_to_nodes(statements: Sequence[cst.CSTNode], targets: Collection[cst.CSTNode]) -> set[int]:
    """`paths_to(statements, lambda node: node in targets)`, by identity: from each target up to its statement."""
    ids = {id(target) for target in targets}
    if _REMEMBERED is None:
        return _paths_walking(statements, lambda node: id(node) in ids)
    found: set[int] = set()
    for statement in statements:
        preorder, start = _placed(statement)
        end = preorder.ends[start]
        if len(preorder.index) != len(preorder.nodes):  # (a node listed twice: walk)
            found |= _paths_in_listing(preorder, start, end, lambda node: id(node) in ids)
            continue
        for target in ids:
            index = preorder.index.get(target)
            if index is not None and start <= index < end:
                found |= _path_up(preorder, index, start)
    return found


def _path_up(preorder: _Preorder, index: int, start: int) -> set[int]:
    """Ids of a listed node and the nodes above it, up to the one at `start`."""
    nodes, parents = preorder.nodes, preorder.parents
    path = set()
    while index >= start:
        path.add(id(nodes[index]))
        index = parents[index]
    return path


def _paths_in_listing(preorder: _Preorder, start: int, end: int, is_target: Callable[[cst.CSTNode], bool]) -> set[int]:
    found: set[int] = set()
    nodes, ends = preorder.nodes, preorder.ends
    above: list[int] = []  # indexes of the nodes above the current one, within the statement
    for index in range(start, end):
        while above and ends[above[-1]] <= index:
            above.pop()
        above.append(index)
        if is_target(nodes[index]):
            found.update(id(nodes[i]) for i in above)
    return found


def _paths_walking(statements: Sequence[cst.CSTNode], is_target: Callable[[cst.CSTNode], bool]) -> set[int]:
    found: set[int] = set()
    path: list[int] = []
    stack = [(statement, 0) for statement in reversed(statements)]
    while stack:
        node, depth = stack.pop()
        del path[depth:]
        path.append(id(node))
        if is_target(node):
            found.update(path)
        stack.extend((child, depth + 1) for child in reversed(children(node)))
    return found
