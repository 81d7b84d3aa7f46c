"""The last pass before anything is written: every generated file must compile and define every name it reads.

    check_generated({"denoise.py": text, ...})   # raises GeneratedCodeError naming the file, line and problem

A failure here is a bug in the converter, never something the user did: the error is no `ModularizeError`, so the
command line reports it as an internal error (exit 70, traceback saved) and writes nothing.

Undefined names are found with the standard library's `symtable` (the compiler's own scope analysis, at C speed):
a name some scope reads as a global must be bound at module level, imported, or a builtin. Module-level code also
runs in order, so a name it reads must be bound by an earlier statement (function bodies run later and are exempt).
pyflakes would find the same two kinds of problem and more, but it would be the converter's third runtime
dependency for checks that fit in this file; ruff is a separate binary and not a dependency at all.
"""

from __future__ import annotations

import ast
import builtins
import symtable
from collections.abc import Iterator, Mapping

_MODULE_NAMES = frozenset(
    {"__name__", "__file__", "__doc__", "__spec__", "__loader__", "__package__", "__builtins__", "__path__"}
)
_BUILTINS = frozenset(dir(builtins)) | _MODULE_NAMES


class GeneratedCodeError(Exception):
    """Generated code that does not compile or reads undefined names: a converter bug."""


def check_generated(files: Mapping[str, str]) -> None:
    for name in sorted(files):
        if name.endswith(".py"):
            problem = file_problem(name, files[name])
            if problem:
                raise GeneratedCodeError(f"generated {problem} (a converter bug: nothing was written)")


def file_problem(name: str, text: str) -> str | None:
    """`None`, or `file:line: what is wrong` for the first problem found."""
    try:
        tree = ast.parse(text, filename=name)
        compile(tree, name, "exec", dont_inherit=True)
        table = symtable.symtable(text, name, "exec")
    except SyntaxError as error:  # IndentationError included; `continue` outside a loop is one too
        return f"{name}:{error.lineno}: {type(error).__name__}: {error.msg}"
    except (RecursionError, MemoryError) as error:
        return f"{name}: does not compile: {type(error).__name__}"
    bound = _module_bindings(table)
    for scope, symbol in _global_reads(table):
        if symbol not in bound and symbol not in _BUILTINS:
            return f"{name}:{scope.get_lineno()}: `{symbol}` is read in `{scope.get_name()}` but never defined"
    return _read_before_bound(name, tree)


def _module_bindings(table: symtable.SymbolTable) -> set[str]:
    bound = {s.get_name() for s in table.get_symbols() if s.is_assigned() or s.is_imported()}
    for child in _tables(table):  # `global x` then `x = ...` in a function binds a module name too
        bound |= {s.get_name() for s in child.get_symbols() if s.is_declared_global() and s.is_assigned()}
    return bound


def _tables(table: symtable.SymbolTable) -> Iterator[symtable.SymbolTable]:
    stack = list(table.get_children())
    while stack:
        current = stack.pop()
        yield current
        stack.extend(current.get_children())


def _global_reads(table: symtable.SymbolTable) -> Iterator[tuple[symtable.SymbolTable, str]]:
    for symbol in table.get_symbols():
        if symbol.is_referenced() and not (symbol.is_assigned() or symbol.is_imported()):
            yield table, symbol.get_name()
    for child in _tables(table):
        for symbol in child.get_symbols():
            if symbol.is_referenced() and symbol.is_global() and not symbol.is_declared_global():
                yield child, symbol.get_name()


def _read_before_bound(name: str, tree: ast.Module) -> str | None:
    """A module-level statement reading a module name that only a later statement binds (NameError on import)."""
    later = {n for statement in tree.body for n in _bound_by(statement)}
    bound: set[str] = set()
    for statement in tree.body:
        local: set[str] = set()  # a class body reads its own names first
        if isinstance(statement, ast.ClassDef):
            local = {n for item in statement.body for n in _bound_by(item)}
        for node in _executed_now(statement):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id not in local:
                if node.id in later and node.id not in bound and node.id not in _BUILTINS:
                    return f"{name}:{node.lineno}: `{node.id}` is read before the statement that defines it"
        bound |= _bound_by(statement)
    return None


def _bound_by(statement: ast.stmt) -> set[str]:
    if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {statement.name}
    if isinstance(statement, (ast.Import, ast.ImportFrom)):
        return {(a.asname or a.name).split(".")[0] for a in statement.names}
    found = set()
    for node in _executed_now(statement):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            found.add(node.id)
    return found


def _executed_now(statement: ast.stmt) -> Iterator[ast.AST]:
    """The nodes of a module-level statement that run when the module is imported (not function bodies)."""
    stack: list[ast.AST] = [statement]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            stack.extend(node.decorator_list)
            stack.extend(node.args.defaults)
            stack.extend(d for d in node.args.kw_defaults if d is not None)
            continue
        if isinstance(node, ast.Lambda):
            stack.extend(node.args.defaults)
            continue
        if isinstance(node, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            stack.append(node.generators[0].iter)  # the rest runs in the comprehension's own scope
            continue
        stack.extend(ast.iter_child_nodes(node))
