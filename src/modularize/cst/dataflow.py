"""Per-statement def-use analysis of local names.

A block's inputs are the names its statements read before writing them; its outputs are the names it writes that
a later block reads. LibCST's scope analysis is too coarse for that (one function scope, `latents` assigned eight
times), so this walks statements in execution order and tracks which names are *definitely* bound on every path.

    >>> flow = flow_of(parse_statements("if x:\\n    y = 1\\nz = y + w\\n"))
    >>> flow.reads, flow.writes, sorted(flow.definite)
    (('x', 'y', 'w'), ('y', 'z'), ['z'])

`y` is read although it was written: the write is conditional, so the incoming value may still be the one read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import libcst as cst

from .tree_walk import children, walk

_CONSTANTS = frozenset({"None", "True", "False"})  # LibCST spells these as names

# Node classes that never hold a name, whatever is below them (whitespace, comments, brackets, operators,
# literals): the walks below skip them. They are checked by exact type, as is every dispatch here: LibCST's node
# classes are final, and `isinstance` against them is a Python-level `ABCMeta.__instancecheck__` call per node.
_NAMELESS_BASES = (
    cst.BaseParenthesizableWhitespace,
    cst.TrailingWhitespace,
    cst.EmptyLine,
    cst.Newline,
    cst.Comment,
    cst.LeftParen,
    cst.RightParen,
    cst.LeftSquareBracket,
    cst.RightSquareBracket,
    cst.LeftCurlyBrace,
    cst.RightCurlyBrace,
    cst.Comma,
    cst.Dot,
    cst.Colon,
    cst.Semicolon,
    cst.AssignEqual,
    cst.BaseBinaryOp,
    cst.BaseBooleanOp,
    cst.BaseCompOp,
    cst.BaseUnaryOp,
    cst.BaseAugOp,
    cst.ImportStar,
    cst.SimpleString,
    cst.Integer,
    cst.Float,
    cst.Imaginary,
    cst.Ellipsis,
)
_NAMELESS = frozenset(
    value
    for value in vars(cst).values()
    if isinstance(value, type) and issubclass(value, _NAMELESS_BASES) and not value.__subclasses__()
)
_NESTED_SCOPES = frozenset({cst.Lambda, cst.ListComp, cst.SetComp, cst.GeneratorExp, cst.DictComp})


@dataclass(frozen=True)
class Flow:
    reads: tuple[str, ...]  # read before being definitely written, in first-read order
    writes: tuple[str, ...]  # possibly written, in first-write order
    definite: frozenset[str]  # written on every path that completes normally


def parse_statements(text: str) -> list[cst.BaseStatement]:
    return list(cst.parse_module(text).body)


def flow_of(statements: Sequence[cst.BaseStatement], bound: Iterable[str] = ()) -> Flow:
    """Def-use summary of a statement sequence; `bound` names count as already defined."""
    walker = _FlowWalker()
    defined, _ = walker.block(statements, frozenset(bound))
    return Flow(tuple(walker.reads), tuple(walker.writes), frozenset(defined) - frozenset(bound))


def names_read(node: cst.CSTNode) -> list[str]:
    """Every free name an expression or statement reads, in order (bindings inside it are not subtracted)."""
    walker = _FlowWalker()
    walker.expression_or_statement(node, frozenset())
    return list(walker.all_reads)


class _FlowWalker:
    def __init__(self) -> None:
        self.reads: dict[str, None] = {}
        self.writes: dict[str, None] = {}
        self.all_reads: dict[str, None] = {}

    # -- bookkeeping -------------------------------------------------------------------------------------------
    def _read(self, name: str, defined: frozenset[str]) -> None:
        if name in _CONSTANTS:
            return
        self.all_reads.setdefault(name, None)
        if name not in defined:
            self.reads.setdefault(name, None)

    def _write(self, name: str) -> None:
        self.writes.setdefault(name, None)

    # -- statements --------------------------------------------------------------------------------------------
    def block(self, statements: Sequence[cst.CSTNode], defined: frozenset[str]) -> tuple[frozenset[str], bool]:
        """Returns the names defined after the block and whether every path through it leaves abruptly."""
        for position, statement in enumerate(statements):
            defined, leaves = self.statement(statement, defined)
            if leaves:
                self._unreachable(statements[position + 1 :], defined)
                return defined, True
        return defined, False

    def _unreachable(self, statements: Sequence[cst.CSTNode], defined: frozenset[str]) -> None:
        """Statements after a `continue` / `return` never run, but they are still code a block carries: what they
        read must be bound in it, so their reads count (their writes do not: no one can read them)."""
        if not statements:
            return
        walker = _FlowWalker()
        walker.block(statements, defined)
        for name in walker.all_reads:
            self.all_reads.setdefault(name, None)
        for name in walker.reads:
            self.reads.setdefault(name, None)

    def statement(self, node: cst.CSTNode, defined: frozenset[str]) -> tuple[frozenset[str], bool]:
        # by exact class (LibCST's node classes are final): `isinstance` goes through `ABCMeta` on every miss
        kind = type(node)
        if kind is cst.SimpleStatementLine:
            return self.block(node.body, defined)
        if kind is cst.IndentedBlock:
            return self.block(node.body, defined)
        if kind is cst.Assign:
            self.expr(node.value, defined)
            for target in node.targets:
                defined = self.target(target.target, defined)
            return defined, False
        if kind is cst.AnnAssign:
            if node.value is not None:
                self.expr(node.value, defined)
                defined = self.target(node.target, defined)
            return defined, False
        if kind is cst.AugAssign:
            self.expr(node.value, defined)
            self.expr(node.target, defined)
            return self.target(node.target, defined), False
        if kind in (cst.Expr, cst.Assert):
            for child in children(node):
                self.expr(child, defined)
            return defined, False
        if kind in (cst.Return, cst.Raise):
            for child in children(node):
                self.expr(child, defined)
            return defined, True
        if kind in (cst.Continue, cst.Break):
            return defined, True
        if kind is cst.Del:
            self.expr(node.target, defined)
            return defined, False
        if kind in (cst.Import, cst.ImportFrom):
            names = node.names if isinstance(node.names, Sequence) else ()
            for alias in names:
                bound = alias.asname.name if alias.asname else alias.name
                if isinstance(bound, cst.Name):
                    self._write(bound.value)
                    defined = defined | {bound.value}
                elif isinstance(bound, cst.Attribute):
                    root = bound
                    while isinstance(root, cst.Attribute):
                        root = root.value
                    if isinstance(root, cst.Name):
                        self._write(root.value)
                        defined = defined | {root.value}
            return defined, False
        if kind is cst.If:
            return self.branch(node, defined)
        if kind is cst.For:
            self.expr(node.iter, defined)
            inner = self.target(node.target, defined)
            self.block(node.body.body, inner)
            if node.orelse is not None:
                self.block(node.orelse.body.body, defined)
            return defined, False  # the loop may not run: nothing in it is definite
        if kind is cst.While:
            self.expr(node.test, defined)
            self.block(node.body.body, defined)
            return defined, False
        if kind is cst.With:
            for item in node.items:
                self.expr(item.item, defined)
                if item.asname is not None:
                    defined = self.target(item.asname.name, defined)
            return self.block(node.body.body, defined)
        if kind is cst.Try:
            self.block(node.body.body, defined)
            for handler in node.handlers:
                inner = defined
                if handler.name is not None:
                    inner = self.target(handler.name.name, inner)
                self.block(handler.body.body, inner)
            if node.orelse is not None:
                self.block(node.orelse.body.body, defined)
            if node.finalbody is not None:
                defined, _ = self.block(node.finalbody.body.body, defined)
            return defined, False
        if kind in (cst.FunctionDef, cst.ClassDef):
            for decorator in node.decorators:
                self.expr(decorator.decorator, defined)
            self.scoped(node, defined)
            self._write(node.name.value)
            return defined | {node.name.value}, False
        # pass, global, nonlocal, ...: no names flow
        return defined, False

    def branch(self, node: cst.If, defined: frozenset[str]) -> tuple[frozenset[str], bool]:
        self.expr(node.test, defined)
        then_defined, then_leaves = self.block(node.body.body, defined)
        orelse = node.orelse
        if orelse is None:
            else_defined, else_leaves = defined, False
        elif isinstance(orelse, cst.If):
            else_defined, else_leaves = self.branch(orelse, defined)
        else:
            else_defined, else_leaves = self.block(orelse.body.body, defined)
        if then_leaves and else_leaves:
            return defined, True
        if then_leaves:
            return else_defined, False
        if else_leaves:
            return then_defined, False
        return then_defined & else_defined, False

    def target(self, node: cst.CSTNode, defined: frozenset[str]) -> frozenset[str]:
        if isinstance(node, cst.Name):
            self._write(node.value)
            return defined | {node.value}
        if isinstance(node, (cst.Tuple, cst.List)):
            for element in node.elements:
                defined = self.target(element.value, defined)
            return defined
        if isinstance(node, cst.StarredElement):
            return self.target(node.value, defined)
        # `obj.attr = ...` and `obj[key] = ...` read `obj` (and `key`), they bind nothing
        self.expr(node, defined)
        return defined

    # -- expressions -------------------------------------------------------------------------------------------
    def expression_or_statement(self, node: cst.CSTNode, defined: frozenset[str]) -> None:
        if isinstance(node, cst.BaseExpression):
            self.expr(node, defined)
        else:
            self.statement(node, defined)

    def expr(self, node: cst.CSTNode, defined: frozenset[str]) -> None:
        kind = type(node)
        if kind is cst.Name:
            self._read(node.value, defined)
        elif kind is cst.Attribute or kind is cst.Arg:
            self.expr(node.value, defined)
        elif kind in _NESTED_SCOPES:
            self.scoped(node, defined)
        elif kind not in _NAMELESS:
            for child in children(node):
                self.expr(child, defined)

    def scoped(self, node: cst.CSTNode, defined: frozenset[str]) -> None:
        """Free names of a nested scope (lambda, comprehension, nested def) are reads of the enclosing one."""
        local = _NestedScopeReads()
        local.visit(node)
        for name in local.free():
            self._read(name, defined)


class _NestedScopeReads:
    """Loads inside a nested scope minus the names that scope binds itself.

    Each function is its own scope; a class body's names are not visible in its methods, so what a method reads
    freely passes the class by (`latent_channels` assigned in one method is not defined in another).
    """

    def __init__(self, is_class: bool = False) -> None:
        self.loads: dict[str, None] = {}
        self.bound: set[str] = set()
        self.is_class = is_class
        self.escaped: dict[str, None] = {}  # free names of a class's methods: not resolved by the class body

    def visit(self, node: cst.CSTNode) -> None:
        """As a LibCST visitor would (a `visit_<Class>` returning False skips the node's children), without its
        rebuilding traversal."""
        kind = type(node)
        if kind in _NAMELESS:
            return
        handler = _HANDLERS.get(kind)
        if handler is None:
            handler = _HANDLERS[kind] = getattr(_NestedScopeReads, f"visit_{kind.__name__}", _no_handler)
        if handler(self, node) is False:
            return
        for child in children(node):
            self.visit(child)

    def free(self) -> list[str]:
        names = [name for name in self.loads if name not in self.bound]
        return names + [name for name in self.escaped if name not in names]

    def visit_Param(self, node: cst.Param) -> bool:
        self.bound.add(node.name.value)
        if node.default is not None:
            self.visit(node.default)
        if node.annotation is not None:
            self.visit(node.annotation)
        return False

    def visit_CompFor(self, node: cst.CompFor) -> bool:
        self._bind(node.target)
        self.visit(node.iter)
        for condition in node.ifs:
            self.visit(condition)
        if node.inner_for_in is not None:
            self.visit(node.inner_for_in)
        return False

    def visit_Assign(self, node: cst.Assign) -> bool:
        for target in node.targets:
            self._bind(target.target)
        self.visit(node.value)
        return False

    def visit_Attribute(self, node: cst.Attribute) -> bool:
        self.visit(node.value)
        return False

    def visit_Arg(self, node: cst.Arg) -> bool:
        self.visit(node.value)
        return False

    def visit_Name(self, node: cst.Name) -> bool:
        if node.value not in _CONSTANTS:
            self.loads.setdefault(node.value, None)
        return False

    def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
        self.bound.add(node.name.value)
        for decorator in node.decorators:
            self.visit(decorator)
        if node.returns is not None:  # evaluated where the function is defined, like its decorators
            self.visit(node.returns)
        scope = _NestedScopeReads()
        scope.visit(node.params)
        scope.visit(node.body)
        target = self.escaped if self.is_class else self.loads
        for name in scope.free():
            target.setdefault(name, None)
        return False

    def visit_ClassDef(self, node: cst.ClassDef) -> bool:
        self.bound.add(node.name.value)
        for part in (*node.bases, *node.keywords, *node.decorators):
            self.visit(part)
        scope = _NestedScopeReads(is_class=True)
        scope.visit(node.body)
        for name in scope.free():
            self.loads.setdefault(name, None)
        return False

    def visit_For(self, node: cst.For) -> bool:
        self._bind(node.target)
        return True

    def visit_AsName(self, node: cst.AsName) -> bool:
        self._bind(node.name)
        return False

    def visit_AugAssign(self, node: cst.AugAssign) -> bool:
        self._bind(node.target)
        return True

    def visit_AnnAssign(self, node: cst.AnnAssign) -> bool:
        self._bind(node.target)
        if node.value is not None:
            self.visit(node.value)
        self.visit(node.annotation)
        return False

    def visit_NamedExpr(self, node: cst.NamedExpr) -> bool:
        self._bind(node.target)
        return True

    def visit_Import(self, node: cst.Import) -> bool:
        for alias in node.names:
            self._bind_alias(alias)
        return False

    def visit_ImportFrom(self, node: cst.ImportFrom) -> bool:
        if not isinstance(node.names, cst.ImportStar):
            for alias in node.names:
                self._bind_alias(alias)
        return False

    def _bind_alias(self, alias: cst.ImportAlias) -> None:
        if alias.asname is not None:
            self._bind(alias.asname.name)
            return
        root = alias.name
        while isinstance(root, cst.Attribute):
            root = root.value
        self._bind(root)

    def _bind(self, target: cst.CSTNode) -> None:
        if isinstance(target, cst.Name):
            self.bound.add(target.value)
        elif isinstance(target, (cst.Tuple, cst.List)):
            for element in target.elements:
                self._bind(element.value)
        elif isinstance(target, cst.StarredElement):
            self._bind(target.value)
        else:
            self.visit(target)


_HANDLERS: dict[type, Callable[[_NestedScopeReads, cst.CSTNode], bool | None]] = {}


def _no_handler(reads: _NestedScopeReads, node: cst.CSTNode) -> None:
    return None


_PURE_CALLS = frozenset({"int", "float", "bool", "len", "min", "max", "abs", "round", "tuple", "isinstance"})
# tensor methods that return a new value and change nothing, called on a local (`timesteps_cpu = timesteps.cpu()`
# left without a reader once guidance is the guider's); `.to()` and `.float()` are not among them: on a module they
# change it in place
_PURE_METHODS = frozenset({"cpu", "clone", "detach", "item", "tolist", "numpy"})


def is_plain_assignment(statement: cst.CSTNode) -> bool:
    """`name = <expression>` where the expression calls nothing but a few builtins: dropping it changes nothing
    but the name."""
    if not isinstance(statement, cst.SimpleStatementLine) or len(statement.body) != 1:
        return False
    assign = statement.body[0]
    if not isinstance(assign, cst.Assign) or len(assign.targets) != 1:
        return False
    if not isinstance(assign.targets[0].target, cst.Name):
        return False

    for node in walk(assign.value):
        if isinstance(node, cst.Call) and not _is_pure_call(node):
            return False
        if isinstance(node, (cst.Lambda, cst.Await, cst.Yield, cst.NamedExpr)):
            return False
    return True


def _is_pure_call(call: cst.Call) -> bool:
    func = call.func
    if isinstance(func, cst.Name):
        return func.value in _PURE_CALLS
    on_local = isinstance(func, cst.Attribute) and isinstance(func.value, cst.Name)
    return on_local and func.attr.value in _PURE_METHODS and not call.args


def without_dead_assignments(
    statements: Sequence[cst.BaseStatement], live_after: Iterable[str]
) -> tuple[list[cst.BaseStatement], list[cst.BaseStatement]]:
    """(the statements without plain assignments nothing reads afterwards, the ones dropped).

    After guidance moved into the guider, `has_neg_prompt = negative_prompt is not None or ...` may only have fed
    a condition that now reads the guider: a generated block would carry a dead local (and fail a linter)."""
    live = set(live_after)
    kept: list[cst.BaseStatement] = []
    dropped: list[cst.BaseStatement] = []
    for statement in reversed(statements):
        if is_plain_assignment(statement) and statement.body[0].targets[0].target.value not in live:
            dropped.append(statement)
            continue
        flow = flow_of([statement])
        live = (live - flow.definite) | set(flow.reads)
        kept.append(statement)
    return kept[::-1], dropped[::-1]
