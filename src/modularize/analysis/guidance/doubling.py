"""Whether a value computed for the CFG batch is the unbatched value twice over, by what the operations compute.

With CFG on, batched pipelines run the model on `[uncond, cond]`: inputs both conditions share are the CFG-off
value repeated. Beside `torch.cat([x, x])` and `torch.cat([x] * 2)` (`batched._cat_elements`), sources double a
batch in ways whose two halves are equal by construction:

    (t / n).view(1).repeat(2).to(device)   if cfg else (t / n).view(1).to(device)    # a repeat inside a chain
    torch.full((batch * 2,), t.item())     if cfg else torch.full((batch,), t.item())  # a fill of twice the rows

`doubles(on, off)` is true for these: a guider batch then takes `off` as it is.
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from ...cst.substitute import replace_nodes, same_expression

# `x.repeat(2)`, `x.repeat(2, 1, 1)`: the batch doubled, every other dimension as it is
_BATCH_REPEAT = m.Call(
    func=m.Attribute(attr=m.Name("repeat")), args=[m.Arg(m.Integer("2")), m.ZeroOrMore(m.Arg(m.Integer("1")))]
)
# methods that act on each element (or only on its type or place) and so commute with repeating the batch
_ELEMENTWISE = frozenset({"to", "float", "half", "double", "bfloat16", "type", "contiguous", "clone", "detach"})
# constructors whose every row is the same fill: twice the rows are the rows twice
_FILLS = frozenset({"full", "zeros", "ones"})


def doubles(on: cst.BaseExpression, off: cst.BaseExpression) -> bool:
    """True when `on` is `off` with its batch repeated twice (see the module docstring)."""
    return _repeated_in_chain(on, off) or _fill_of_twice_the_rows(on, off)


def _repeated_in_chain(on: cst.BaseExpression, off: cst.BaseExpression) -> bool:
    """`a.repeat(2).to(d)` against `a.to(d)`: one batch repeat, only elementwise methods called on its result."""
    node: cst.BaseExpression = on
    while isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute):
        if m.matches(node, _BATCH_REPEAT):
            return same_expression(replace_nodes(on, {node: node.func.value}), off)
        if node.func.attr.value not in _ELEMENTWISE:
            return False
        node = node.func.value
    return False


def _fill_of_twice_the_rows(on: cst.BaseExpression, off: cst.BaseExpression) -> bool:
    """`torch.full((n * 2, ...), v, ...)` against `torch.full((n, ...), v, ...)` (or `zeros`, `ones`)."""
    fill = m.Call(func=m.Attribute(value=m.Name("torch"), attr=m.Name()))
    if not (m.matches(on, fill) and m.matches(off, fill)) or on.func.attr.value not in _FILLS:
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
    if not m.matches(doubled, m.BinaryOperation(operator=m.Multiply())):
        return False
    left, right = doubled.left, doubled.right
    return (m.matches(right, m.Integer("2")) and same_expression(left, single)) or (
        m.matches(left, m.Integer("2")) and same_expression(right, single)
    )
