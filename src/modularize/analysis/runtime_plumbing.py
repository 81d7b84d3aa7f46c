"""Find the runtime plumbing of a standard `__call__` that has no place in a modular block.

Before (inside a standard `__call__`):

    callback_steps = kwargs.pop("callback_steps", None)
    self.check_inputs(prompt, callback_steps)
    for i, t in enumerate(timesteps):
        if self.interrupt:
            continue
        latents = self.scheduler.step(noise_pred, t, latents)[0]
        if callback_on_step_end is not None:
            callback_outputs = callback_on_step_end(self, i, t, {})
        if XLA_AVAILABLE:
            xm.mark_step()
    self.maybe_free_model_hooks()

After (`replace_nodes` with the drops, then `without_callbacks`):

    self.check_inputs(prompt, None)
    for i, t in enumerate(timesteps):
        latents = self.scheduler.step(noise_pred, t, latents)[0]
        if XLA_AVAILABLE:
            xm.mark_step()

Dropped: step-end callbacks and the deprecated `callback` / `callback_steps` (read elsewhere they become `None`),
`self.interrupt`, `maybe_free_model_hooks`, a warning that an argument `**kwargs` takes is deprecated
(`if "mask_feature" in kwargs: deprecate(...)`), and `return` (the output is read from block state). The XLA step
marker stays where it is, as in diffusers' own modular loops.
Each drop is a `Drop` naming the original node, so the conversion report can say what went, where and why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import libcst as cst
import libcst.matchers as m

from ..cst.dataflow import names_read
from ..cst.match_filter import matcher_test, matches
from ..cst.substitute import substitute_names
from ..cst.tree_walk import findall, visit_read_only

# `__call__` arguments that only feed step-end callbacks (and the deprecated callback API popped from **kwargs)
CALLBACK_ARGUMENTS = ("callback_on_step_end", "callback_on_step_end_tensor_inputs", "callback", "callback_steps")


@dataclass(frozen=True)
class Drop:
    node: cst.CSTNode
    what: str
    why: str
    safety: str  # "display-only": no effect on outputs; "unsafe": a feature the package does not serve
    popped: str | None = None  # the `**kwargs` argument a dropped `x = kwargs.pop("x", ...)` accepted


_KWARGS_POP = m.Assign(
    targets=[m.AssignTarget(target=m.Name())],
    value=m.Call(func=m.Attribute(value=m.Name("kwargs"), attr=m.Name("pop"))),
)
_FREE_HOOKS = m.SimpleStatementLine(
    body=[m.Expr(value=m.Call(func=m.Attribute(value=m.Name("self"), attr=m.Name("maybe_free_model_hooks"))))]
)
_INTERRUPT = m.Attribute(value=m.Name("self"), attr=m.Name("interrupt"))
# `if "mask_feature" in kwargs:` ...
_IN_KWARGS = m.Comparison(left=m.SimpleString(), comparisons=[m.ComparisonTarget(m.In(), m.Name("kwargs"))])
_MESSAGE = m.SimpleString() | m.FormattedString() | m.ConcatenatedString()
# ... `deprecation_message = "..."`, `deprecate(...)`, `warnings.warn(...)`, `logger.warning(...)`
_WARNING_LINE = m.SimpleStatementLine(
    body=[
        m.Assign(targets=[m.AssignTarget(m.Name())], value=_MESSAGE)
        | m.Expr(
            m.Call(
                func=m.Name("deprecate")
                | m.Attribute(value=m.Name("warnings"), attr=m.Name("warn"))
                | m.Attribute(value=m.Name("logger"), attr=m.Name("warning") | m.Name("warn"))
            )
        )
    ]
)
# (read once: asked about every statement of `__call__`)
_is_kwargs_pop, _is_free_hooks = matcher_test(_KWARGS_POP), matcher_test(_FREE_HOOKS)


def _warns(statement: cst.BaseStatement) -> bool:
    return matches(statement, _WARNING_LINE)


class _RuntimePlumbing(cst.CSTVisitor):
    def __init__(self) -> None:
        super().__init__()
        self.drops: list[Drop] = []
        self.returns: list[cst.Return] = []

    def visit_SimpleStatementLine(self, node: cst.SimpleStatementLine) -> bool:
        statement = node.body[0] if len(node.body) == 1 else None
        if statement is not None and _is_kwargs_pop(statement):
            name = statement.targets[0].target.value
            if name in CALLBACK_ARGUMENTS:
                drop = Drop(node, f"`{name} = kwargs.pop(...)`", "deprecated callback API", "unsafe", popped=name)
                self.drops.append(drop)
        elif _assigns_callback_argument(statement):
            name = _assigns_callback_argument(statement)
            why = "step-end callbacks are not run by blocks"
            self.drops.append(Drop(node, f"`{name} = ...`", why, "unsafe"))
        elif _is_free_hooks(node):
            self.drops.append(
                Drop(node, "`self.maybe_free_model_hooks()`", "model offload hooks are the caller's", "display-only")
            )
        elif isinstance(statement, cst.Return):
            self.returns.append(statement)
            self.drops.append(
                Drop(node, "`return ...`", "outputs are read from the pipeline state instead", "display-only")
            )
        return False

    def visit_If(self, node: cst.If) -> bool:
        callbacks = [name for name in names_read(node.test) if name in CALLBACK_ARGUMENTS]
        if callbacks:
            self.drops.append(
                Drop(node, f"`if {callbacks[0]} ...` block", "step-end callbacks are not run by blocks", "unsafe")
            )
            return False
        if matches(node.test, _INTERRUPT):
            self.drops.append(Drop(node, "`if self.interrupt: ...`", "interrupting is not supported", "unsafe"))
            return False
        forwarded = _forwarded_callback(node)
        if forwarded is not None:
            why = "a deprecated callback handed on to a pipeline this one calls: callbacks are not run by blocks"
            self.drops.append(Drop(node, f'`if kwargs.get("{forwarded}") ...` block', why, "unsafe", popped=forwarded))
            return False
        if matches(node.test, _IN_KWARGS) and node.orelse is None and all(_warns(s) for s in node.body.body):
            name = node.test.left.evaluated_value
            why = f"a warning that `{name}`, taken by `**kwargs`, is deprecated: the package does not take it"
            self.drops.append(Drop(node, f'`if "{name}" in kwargs: ...`', why, "display-only"))
            return False
        return True

    def visit_With(self, node: cst.With) -> bool:
        return True

    # a function, lambda or class defined inside `__call__` keeps its own `return`s and statements
    def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
        return False

    def visit_ClassDef(self, node: cst.ClassDef) -> bool:
        return False


_KWARGS_GET = m.Call(func=m.Attribute(value=m.Name("kwargs"), attr=m.Name("get") | m.Name("pop")))


def _forwarded_callback(node: cst.If) -> str | None:
    """`if kwargs.get("prior_callback", None) is not None: prior_kwargs["callback"] = kwargs.pop("prior_callback")`
    (and its deprecation warning): the callback argument `**kwargs` takes and the block hands on, or None. Only a
    name of the deprecated callback API (`callback`, `callback_steps`, with a prefix), only an `if` that does
    nothing but warn and store what it pops."""
    if node.orelse is not None:
        return None
    tested = [
        call.args[0].value.evaluated_value
        for call in findall(node.test, _KWARGS_GET)
        if call.args and isinstance(call.args[0].value, cst.SimpleString)
    ]
    if len(tested) != 1 or not tested[0].endswith(("callback", "callback_steps")):
        return None
    store = m.SimpleStatementLine(body=[m.Assign(targets=[m.AssignTarget(m.Subscript(m.Name()))], value=_KWARGS_GET)])
    if not all(_warns(line) or matches(line, store) for line in node.body.body):
        return None
    return tested[0]


def _assigns_callback_argument(statement: cst.BaseSmallStatement | None) -> str | None:
    """`callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs` (left without its guard): the
    callback argument it assigns, or None."""
    if isinstance(statement, cst.Assign):
        targets = [t.target for t in statement.targets]
    elif isinstance(statement, (cst.AnnAssign, cst.AugAssign)):
        targets = [statement.target]
    else:
        return None
    for target in targets:
        if isinstance(target, cst.Name) and target.value in CALLBACK_ARGUMENTS:
            return target.value
    return None


def find_runtime_plumbing(statements: Sequence[cst.CSTNode]) -> tuple[list[Drop], list[cst.Return]]:
    finder = _RuntimePlumbing()
    for statement in statements:
        visit_read_only(statement, finder)
    return finder.drops, finder.returns


def without_callbacks(node: cst.CSTNode, defaults: Mapping[str, str | None] | None = None) -> cst.CSTNode:
    """Callback arguments read outside the dropped code (`check_inputs(..., callback_steps)`) become what the
    standard call would see when no callback is given: the argument's default, or `None`."""
    defaults = defaults or {}
    values = {name: cst.parse_expression(defaults.get(name) or "None") for name in CALLBACK_ARGUMENTS}
    return substitute_names(node, values)
