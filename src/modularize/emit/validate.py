"""The last pass before anything is written: every generated file must compile and define every name it reads.

    check_generated({"denoise.py": text, ...})   # raises GeneratedCodeError naming the file, line and problem

A failure here is a bug in the converter, never something the user did: the error is no `ModularizeError`, so the
command line reports it as an internal error (exit 70, traceback saved) and writes nothing.

Undefined names are found with the standard library's `symtable` (the compiler's own scope analysis, at C speed):
a name some scope reads as a global must be bound at module level, imported, or a builtin. Module-level code also
runs in order, so a name it reads must be bound by an earlier statement (function bodies run later and are exempt):
read off the compiled module's bytecode, which is that order. The text is compiled from source (a syntax or
compile error: `continue` outside a loop, say), never parsed into Python `ast` objects, which cost more than
compiling and checking together.
pyflakes would find the same two kinds of problem and more, but it would be the converter's third runtime
dependency for checks that fit in this file; ruff is a separate binary and not a dependency at all.
"""

from __future__ import annotations

import builtins
import dis
import inspect
import symtable
from collections.abc import Iterator, Mapping
from types import CodeType

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
        code = compile(text, name, "exec", dont_inherit=True)
        table = symtable.symtable(text, name, "exec")
    except SyntaxError as error:  # IndentationError included; `continue` outside a loop is one too
        return f"{name}:{error.lineno}: {type(error).__name__}: {error.msg}"
    except (RecursionError, MemoryError) as error:
        return f"{name}: does not compile: {type(error).__name__}"
    bound = _module_bindings(table)
    for scope, symbol in global_reads(table):
        if symbol not in bound and symbol not in _BUILTINS:
            return f"{name}:{scope.get_lineno()}: `{symbol}` is read in `{scope.get_name()}` but never defined"
    return _read_before_bound(name, code)


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


def global_reads(table: symtable.SymbolTable) -> Iterator[tuple[symtable.SymbolTable, str]]:
    """(scope, name) for each name a module's code reads from the module's scope (or the builtins)."""
    for symbol in table.get_symbols():
        if symbol.is_referenced() and not (symbol.is_assigned() or symbol.is_imported()):
            yield table, symbol.get_name()
    for child in _tables(table):
        for symbol in child.get_symbols():
            if symbol.is_referenced() and symbol.is_global() and not symbol.is_declared_global():
                yield child, symbol.get_name()


def _read_before_bound(name: str, module: CodeType) -> str | None:
    """A module-level read of a module name that only a later statement binds (NameError on import).

    What runs on import, in order, is the module's code and the bodies of the classes it defines (function bodies
    run later, comprehensions in scopes of their own): their name loads and stores, read off the compiled bytecode,
    in the order they execute. A class body reads its own names first.
    """
    later = {module.co_names[argument] for _, op, argument in _instructions(module) if op in _STORES}
    bound: set[str] = set()
    problem = _first_early_read(module, module, later, bound, frozenset())
    if problem is None:
        return None
    read, code, offset = problem
    line = next(line for start, end, line in code.co_lines() if start <= offset < end)
    return f"{name}:{line}: `{read}` is read before the statement that defines it"


def _first_early_read(
    module: CodeType, code: CodeType, later: set[str], bound: set[str], local: frozenset[str]
) -> tuple[str, CodeType, int] | None:
    """The first load in `code` (and the class bodies it runs) of a module name bound only later, with where."""
    for offset, op, argument in _instructions(code):
        if op == _LOAD_NAME:
            read = code.co_names[argument]
            if read in later and read not in bound and read not in local and read not in _BUILTINS:
                return read, code, offset
        elif op in _STORES and code is module:
            bound.add(code.co_names[argument])
        elif op == _LOAD_CONST:
            body = code.co_consts[argument]
            if isinstance(body, CodeType) and not body.co_flags & inspect.CO_OPTIMIZED:  # a class body
                own = frozenset(body.co_names[a] for _, o, a in _instructions(body) if o in _STORES)
                found = _first_early_read(module, body, later, bound, own)
                if found is not None:
                    return found
    return None


def _instructions(code: CodeType) -> Iterator[tuple[int, int, int]]:
    """(offset, opcode, argument) of each instruction: `dis.get_instructions`' values (its caches too, as opcode 0),
    at a tenth of its cost."""
    raw = code.co_code
    extended = 0
    for offset in range(0, len(raw), 2):
        op = raw[offset]
        if op == _EXTENDED_ARG:
            extended = (extended | raw[offset + 1]) << 8
            continue
        yield offset, op, extended | raw[offset + 1]
        extended = 0


_EXTENDED_ARG = dis.opmap["EXTENDED_ARG"]
_LOAD_CONST = dis.opmap["LOAD_CONST"]
# module and class-body code read names with LOAD_NAME (LOAD_GLOBAL only after a `global` in a class body)
_LOAD_NAME = dis.opmap["LOAD_NAME"]
_STORES = frozenset({dis.opmap["STORE_NAME"], dis.opmap["DELETE_NAME"], dis.opmap["STORE_GLOBAL"]})
