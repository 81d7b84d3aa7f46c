"""A guidance rescale recognized by what its helper computes, whatever the helper and its locals are called.

The guider's `guidance_rescale` pulls the guided prediction's spread back toward the conditional one's:

    def keep_spread(guided, text, amount=0.0):                 # any name, any locals, any parameter order
        spread = text.std(dim=list(range(1, text.ndim)), keepdim=True) / guided.std(
            dim=list(range(1, guided.ndim)), keepdim=True
        )
        return amount * (guided * spread) + (1 - amount) * guided

Its body, with every local inlined into the returned expression, must be that arithmetic, operation for
operation (operands of `+` and `*` in either order: IEEE addition and multiplication commute exactly), so the
guider's own rescale gives the same bits. A call `g = keep_spread(g, c, amount=r)` then is the rescale of the
guided prediction `g` toward the conditional half `c` by `r`:

    rescale_call(statement, guided="g", cond="c", functions)  ->  the factor expression `r`
"""

from __future__ import annotations

from collections.abc import Mapping

import libcst as cst
import libcst.matchers as m

from ...cst.match_filter import matches
from ...cst.substitute import substitute_names


def rescale_call(
    statement: cst.CSTNode, guided: str, cond: str, functions: Mapping[str, cst.FunctionDef]
) -> cst.BaseExpression | None:
    """`g = f(g, c, r)` where `functions[f]` computes the guidance rescale -> `r`; else None. `functions` are the
    module's functions by name and the pipeline's methods as `self.<name>`."""
    pattern = m.SimpleStatementLine(body=[m.Assign(targets=[m.AssignTarget(m.Name(guided))], value=m.Call())])
    if not matches(statement, pattern):
        return None
    call = statement.body[0].value
    function = functions.get(_callee(call.func))
    if function is None:
        return None
    roles = rescale_roles(function)
    bound = _bind(function, call)
    if roles is None or bound is None:
        return None
    prediction, text, factor = (bound.get(name) for name in roles)
    if not (matches(prediction, m.Name(guided)) and matches(text, m.Name(cond))) or factor is None:
        return None
    return factor


def _callee(func: cst.BaseExpression) -> str:
    if isinstance(func, cst.Name):
        return func.value
    if matches(func, m.Attribute(value=m.Name("self"), attr=m.Name())):
        return f"self.{func.attr.value}"
    return ""


def _parameters(function: cst.FunctionDef) -> list[cst.Param]:
    params = [*function.params.posonly_params, *function.params.params]
    return params[1:] if params and params[0].name.value == "self" else params


def _bind(function: cst.FunctionDef, call: cst.Call) -> dict[str, cst.BaseExpression] | None:
    """Parameter name -> the argument (or the default) the call gives it; None for a call with `*`/`**`."""
    params = _parameters(function)
    bound: dict[str, cst.BaseExpression] = {}
    positional = [a for a in call.args if a.keyword is None]
    if any(a.star for a in call.args) or len(positional) > len(params):
        return None
    for param, arg in zip(params, positional, strict=False):
        bound[param.name.value] = arg.value
    for arg in call.args:
        if arg.keyword is not None:
            bound[arg.keyword.value] = arg.value
    for param in params:
        if param.name.value not in bound and param.default is not None:
            bound[param.name.value] = param.default
    return bound


def rescale_roles(function: cst.FunctionDef) -> tuple[str, str, str] | None:
    """(the guided prediction's, the conditional prediction's, the factor's) parameter names when the function
    computes the guidance rescale; else None."""
    returned = inlined_return(function)
    params = {p.name.value for p in _parameters(function)}
    if returned is None:
        return None
    found = _mix(returned)
    if found is None:
        return None
    factor, prediction, text = found
    names = (prediction, text, factor)
    return names if set(names) <= params and len(set(names)) == 3 else None


def inlined_return(function: cst.FunctionDef) -> cst.BaseExpression | None:
    """The returned expression with every local assignment before it substituted in:

    def f(a, b):          ->   (((a * 2) + 1) + b)
        x = a * 2
        x = x + 1
        return x + b
    """
    if not isinstance(function.body, cst.IndentedBlock) or function.decorators:
        return None
    values: dict[str, cst.BaseExpression] = {}
    statements = list(function.body.body)
    if statements and matches(statements[0], m.SimpleStatementLine(body=[m.Expr(m.SimpleString())])):
        statements = statements[1:]  # the docstring
    for index, statement in enumerate(statements):
        if not isinstance(statement, cst.SimpleStatementLine) or len(statement.body) != 1:
            return None
        small = statement.body[0]
        if isinstance(small, cst.Return) and index == len(statements) - 1 and small.value is not None:
            return _parenthesized(substitute_names(small.value, values))
        if not matches(small, m.Assign(targets=[m.AssignTarget(m.Name())])):
            return None
        values[small.targets[0].target.value] = _parenthesized(substitute_names(small.value, values))
    return None


def _parenthesized(expression: cst.BaseExpression) -> cst.BaseExpression:
    if isinstance(expression, cst.Name) or expression.lpar:
        return expression
    return expression.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])


def _name(node: cst.CSTNode) -> str | None:
    return node.value if isinstance(node, cst.Name) else None


def _operands(node: cst.CSTNode, operator: type) -> list[tuple[cst.BaseExpression, cst.BaseExpression]]:
    """The (left, right) operand orders under which `node` is `left <op> right`: both for `+` and `*`."""
    if not isinstance(node, cst.BinaryOperation) or not isinstance(node.operator, operator):
        return []
    pair = (node.left, node.right)
    return [pair, pair[::-1]] if operator in (cst.Add, cst.Multiply) else [pair]


def _mix(node: cst.CSTNode) -> tuple[str, str, str] | None:
    """`r * (p * (std(t) / std(p))) + (1 - r) * p` -> (r, p, t)."""
    for rescaled_part, kept_part in _operands(node, cst.Add):
        for factor, rescaled in _operands(rescaled_part, cst.Multiply):
            r = _name(factor)
            for prediction, ratio in _operands(rescaled, cst.Multiply):
                p = _name(prediction)
                spreads = _operands(ratio, cst.Divide)
                if r is None or p is None or not spreads:
                    continue
                numerator, denominator = spreads[0]
                t = _spread_of(numerator, {p})
                if t is None or _spread_of(denominator, {p, t}) != p or not _kept(kept_part, r, p):
                    continue
                return r, p, t
    return None


def _kept(node: cst.CSTNode, r: str, p: str) -> bool:
    """`(1 - r) * p` in either order."""
    for complement, prediction in _operands(node, cst.Multiply):
        one_minus = m.BinaryOperation(left=m.Integer("1"), operator=m.Subtract(), right=m.Name(r))
        if _name(prediction) == p and matches(complement, one_minus):
            return True
    return False


def _spread_of(node: cst.CSTNode, dims_of: set[str]) -> str | None:
    """`x.std(dim=list(range(1, y.ndim)), keepdim=True)` -> x, with `y` one of `dims_of` or `x` itself (both
    tensors have the same number of dimensions)."""
    pattern = m.Call(
        func=m.Attribute(value=m.Name(), attr=m.Name("std")),
        args=[
            m.Arg(keyword=m.Name("dim")),
            m.Arg(keyword=m.Name("keepdim"), value=m.Name("True")),
        ],
    )
    if not matches(node, pattern):
        return None
    tensor = node.func.value.value
    dims = node.args[0].value
    ndim_of = m.Attribute(value=m.Name(), attr=m.Name("ndim"))
    all_but_first = m.Call(
        func=m.Name("list"),
        args=[m.Arg(m.Call(func=m.Name("range"), args=[m.Arg(m.Integer("1")), m.Arg(ndim_of)]))],
    )
    if not matches(dims, all_but_first):
        return None
    of = dims.args[0].value.args[1].value.value.value
    return tensor if of in dims_of | {tensor} else None
