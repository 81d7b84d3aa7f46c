"""Where a value a helper repeats for CFG must stay doubled until a model has run on it, and be halved after.

A helper that only repeats for CFG (`image = torch.cat([image] * 2)` under its flag) is normally told not to: each
guider batch gets the single value. But when a model runs on the doubled value before the loop, the standard
pipeline ran it on a batch twice as large, and on CPU a batch's size changes the last bits of what a convolution
returns (a VAE encoding one image and two copies of it differs by ~1e-6). Keeping the repeat and taking the first
half once the model has run gives the guider's batches exactly the standard pipeline's values:

    control_image = self.prepare_image(..., do_classifier_free_guidance=self.do_classifier_free_guidance)
    height, width = control_image.shape[-2:]
    control_image = self.vae.encode(control_image).latent
    control_image = control_image * self.vae.config.scaling_factor
    # -> the same lines, then (halving after the last one; `transforms.halving`):
    if self.do_classifier_free_guidance:
        control_image = control_image[: control_image.shape[0] // 2]

When a statement on the way draws at random (the control image VAE-*sampled*, SD3 ControlNet), each half drew
noise of its own: the halves are split instead, the unconditional one a value of its own the guider pairs with the
conditional one (`transforms.halving.split_after`):

    if self.do_classifier_free_guidance:
        negative_control_image, control_image = control_image.chunk(2)
    else:
        negative_control_image = None

Only when it is safe: every statement after the helper call that reads the value either rebinds it (keeping it
doubled) or reads it without its batch (`x.shape[-2:]`), all of them in the helper call's own block, and nothing
after them writes it again before the loop. Otherwise (or when no model runs on it) the helper is told not to repeat,
as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import libcst as cst
import libcst.matchers as m

from ...cst.dataflow import flow_of, names_read
from ...cst.match_filter import matches
from ...cst.substitute import conjuncts
from ...cst.tree_walk import findall, walk
from ...frontend.class_facts import ClassFacts
from .pairing import ELEMENTWISE, PER_SAMPLE_METHODS, draws_at_random, reads_batch


@dataclass(frozen=True)
class KeptRepeat:
    """The repeated values stay doubled through `last_write`, and are halved right after it. `drawn`: a statement
    on the way draws at random (`vae.encode(x).latent_dist.sample()`), so the halves differ: each is one batch's."""

    last_write: cst.BaseStatement
    names: tuple[str, ...]
    drawn: bool = False
    listed: bool = False  # the names hold lists of doubled values, one appended per iteration (multi-ControlNet)


def kept_repeat(
    line: cst.BaseStatement,
    names: Sequence[str],
    call: cst.Call,
    helper: cst.FunctionDef,
    parameter: str,
    before_loop: Sequence[cst.BaseStatement],
    facts: ClassFacts,
) -> KeptRepeat | None:
    """`line` assigns what a repeat-only `helper` returned (`names`) to its `call`, which passes the CFG flag as its
    `parameter`; `before_loop` are the top-level statements of `__call__` before the denoising loop. None unless a
    model runs on the doubled value and the halving is safe."""
    names = tuple(names)
    if not names or not _repeats_on_the_flag_alone(helper, parameter, call):
        return None
    block = _block_holding(line, before_loop)
    if block is None:
        return None
    shared = {name: name for name in names}
    last_write, modelled, drawn, appended = line, False, False, None
    for statement in block[block.index(line) + 1 :]:
        read = set(names_read(statement)) & set(names)
        written = set(flow_of([statement]).writes) & set(names)
        if appended is None and (appended := _appended_to(statement, names)) is not None:
            names = ()  # (what follows in the loop's body may not read it again)
        elif _rebinds(statement, names):
            value = statement.body[0].value
            if not read or not _per_sample(value, names, facts):
                return None  # no longer the doubled value, sample by sample: halving it would not give one half
            last_write = statement
            modelled = modelled or _runs_a_component(value, facts)
            drawn = drawn or draws_at_random(value)
        elif written:
            return None
        elif read and reads_batch(_value(statement), shared):
            return None
    if not modelled:
        return None
    listed = appended is not None
    if listed:
        # `for x in images: x = prepare(x, cfg); x = vae.encode(x)...; found.append(x)` then `image = found`: the
        # list holds doubled values; kept as it is through the loop (and the one name it is handed on to)
        found = _list_after_loop(block, appended, before_loop)
        if found is None:
            return None
        last_write, names = found
    # nothing after the block before the loop may write them again: it would see (and double) the halved value
    top = next(s for s in before_loop if s is last_write or any(node is last_write for node in walk(s)))
    if top is not last_write:
        for statement in before_loop[before_loop.index(top) + 1 :]:
            if set(flow_of([statement]).writes) & set(names):
                return None
    return KeptRepeat(last_write, names, drawn, listed)


def _appended_to(statement: cst.BaseStatement, names: Sequence[str]) -> str | None:
    """`found.append(x)` for one of the names -> "found"."""
    pattern = m.SimpleStatementLine(
        body=[m.Expr(m.Call(func=m.Attribute(m.Name(), m.Name("append")), args=[m.Arg(m.Name())]))]
    )
    if not matches(statement, pattern):
        return None
    call = statement.body[0].value
    return call.func.value.value if call.args[0].value.value in names else None


def _list_after_loop(
    body: Sequence[cst.BaseStatement], listed: str, before_loop: Sequence[cst.BaseStatement]
) -> tuple[cst.BaseStatement, tuple[str, ...]] | None:
    """The `for` statement whose body is `body`, and the list it fills: handed on as it is by the statements after
    the loop (`image = found`) -> (the last statement that holds it, (its final name,)); None when anything else
    reads it there."""
    first = body[0] if body else None
    loop = next((n for s in before_loop for n in walk(s) if isinstance(n, cst.For) and n.body.body[0] is first), None)
    outer = _block_holding(loop, before_loop) if loop is not None else None
    if outer is None or loop.orelse is not None:
        return None
    last, name = loop, listed
    for statement in outer[outer.index(loop) + 1 :]:
        if name not in names_read(statement):
            if name in flow_of([statement]).writes:
                return None
            continue
        if not matches(statement, _REBINDING) or not matches(statement.body[0].value, m.Name(name)):
            return None
        last, name = statement, statement.body[0].targets[0].target.value
    return last, (name,)


def _repeats_on_the_flag_alone(helper: cst.FunctionDef, parameter: str, call: cst.Call) -> bool:
    """Every test in the helper that reads the flag holds exactly when the flag does, given the constants the call
    passes (`if guided and not guess_mode:` called with `guess_mode=False`): the halving, tested on the flag, then
    happens exactly when the repeat did. Called with `guess_mode=guess_mode`, it may repeat less often: not kept."""
    constants = _constant_arguments(helper, call)
    for node in walk(helper.body):
        if isinstance(node, (cst.If, cst.IfExp)) and parameter in names_read(node.test):
            for part in conjuncts(node.test):
                if isinstance(part, cst.Name) and part.value in (parameter, *_named(constants, "True")):
                    continue
                if matches(part, m.UnaryOperation(m.Not(), m.Name())) and part.expression.value in _named(
                    constants, "False", "None"
                ):
                    continue
                return False
    return True


def _constant_arguments(helper: cst.FunctionDef, call: cst.Call) -> dict[str, str]:
    """The helper's parameters bound to `True`, `False` or `None` by the call (or by their defaults)."""
    params = [*helper.params.posonly_params, *helper.params.params, *helper.params.kwonly_params]
    values = {p.name.value: p.default for p in params if p.default is not None}
    positional = [p.name.value for p in [*helper.params.posonly_params, *helper.params.params]][1:]  # after self
    for position, argument in enumerate(call.args):
        if argument.keyword is not None:
            values[argument.keyword.value] = argument.value
        elif not argument.star and position < len(positional):
            values[positional[position]] = argument.value
    return {
        name: value.value
        for name, value in values.items()
        if isinstance(value, cst.Name) and value.value in ("True", "False", "None")
    }


def _named(constants: dict[str, str], *values: str) -> list[str]:
    return [name for name, value in constants.items() if value in values]


def _block_holding(line: cst.BaseStatement, before_loop: Sequence[cst.BaseStatement]) -> list | None:
    """The statement list `line` is one of: the top level, or an indented block."""
    if any(statement is line for statement in before_loop):
        return list(before_loop)
    for statement in before_loop:
        for node in walk(statement):
            if isinstance(node, cst.IndentedBlock) and any(item is line for item in node.body):
                return list(node.body)
    return None


_REBINDING = m.SimpleStatementLine(body=[m.Assign(targets=[m.AssignTarget(target=m.Name())])])


def _rebinds(statement: cst.BaseStatement, names: Sequence[str]) -> bool:
    """`x = f(x)` for one of the names: the value stays what the doubled batch gives."""
    return matches(statement, _REBINDING) and statement.body[0].targets[0].target.value in names


def _value(statement: cst.BaseStatement) -> cst.CSTNode:
    return statement.body[0].value if matches(statement, m.SimpleStatementLine(body=[m.Assign()])) else statement


def _per_sample(expression: cst.BaseExpression, names: Sequence[str], facts: ClassFacts) -> bool:
    """Computed sample by sample from the named values, so that its first half is computed from theirs: a model run
    on them (`self.vae.encode(x)`) and what its output gives (`.latent_dist.mode()`), elementwise arithmetic
    (`x * scale`), per-sample methods (`x.to(dtype)`). Not `x[:1]`, `x.repeat(2, 1)`, `torch.cat([x, y])`."""
    if not set(names_read(expression)) & set(names):
        return True
    if isinstance(expression, cst.Name):
        return True
    if isinstance(expression, cst.BinaryOperation) and isinstance(expression.operator, ELEMENTWISE):
        return _per_sample(expression.left, names, facts) and _per_sample(expression.right, names, facts)
    if isinstance(expression, cst.Attribute):
        return expression.attr.value != "shape" and _per_sample(expression.value, names, facts)
    if not isinstance(expression, cst.Call):
        return False
    if _is_component_call(expression, facts):
        return all(_per_sample(argument.value, names, facts) for argument in expression.args)
    reads_names = any(set(names_read(argument.value)) & set(names) for argument in expression.args)
    if not isinstance(expression.func, cst.Attribute) or reads_names:
        return False
    receiver = expression.func.value
    # a model output's own methods (`latent_dist.mode()`) read the output, not the batch
    if expression.func.attr.value in PER_SAMPLE_METHODS or _runs_a_component(receiver, facts):
        return _per_sample(receiver, names, facts)
    return False


def _runs_a_component(expression: cst.BaseExpression, facts: ClassFacts) -> bool:
    return any(_is_component_call(call, facts) for call in findall(expression, m.Call()))


def _is_component_call(call: cst.Call, facts: ClassFacts) -> bool:
    """A call of a component or of one of its methods (`self.unet(x)`, `self.vae.encode(x)`)."""
    owner = call.func
    while isinstance(owner, cst.Attribute) and isinstance(owner.value, cst.Attribute):
        owner = owner.value
    return matches(owner, m.Attribute(value=m.Name("self"))) and owner.attr.value in facts.init.components
