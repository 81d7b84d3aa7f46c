"""Build generated classes from template text with placeholders, then put real statements in.

Templates are plain Python with placeholder statements, `__modularize_body__` (inside a function) and
`__modularize_members__` (inside a class body). The statements are LibCST nodes (copied from the source) and
keep their indentation, comments and multi-line strings exactly as they were; the template around them is text
nothing analyzes. So a template that is one class (every block class, the pipeline class) is not parsed:
`printed_class` prints the statements into its text and stands in for the body with one line reading the
names it reads. Any other template is parsed and the statements spliced into its tree (`splice`).
"""

from __future__ import annotations

import symtable
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import libcst as cst

from ..frontend.parse import code_indented
from .validate import GeneratedCodeError, global_reads

BODY = "__modularize_body__"
MEMBERS = "__modularize_members__"


def splice(template: str, fills: Mapping[str, Sequence[cst.BaseStatement]]) -> list[cst.BaseStatement]:
    """Parse `template` and replace each placeholder statement with its statements."""
    module = cst.parse_module(template)
    body, _ = _filled_block(module.body, fills)
    return body


# Placeholders are statements, so only statement blocks are searched: down through compound statements, never
# into expressions. A LibCST transformer would rebuild every node of the template on the way (its declarations
# of inputs and outputs are most of a generated file's nodes); this rebuilds only the blocks that hold a placeholder.
_BLOCK_FIELDS = ("body", "orelse", "handlers", "finalbody")


def _filled_block(
    statements: Sequence[cst.BaseStatement], fills: Mapping[str, Sequence[cst.BaseStatement]]
) -> tuple[list[cst.BaseStatement], bool]:
    result: list[cst.BaseStatement] = []
    changed = False
    for statement in statements:
        name = _placeholder(statement)
        if name is not None and name in fills:
            result += fills[name]
            changed = True
            continue
        filled = _filled(statement, fills)
        changed = changed or filled is not statement
        result.append(filled)
    return result, changed


def _filled(node: cst.CSTNode, fills: Mapping[str, Sequence[cst.BaseStatement]]) -> cst.CSTNode:
    """`node` with the placeholders in the statement blocks below it filled; `node` itself when it holds none."""
    if isinstance(node, cst.IndentedBlock):
        body, changed = _filled_block(node.body, fills)
        return node.with_changes(body=body) if changed else node
    if isinstance(node, cst.SimpleStatementLine) or not isinstance(node, cst.CSTNode):
        return node
    changes = {}
    for name in _BLOCK_FIELDS:
        value = getattr(node, name, None)
        if isinstance(value, cst.CSTNode):
            filled = _filled(value, fills)
            if filled is not value:
                changes[name] = filled
        elif name == "handlers" and value:
            handlers = tuple(_filled(handler, fills) for handler in value)
            if any(new is not old for new, old in zip(handlers, value, strict=True)):
                changes[name] = handlers
    return node.with_changes(**changes) if changes else node


def _placeholder(statement: cst.BaseStatement) -> str | None:
    """The name of a placeholder statement (a line holding one bare name), None for any other statement."""
    if isinstance(statement, cst.SimpleStatementLine) and len(statement.body) == 1:
        expression = statement.body[0]
        if isinstance(expression, cst.Expr) and isinstance(expression.value, cst.Name):
            return expression.value.value
    return None


def statement(text: str) -> cst.BaseStatement:
    return cst.parse_statement(text if text.endswith("\n") else text + "\n")


@dataclass(frozen=True)
class Emitted:
    """Generated statements, and the text of the class bodies among them (see `printed_class`): a class's
    statement holds, in its body's place, a one-line stand-in reading the names its body reads (what the module's
    imports are computed from), and the module's printed text gets the body back (`with_bodies`)."""

    statements: list[cst.BaseStatement]
    bodies: dict[str, str] = field(default_factory=dict)  # stand-in line -> the body's lines


# ends a stand-in line, with the class it stands in for (unique in a generated module)
BODY_MARKER = "# modularize: body of"


def printed_class(template: str, fills: Mapping[str, Sequence[cst.BaseStatement]]) -> Emitted:
    """`splice(template, fills)` for a template that is one class, without parsing it: the statements are printed
    into the template's text where their placeholders are, and the class is a statement whose body stands in for
    that text. A generated class is mostly template (its declarations), which LibCST would parse only to print it
    again unchanged; the standard library's symbol table (C) reads the names it needs.

        class Step(ModularPipelineBlocks):                  class Step(ModularPipelineBlocks):
            ...                                     ->          InputParam, torch, ...  # modularize: body of Step
            def __call__(self, components, state):
                __modularize_body__                       with the body's text, `latents = ...` printed in it

    A template that is not one class with a plain header goes through `splice`.
    """
    header, _, body = template.partition("\n")
    name, bases = _class_header(header)
    if name is None or any(line[:1] not in ("", " ") for line in body.splitlines()):
        return Emitted(splice(template, fills))
    text = _filled_text(body, fills)
    if text is None:
        return Emitted(splice(template, fills))
    stand_in = cst.SimpleStatementLine(
        [cst.Expr(_names_tuple(_names_read(f"{header}\n{text}")))],
        trailing_whitespace=cst.TrailingWhitespace(
            whitespace=cst.SimpleWhitespace("  "), comment=cst.Comment(f"{BODY_MARKER} {name}")
        ),
    )
    arguments = [cst.Arg(cst.Name(base), comma=_COMMA) for base in bases[:-1]]
    arguments += [cst.Arg(cst.Name(base)) for base in bases[-1:]]
    statement = cst.ClassDef(name=cst.Name(name), bases=arguments, body=cst.IndentedBlock([stand_in]))
    return Emitted([statement], {code_indented([stand_in], _EMPTY.default_indent): text})


def with_bodies(text: str, bodies: Mapping[str, str]) -> str:
    """Printed code with each stand-in line replaced by its class body's lines."""
    for stand_in, body in bodies.items():
        if text.count(stand_in) != 1:
            raise ValueError(f"a class body's stand-in is not printed once: {stand_in.strip()!r}")
        text = text.replace(stand_in, body)
    return text


_EMPTY = cst.Module(body=[])
_COMMA = cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))


def _class_header(header: str) -> tuple[str | None, list[str]]:
    """`class Name(A, B):` -> ("Name", ["A", "B"]), `class Name:` -> ("Name", []); (None, []) for any other line."""
    if not (header.startswith("class ") and header.endswith(":")):
        return None, []
    name, parenthesized, bases = header[len("class ") : -len(":")].partition("(")
    if parenthesized:
        if not bases.endswith(")") or not bases[:-1]:
            return None, []
        bases = bases[:-1]
    names = bases.split(", ") if bases else []
    if not name.isidentifier() or not all(base.isidentifier() for base in names):
        return None, []
    return name, names


def _filled_text(body: str, fills: Mapping[str, Sequence[cst.BaseStatement]]) -> str | None:
    """The template's body with each placeholder line replaced by its statements printed at its indentation,
    the blank lines above it dropped as LibCST drops a statement's leading lines with it (`pass` where a block
    would be left empty); None where that reading may not be LibCST's (a comment right above a placeholder)."""
    lines = body.splitlines(keepends=True)
    out: list[str] = []
    for index, line in enumerate(lines):
        name = line.strip()
        if name not in fills:
            out.append(line)
            continue
        while out and not out[-1].strip():
            out.pop()
        if out and out[-1].lstrip().startswith("#"):
            return None
        indent = line[: len(line) - len(line.lstrip())]
        printed = code_indented(fills[name], indent)
        if not printed and _alone_in_block(out, lines[index + 1 :], indent):
            printed = f"{indent}pass\n"
        out.append(printed)
    return "".join(out)


def _alone_in_block(before: list[str], after: list[str], indent: str) -> bool:
    """Whether a line at `indent` between those lines is the only statement of its block."""
    above = next((line for line in reversed(before) if line.strip()), "")
    below = next((line for line in after if line.strip()), "")
    opens_block = above.rstrip().endswith(":") and not above.startswith(indent)
    return opens_block and not below.startswith(indent)


def _names_read(text: str) -> list[str]:
    """The names a class (its bases, its body, its methods) reads from the module's scope, sorted."""
    try:
        table = symtable.symtable(text, "<generated class>", "exec")
    except SyntaxError as error:
        raise GeneratedCodeError(f"a generated class does not compile: {error} (a converter bug)") from None
    return sorted({name for _, name in global_reads(table)})


def _names_tuple(names: Sequence[str]) -> cst.BaseExpression:
    """`a, b, c` (`...` for no name): a statement reading those names."""
    if not names:
        return cst.Ellipsis()
    elements = [cst.Element(cst.Name(name), comma=_COMMA) for name in names[:-1]]
    elements.append(cst.Element(cst.Name(names[-1])))
    return cst.Tuple(elements, lpar=[], rpar=[])
