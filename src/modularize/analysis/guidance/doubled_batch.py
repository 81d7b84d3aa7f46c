"""The doubled CFG batch as sources build and split it, recognized by what the operations compute.

With CFG on, batched pipelines run the model on `[uncond, cond]` and split its prediction in two:

    torch.cat([negative, positive])   torch.concat([x] * 2)   x.repeat(2, 1)   list(a) + list(b)   # `cat_elements`
    u, c = pred.chunk(2)              torch.chunk(pred, 2, dim=0)                                # `halved_batch`

Inputs both conditions share are the CFG-off value repeated; beside `torch.cat([x, x])`, sources double a batch
in ways whose two halves are equal by construction:

    (t / n).view(1).repeat(2).to(device)   if cfg else (t / n).view(1).to(device)    # a repeat inside a chain
    torch.full((batch * 2,), t.item())     if cfg else torch.full((batch,), t.item())  # a fill of twice the rows

`doubles(on, off)` is true for these: a guider batch then takes `off` as it is.
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from ...cst.match_filter import matches
from ...cst.substitute import replace_nodes, same_expression

# `x.repeat(2)`, `x.repeat(2, 1, 1)`: the batch doubled, every other dimension as it is
BATCH_REPEAT = m.Call(
    func=m.Attribute(attr=m.Name("repeat")), args=[m.Arg(m.Integer("2")), m.ZeroOrMore(m.Arg(m.Integer("1")))]
)
# `torch.cat`, and its aliases `torch.concat` / `torch.concatenate`
TORCH_CAT = m.Call(
    func=m.Attribute(value=m.Name("torch"), attr=m.Name("cat") | m.Name("concat") | m.Name("concatenate"))
)
# `list(a) + list(b)`: per-sample lists, concatenated as a batch is
LIST_CAT = m.BinaryOperation(
    left=m.Call(func=m.Name("list"), args=[m.Arg(m.Name())]),
    operator=m.Add(),
    right=m.Call(func=m.Name("list"), args=[m.Arg(m.Name())]),
)
# methods that act on each element (or only on its type or place) and so commute with repeating the batch
_ELEMENTWISE = frozenset({"to", "float", "half", "double", "bfloat16", "type", "contiguous", "clone", "detach"})
# constructors whose every row is the same fill: twice the rows are the rows twice
_FILLS = frozenset({"full", "zeros", "ones"})
# fills of another value's shape: what they hold depends on nothing but that shape (`torch.zeros_like(x)`)
FILLS_LIKE = frozenset({"zeros_like", "ones_like", "full_like", "empty_like"})


def cat_elements(call: cst.CSTNode) -> list[cst.BaseExpression] | None:
    """`torch.cat([a, b])` -> [a, b]; `torch.cat([a] * 2)` -> [a, a]; with an optional `dim=0`; `a.repeat(2, 1)`,
    the batch repeated, -> [a, a]; `list(a) + list(b)` -> [a, b]."""
    if matches(call, BATCH_REPEAT):
        return [call.func.value] * 2
    if matches(call, LIST_CAT):
        return [call.left.args[0].value, call.right.args[0].value]
    if not matches(call, TORCH_CAT) or not call.args:
        return None
    extra = call.args[1:]
    if extra and not all(matches(a, m.Arg(m.Integer("0"))) for a in extra):
        return None
    sequence = call.args[0].value
    if isinstance(sequence, cst.List):
        return [element.value for element in sequence.elements]
    if matches(sequence, m.BinaryOperation(left=m.List(elements=[m.Element()]), operator=m.Multiply())):
        ways = _ways(sequence.right)
        if ways is not None:
            return [sequence.left.elements[0].value] * ways
    return None


def _ways(count: cst.BaseExpression) -> int | None:
    """How many parts a batch is made of or split into: an integer literal of at least 2."""
    if isinstance(count, cst.Integer) and count.evaluated_value >= 2:
        return count.evaluated_value
    return None


_ZERO = m.Integer("0")
_WAYS = m.MatchIfTrue(lambda count: _ways(count) is not None)
_DIM = m.MatchIfTrue(lambda keyword: keyword is None or keyword.value == "dim")
# `x.chunk(2)`, `x.chunk(2, 0)`, `x.chunk(2, dim=0)` (or into 3 parts, ...)
_METHOD_CHUNK = m.Call(
    func=m.Attribute(value=m.Name(), attr=m.Name("chunk")),
    args=[m.Arg(_WAYS, keyword=None), m.ZeroOrOne(m.Arg(_ZERO, keyword=_DIM))],
)
# `torch.chunk(x, 2)`, `torch.chunk(x, 2, 0)`, `torch.chunk(x, 2, dim=0)`
_TORCH_CHUNK = m.Call(
    func=m.Attribute(value=m.Name("torch"), attr=m.Name("chunk")),
    args=[m.Arg(m.Name(), keyword=None), m.Arg(_WAYS, keyword=None), m.ZeroOrOne(m.Arg(_ZERO, keyword=_DIM))],
)


def split_batch(value: cst.BaseExpression) -> tuple[str, int] | None:
    """The name a value splits into equal parts along the batch, and how many (`x.chunk(3)` -> ("x", 3))."""
    if matches(value, _METHOD_CHUNK):
        return value.func.value.value, value.args[0].value.evaluated_value
    if matches(value, _TORCH_CHUNK):
        return value.args[0].value.value, value.args[1].value.evaluated_value
    return None


def halved_batch(value: cst.BaseExpression) -> str | None:
    """The name a value splits into two halves along the batch (`x.chunk(2)` in its spellings) -> "x"."""
    found = split_batch(value)
    return found[0] if found is not None and found[1] == 2 else None


def doubles(on: cst.BaseExpression, off: cst.BaseExpression) -> bool:
    """True when `on` is `off` with its batch repeated twice (see the module docstring)."""
    return _repeated_in_chain(on, off) or _fill_of_twice_the_rows(on, off)


def _repeated_in_chain(on: cst.BaseExpression, off: cst.BaseExpression) -> bool:
    """`a.repeat(2).to(d)` against `a.to(d)`: one batch repeat, only elementwise methods called on its result."""
    node: cst.BaseExpression = on
    while isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute):
        if matches(node, BATCH_REPEAT):
            return same_expression(replace_nodes(on, {node: node.func.value}), off)
        if node.func.attr.value not in _ELEMENTWISE:
            return False
        node = node.func.value
    return False


def _fill_of_twice_the_rows(on: cst.BaseExpression, off: cst.BaseExpression) -> bool:
    """`torch.full((n * 2, ...), v, ...)` against `torch.full((n, ...), v, ...)` (or `zeros`, `ones`)."""
    fill = m.Call(func=m.Attribute(value=m.Name("torch"), attr=m.Name()))
    if not (matches(on, fill) and matches(off, fill)) or on.func.attr.value not in _FILLS:
        return False
    if not on.args or not off.args or on.args[0].keyword is not None:
        return False
    size_on, size_off = on.args[0].value, off.args[0].value
    if not (isinstance(size_on, (cst.Tuple, cst.List)) and isinstance(size_off, type(size_on))):
        return False
    if not size_on.elements or len(size_on.elements) != len(size_off.elements):
        return False
    rows_on, rows_off = size_on.elements[0].value, size_off.elements[0].value
    if not _twice(rows_on, rows_off):
        return False
    rest_same = all(
        same_expression(a.value, b.value) for a, b in zip(size_on.elements[1:], size_off.elements[1:], strict=True)
    )
    return rest_same and same_expression(
        replace_nodes(on, {size_on: cst.Name("_")}), replace_nodes(off, {size_off: cst.Name("_")})
    )


def _twice(doubled: cst.BaseExpression, single: cst.BaseExpression) -> bool:
    """`n * 2` or `2 * n` against `n`."""
    if not matches(doubled, m.BinaryOperation(operator=m.Multiply())):
        return False
    left, right = doubled.left, doubled.right
    return (matches(right, m.Integer("2")) and same_expression(left, single)) or (
        matches(left, m.Integer("2")) and same_expression(right, single)
    )


def repeated_per_item(statement: cst.CSTNode) -> str | None:
    """The list a loop doubles item by item for CFG, each item's batch repeated (a T2I-Adapter's features, one
    tensor per layer): `for k, v in enumerate(states): states[k] = torch.cat([v] * 2, dim=0)` -> "states"."""
    loop = m.For(
        target=m.Tuple(elements=[m.Element(m.Name()), m.Element(m.Name())]),
        iter=m.Call(func=m.Name("enumerate"), args=[m.Arg(m.Name())]),
        body=m.IndentedBlock(
            body=[
                m.SimpleStatementLine(
                    body=[
                        m.Assign(targets=[m.AssignTarget(m.Subscript(value=m.Name()))], value=TORCH_CAT | BATCH_REPEAT)
                    ]
                )
            ]
        ),
    )
    if not matches(statement, loop) or statement.orelse is not None:
        return None
    index, item = (element.value.value for element in statement.target.elements)
    listed = statement.iter.args[0].value.value
    assign = statement.body.body[0].body[0]
    target = assign.targets[0].target
    written = m.Subscript(value=m.Name(listed), slice=[m.SubscriptElement(m.Index(m.Name(index)))])
    elements = cat_elements(assign.value)
    if not matches(target, written) or elements is None or len(elements) != 2:
        return None
    return listed if all(matches(e, m.Name(item)) for e in elements) else None


def paired_per_item(statement: cst.CSTNode) -> tuple[str, str, str] | None:
    """A loop concatenating each item of a list with the same item of another, for CFG (IP-Adapter embeddings,
    one tensor per adapter, after `normalize.halved_results` split them):
    `for k, v in enumerate(embeds): embeds[k] = torch.cat([negative[k], v])` -> ("embeds", "negative", "negative")
    (the list, the other list, the one whose items come first)."""
    loop = m.For(
        target=m.Tuple(elements=[m.Element(m.Name()), m.Element(m.Name())]),
        iter=m.Call(func=m.Name("enumerate"), args=[m.Arg(m.Name())]),
        body=m.IndentedBlock(
            body=[m.SimpleStatementLine(body=[m.Assign(targets=[m.AssignTarget(m.Subscript(value=m.Name()))])])]
        ),
    )
    if not matches(statement, loop) or statement.orelse is not None:
        return None
    index, item = (element.value.value for element in statement.target.elements)
    listed = statement.iter.args[0].value.value
    assign = statement.body.body[0].body[0]
    at_index = [m.SubscriptElement(m.Index(m.Name(index)))]
    if not matches(assign.targets[0].target, m.Subscript(value=m.Name(listed), slice=at_index)):
        return None
    elements = cat_elements(assign.value) if matches(assign.value, TORCH_CAT) else None
    if elements is None or len(elements) != 2:
        return None
    other = [e for e in elements if matches(e, m.Subscript(value=m.Name(), slice=at_index))]
    mine = [e for e in elements if matches(e, m.Name(item))]
    if len(other) != 1 or len(mine) != 1 or other[0].value.value == listed:
        return None
    negative = other[0].value.value
    return listed, negative, listed if elements[0] is mine[0] else negative


def halved_per_item(statement: cst.CSTNode) -> str | None:
    """`x = [item.chunk(2)[1] for item in x]` -> "x": a list each of whose items is split for CFG, this half kept."""
    pattern = m.SimpleStatementLine(
        body=[
            m.Assign(
                targets=[m.AssignTarget(m.Name())],
                value=m.ListComp(
                    elt=m.Subscript(value=m.Call(func=m.Attribute(m.Name(), m.Name("chunk")))),
                    for_in=m.CompFor(target=m.Name(), iter=m.Name()),
                ),
            )
        ]
    )
    if not matches(statement, pattern):
        return None
    assign = statement.body[0]
    name = assign.targets[0].target.value
    return name if assign.value.for_in.iter.value == name else None
