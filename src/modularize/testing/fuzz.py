"""A seeded mutation fuzzer over standard pipelines: the converter must convert, refuse with a location, or reject the
input as a user error, and never crash or write code that does not compile.

    variant = make_variant(corpus, seed=0, index=17)   # deterministic: the same seed and index, the same source
    outcome = run_variant(corpus, seed=0, index=17)    # converted / refused / crashed / invalid / nondeterministic

A variant is one pipeline module of the corpus with one mutation in (or around) its pipeline class's `__call__`:

    delete      a statement (a block left empty gets `pass`)
    duplicate   a statement, right after itself
    swap        a statement with the next one of its block
    rename      a local of `__call__`, everywhere `__call__` uses it
    comment     a numbered stage comment (`# 4. Prepare timesteps`) renumbered, relabelled or removed
    cat         a `torch.cat` / `torch.concat` whose operands are reordered, repeated or written out
    return      an early `return` inserted before a statement
    decorator   a decorator (`@staticmethod`, `@property`, ...) or `async` put on a method of the class
    continue    a `continue` inserted in a loop of `__call__`
    deep        an assignment of a deeply nested expression (around the nesting limit) inserted

Mutations are made on the text at positions LibCST computed once per module, so a variant costs one conversion.
"""

from __future__ import annotations

import hashlib
import random
import re
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

from ..frontend.nesting import MAX_DEPTH
from ..frontend.parse import is_pipeline_class
from ..frontend.source_file import label_of, module_name_of

KINDS = ("delete", "duplicate", "swap", "rename", "comment", "cat", "return", "decorator", "continue", "deep")
CONVERTED, REFUSED, REJECTED, CRASHED, INVALID, NONDETERMINISTIC = (
    "converted",
    "refused",
    "rejected",
    "crashed",
    "invalid",
    "nondeterministic",
)


# -- the corpus: pipeline modules and what can be mutated in them --------------------------------------------------
@dataclass
class Statement:
    start: int  # text offsets of the statement's own lines (leading comments excluded)
    end: int
    indent: str
    in_loop: bool
    only_child: bool  # the only statement of its block


@dataclass
class Target:
    """One pipeline class of one module, with the places a mutation can touch."""

    path: str
    class_name: str
    text: str
    statements: list[Statement] = field(default_factory=list)
    locals: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # name -> spans of its uses
    comments: list[tuple[int, int]] = field(default_factory=list)  # spans of numbered stage comments
    cats: list[tuple[int, int, str]] = field(default_factory=list)  # spans and text of concatenated operands
    methods: list[tuple[int, str]] = field(default_factory=list)  # offset of `def` lines, their indentation


class _Offsets:
    def __init__(self, text: str):
        self.starts = [0]
        for line in text.splitlines(keepends=True):
            self.starts.append(self.starts[-1] + len(line))

    def __call__(self, line: int, column: int) -> int:
        return self.starts[line - 1] + column


def _targets_of(path: Path) -> list[Target]:
    text = path.read_text(encoding="utf-8")
    try:
        module = cst.parse_module(text)
    except cst.ParserSyntaxError:
        return []
    wrapper = MetadataWrapper(module, unsafe_skip_copy=True)
    positions = wrapper.resolve(PositionProvider)
    offset = _Offsets(text)
    targets = []
    for node in module.body:
        if isinstance(node, cst.ClassDef) and is_pipeline_class(node):
            target = Target(str(path), node.name.value, text)
            _collect(target, node, positions, offset)
            if target.statements:
                targets.append(target)
    return targets


def _span(positions, offset: _Offsets, node: cst.CSTNode) -> tuple[int, int]:
    position = positions[node]
    return offset(position.start.line, position.start.column), offset(position.end.line, position.end.column)


def _collect(target: Target, node: cst.ClassDef, positions, offset: _Offsets) -> None:
    text = target.text
    for method in node.body.body:
        if isinstance(method, cst.FunctionDef):
            start, _ = _span(positions, offset, method)
            line_start = text.rfind("\n", 0, start) + 1
            target.methods.append((line_start, text[line_start:start]))
    call = next(s for s in node.body.body if isinstance(s, cst.FunctionDef) and s.name.value == "__call__")
    parameters = {p.name.value for p in (*call.params.params, *call.params.kwonly_params)}
    stack: list[tuple[cst.CSTNode, bool]] = [(call.body, False)]
    while stack:
        current, in_loop = stack.pop()
        if isinstance(current, cst.IndentedBlock):
            for statement in current.body:
                start, end = _span(positions, offset, statement)
                line_start = text.rfind("\n", 0, start) + 1
                end = text.find("\n", end - 1 if text[end - 1 : end] == "\n" else end)
                end = len(text) if end < 0 else end + 1
                target.statements.append(
                    Statement(line_start, end, text[line_start:start], in_loop, len(current.body) == 1)
                )
        loop = in_loop or isinstance(current, (cst.For, cst.While))
        for child in _children(current):
            stack.append((child, loop))
    _collect_names(target, call, parameters, positions, offset)
    _collect_comments(target, call, positions, offset)
    for found in _walk(call):
        if (
            isinstance(found, cst.Call)
            and isinstance(found.func, cst.Attribute)
            and isinstance(found.func.value, cst.Name)
            and found.func.value.value == "torch"
            and found.func.attr.value in ("cat", "concat")
            and found.args
        ):
            start, end = _span(positions, offset, found.args[0].value)
            target.cats.append((start, end, text[start:end]))


def _children(node: cst.CSTNode) -> list[cst.CSTNode]:
    from ..cst.tree_walk import children

    return children(node)


def _walk(node: cst.CSTNode):
    from ..cst.tree_walk import walk

    return walk(node)


def _collect_names(target: Target, call: cst.FunctionDef, parameters: set[str], positions, offset) -> None:
    """Every use of each local `__call__` assigns (not attribute names, keywords or parameters)."""
    not_variables: set[int] = set()
    assigned: set[str] = set()
    for node in _walk(call.body):
        if isinstance(node, cst.Attribute):
            not_variables.add(id(node.attr))
        elif isinstance(node, cst.Arg) and node.keyword is not None:
            not_variables.add(id(node.keyword))
        elif isinstance(node, (cst.AssignTarget, cst.For)):
            targets = node.target
            for inner in _walk(targets):
                if isinstance(inner, cst.Name):
                    assigned.add(inner.value)
    for node in _walk(call.body):
        if isinstance(node, cst.Name) and id(node) not in not_variables and node.value in assigned:
            if node.value in parameters or node.value == "self":
                continue
            target.locals.setdefault(node.value, []).append(_span(positions, offset, node))


_STAGE_COMMENT = re.compile(r"#\s*\d+[.)]?\s+\S")


def _collect_comments(target: Target, call: cst.FunctionDef, positions, offset) -> None:
    start, end = _span(positions, offset, call)
    for match in re.finditer(r"#[^\n]*", target.text[start:end]):
        if _STAGE_COMMENT.match(match.group(0)):
            target.comments.append((start + match.start(), start + match.end()))


@lru_cache(maxsize=64)
def _cached_targets(path: str) -> tuple[Target, ...]:
    return tuple(_targets_of(Path(path)))


def corpus_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("pipeline_*.py") if "__pycache__" not in p.parts)


# -- variants ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Variant:
    seed: int
    index: int
    path: str
    class_name: str
    kind: str
    description: str
    text: str


def _splice(text: str, start: int, end: int, new: str) -> str:
    return text[:start] + new + text[end:]


def _statement_text(target: Target, statement: Statement) -> str:
    return target.text[statement.start : statement.end]


def _mutate(target: Target, kind: str, rng: random.Random) -> tuple[str, str] | None:
    """(description, new text), or None when the module offers no place for this kind of mutation."""
    text = target.text
    statements = target.statements
    line = lambda offset: text.count("\n", 0, offset) + 1  # noqa: E731
    if kind == "delete":
        statement = rng.choice(statements)
        replacement = f"{statement.indent}pass\n" if statement.only_child else ""
        return f"delete line {line(statement.start)}", _splice(text, statement.start, statement.end, replacement)
    if kind == "duplicate":
        statement = rng.choice(statements)
        body = _statement_text(target, statement)
        return f"duplicate line {line(statement.start)}", _splice(text, statement.end, statement.end, body)
    if kind == "swap":
        pairs = [
            (a, b)
            for a, b in zip(statements, statements[1:], strict=False)
            if a.end <= b.start and text[a.end : b.start].strip() == "" and a.indent == b.indent
        ]
        if not pairs:
            return None
        a, b = rng.choice(pairs)
        swapped = _statement_text(target, b) + text[a.end : b.start] + _statement_text(target, a)
        return f"swap lines {line(a.start)} and {line(b.start)}", _splice(text, a.start, b.end, swapped)
    if kind == "rename":
        if not target.locals:
            return None
        name = rng.choice(sorted(target.locals))
        new_name = rng.choice([f"{name}_2", f"x{rng.randrange(100)}", "tmp", "state", "components", "block_state"])
        for start, end in sorted(target.locals[name], reverse=True):
            text = _splice(text, start, end, new_name)
        return f"rename {name} -> {new_name}", text
    if kind == "comment":
        if not target.comments:
            return None
        start, end = rng.choice(target.comments)
        new = rng.choice(["", "# 4. Prepare latent variables", "# 9. Denoising loop", "# 2. Something else", "#"])
        if not new:
            new = "# " + " ".join(rng.sample(["prepare", "encode", "loop", "decode", "misc", "step", "timesteps"], 2))
        return f"comment line {line(start)} -> {new!r}", _splice(text, start, end, new)
    if kind == "cat":
        if not target.cats:
            return None
        start, end, operand = rng.choice(target.cats)
        new = _mutated_operand(operand, rng)
        return f"cat line {line(start)}: {operand[:40]!r} -> {new[:40]!r}", _splice(text, start, end, new)
    if kind == "return":
        statement = rng.choice(statements)
        value = rng.choice(["", " None", " latents", " (latents,)", " image", " self", " prompt_embeds"])
        new = f"{statement.indent}return{value}\n"
        return f"return{value} before line {line(statement.start)}", _splice(
            text, statement.start, statement.start, new
        )
    if kind == "decorator":
        offset, indent = rng.choice(target.methods)
        decorator = rng.choice(
            ["@staticmethod", "@classmethod", "@property", "@functools.cache", "@torch.no_grad()", "async"]
        )
        def_at = text.find("def ", offset)
        if decorator == "async":
            return f"async on line {line(def_at)}", _splice(text, def_at, def_at, "async ")
        def_line = text.rfind("\n", 0, def_at) + 1
        return f"{decorator} on line {line(def_at)}", _splice(text, def_line, def_line, f"{indent}{decorator}\n")
    if kind == "continue":
        looped = [s for s in statements if s.in_loop]
        if not looped:
            return None
        statement = rng.choice(looped)
        guard = rng.choice(["", "if i == 0:\n" + statement.indent + "    "])
        new = f"{statement.indent}{guard}continue\n"
        return f"continue before line {line(statement.start)}", _splice(text, statement.start, statement.start, new)
    if kind == "deep":
        statement = rng.choice(statements)
        local = rng.choice(sorted(target.locals) or ["latents"])
        depth = rng.choice([MAX_DEPTH // 4, MAX_DEPTH // 2 - 5, MAX_DEPTH - 10, MAX_DEPTH + 10, 2 * MAX_DEPTH + 50])
        shape = rng.choice(["sum", "list", "call", "attr", "and", "subscript"])
        expression = _deep_expression(shape, local, depth)
        new = f"{statement.indent}{local} = {expression}\n"
        where = statement.start
        return f"deep {shape} x{depth} before line {line(where)}", _splice(text, where, where, new)
    raise ValueError(kind)


def _deep_expression(shape: str, name: str, depth: int) -> str:
    if shape == "sum":
        return " + ".join([name] * depth)
    if shape == "list":
        return "[" * depth + name + "]" * depth + "[0]" * depth
    if shape == "call":
        return "(lambda v: v)(" * depth + name + ")" * depth
    if shape == "attr":
        return "(" + name + ".real" * depth + ", " + name + ")[1]"
    if shape == "and":
        return " and ".join([name] * depth)
    return "(" + name + "[...]" * depth + ")"


def _mutated_operand(operand: str, rng: random.Random) -> str:
    try:
        expression = cst.parse_expression(operand)
    except cst.ParserSyntaxError:
        return operand
    if isinstance(expression, (cst.List, cst.Tuple)) and len(expression.elements) >= 2:
        elements = list(expression.elements)
        choice = rng.choice(["reverse", "repeat", "drop"])
        if choice == "reverse":
            values = [e.value for e in reversed(elements)]
        elif choice == "repeat":
            values = [e.value for e in elements] + [elements[0].value]
        else:
            values = [e.value for e in elements[1:]]
        return "[" + ", ".join(cst.Module([]).code_for_node(v) for v in values) + "]"
    if isinstance(expression, cst.BinaryOperation) and isinstance(expression.left, cst.List):
        inner = cst.Module([]).code_for_node(expression.left.elements[0].value) if expression.left.elements else "x"
        return rng.choice([f"[{inner}, {inner}]", f"[{inner}] * 3", f"[{inner}]", f"2 * [{inner}]"])
    return rng.choice([f"[{operand}, {operand}]", f"[{operand}]", f"{operand}[::-1]"])


def make_variant(files: list[Path], seed: int, index: int) -> Variant | None:
    rng = random.Random(f"{seed}:{index}")
    for _ in range(20):  # a module or kind that offers no place for the mutation: draw again
        path = str(rng.choice(files))
        targets = _cached_targets(path)
        if not targets:
            continue
        target = rng.choice(targets)
        kind = rng.choice(KINDS)
        mutated = _mutate(target, kind, rng)
        if mutated is not None:
            description, text = mutated
            return Variant(seed, index, path, target.class_name, kind, description, text)
    return None


def deletions(path: Path) -> list[Variant]:
    """Every single-statement deletion from `__call__` of each pipeline class of one module (systematic)."""
    variants = []
    for target in _targets_of(path):
        for number, statement in enumerate(target.statements):
            replacement = f"{statement.indent}pass\n" if statement.only_child else ""
            text = _splice(target.text, statement.start, statement.end, replacement)
            line = target.text.count("\n", 0, statement.start) + 1
            variants.append(Variant(-1, number, str(path), target.class_name, "delete", f"delete line {line}", text))
    return variants


# -- running a variant ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Outcome:
    seed: int
    index: int
    path: str
    class_name: str
    kind: str
    description: str
    status: str
    detail: str = ""
    digest: str = ""
    seconds: float = 0.0
    traceback: str = ""

    @property
    def signature(self) -> str:
        """What a crash is grouped by: the exception and the converter's frame that raised it."""
        if self.status not in (CRASHED, INVALID):
            return ""
        frames = [line for line in self.traceback.splitlines() if line.strip().startswith('File "')]
        ours = [f for f in frames if "modularize" in f] or frames
        where = ours[-1].strip() if ours else ""
        where = re.sub(r'File ".*?/(modularize/[^"]+)"', r"\1", where)
        return f"{self.detail.split(':')[0]} at {where}"


def _digest(files: dict[str, str]) -> str:
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + files[name].encode() + b"\0")
    return digest.hexdigest()


def convert_variant(variant: Variant, twice: bool = False) -> Outcome:
    import time

    from ..convert import convert
    from ..emit.validate import GeneratedCodeError
    from ..errors import ConversionError, ModularizeError
    from ..options import ConvertOptions

    resolved = Path(variant.path).resolve()
    options = ConvertOptions(
        path=variant.path,
        label=label_of(resolved),
        module_name=module_name_of(resolved),
        class_name=variant.class_name,
    )
    base = dict(
        seed=variant.seed,
        index=variant.index,
        path=variant.path,
        class_name=variant.class_name,
        kind=variant.kind,
        description=variant.description,
    )
    started = time.perf_counter()
    try:
        files = convert(variant.text, options)
    except ConversionError as error:
        return Outcome(**base, status=REFUSED, detail=str(error)[:300], seconds=time.perf_counter() - started)
    except ModularizeError as error:
        return Outcome(**base, status=REJECTED, detail=str(error)[:300], seconds=time.perf_counter() - started)
    except GeneratedCodeError as error:
        detail = str(error)[:300]
        return Outcome(**base, status=INVALID, detail=detail, traceback=traceback.format_exc())
    except Exception as error:
        detail = f"{type(error).__name__}: {error}"[:300]
        return Outcome(**base, status=CRASHED, detail=detail, traceback=traceback.format_exc())
    digest = _digest(files)
    if twice:
        again = _digest(convert(variant.text, options))
        if again != digest:
            return Outcome(**base, status=NONDETERMINISTIC, detail="two conversions differ", digest=digest)
    return Outcome(**base, status=CONVERTED, digest=digest, seconds=time.perf_counter() - started)


def run_variant(files: list[Path], seed: int, index: int, twice: bool = False) -> Outcome | None:
    variant = make_variant(files, seed, index)
    return None if variant is None else convert_variant(variant, twice)


def summarize(outcomes: list[Outcome], seconds: float) -> dict:
    counts = {status: 0 for status in (CONVERTED, REFUSED, REJECTED, CRASHED, INVALID, NONDETERMINISTIC)}
    for outcome in outcomes:
        counts[outcome.status] += 1
    return {"variants": len(outcomes), **counts, "seconds": round(seconds, 1)}


Progress = Callable[[int, int], None]
