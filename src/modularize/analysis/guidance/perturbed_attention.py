"""Perturbed-attention guidance (PAG) as diffusers' `PAGMixin` lets a pipeline write it.

A PAG pipeline runs the conditional batch a second time through a denoiser whose chosen self-attention layers
attend to themselves only, and adds `pag_scale * (cond - perturbed)` to its combine. It does so through the
mixin's methods, under one flag, beside its plain CFG code:

    if self.do_perturbed_attention_guidance:                       # the PAG flag: any test, the same everywhere
        prompt_embeds = self._prepare_perturbed_attention_guidance(prompt_embeds, negative_prompt_embeds, cfg)
    elif self.do_classifier_free_guidance:
        prompt_embeds = torch.cat([negative_prompt_embeds, prompt_embeds])
    ...
    if self.do_perturbed_attention_guidance:
        self._set_pag_attn_processor(pag_applied_layers=self.pag_applied_layers, do_classifier_free_guidance=cfg)
    for i, t in enumerate(timesteps):
        latent_model_input = torch.cat([latents] * (prompt_embeds.shape[0] // latents.shape[0]))
        ...
        if self.do_perturbed_attention_guidance:
            noise_pred = self._apply_perturbed_attention_guidance(noise_pred, cfg, self.guidance_scale, t)
        elif self.do_classifier_free_guidance:
            noise_pred_uncond, noise_pred_text = noise_pred.chunk(2)
            noise_pred = noise_pred_uncond + self.guidance_scale * (noise_pred_text - noise_pred_uncond)

The mixin's methods have fixed meanings (they are diffusers' API, like `rescale_noise_cfg`), so the branches that
call them are PAG and the rest is the pipeline's CFG. `find_perturbed_attention` finds them; the analysis then
reads `__call__` with PAG off (`normalize.perturbed_attention`) and the package's guider adds it back
(`emit.runtime.perturbed_attention.StandardPerturbedAttentionGuidance`), configured from the call's `pag_scale` and
`pag_adaptive_scale` and the `__init__`'s `pag_applied_layers`.

What is refused: PAG calls outside a branch on one flag, the flag read elsewhere, and PAG processors the guider
cannot name (anything but two processor classes constructed without arguments: SD3's joint, Sana's linear and
HunyuanDiT's own PAG processors are named, and the guider runs them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import libcst as cst
import libcst.matchers as m

from ...cst.match_filter import matches
from ...cst.substitute import same_expression
from ...cst.tree_walk import findall, walk
from ...frontend.class_facts import ClassFacts
from ...frontend.parse import SourceModule, code

# the mixin's methods a pipeline calls to do PAG (`PAGMixin` in diffusers.pipelines.pag.pag_utils)
PAG_METHODS = (
    "_prepare_perturbed_attention_guidance",
    "_apply_perturbed_attention_guidance",
    "_set_pag_attn_processor",
)
SET_LAYERS = "set_pag_applied_layers"
PAG_MIXIN = "PAGMixin"  # the base class that provides them: nothing of it is left for a package to use
# the per-call state the mixin's properties read (`pag_scale`, `do_pag_adaptive_scaling`)
SCALE_STATE = "_pag_scale"
ADAPTIVE_SCALE_STATE = "_pag_adaptive_scale"

_PAG_CALL = m.Call(func=m.Attribute(value=m.Name("self"), attr=m.OneOf(*(m.Name(n) for n in PAG_METHODS))))
_APPLY = m.Call(func=m.Attribute(value=m.Name("self"), attr=m.Name("_apply_perturbed_attention_guidance")))


@dataclass(frozen=True)
class PerturbedAttention:
    """Where a pipeline does PAG, and what configures it."""

    flag: cst.BaseExpression  # the test of every PAG branch (`self.do_perturbed_attention_guidance`)
    branches: tuple[cst.If | cst.IfExp, ...]  # every `if` / conditional expression on that flag
    cfg_flag: cst.BaseExpression  # the CFG flag the combine is handed
    scale: str  # the `__call__` argument the PAG scale comes from (`pag_scale`)
    adaptive_scale: str | None  # ... and its adaptive scale (`pag_adaptive_scale`)
    settings: tuple[cst.SimpleStatementLine, ...]  # `self._pag_scale = pag_scale`, ...
    batch_ratio_repeats: tuple[cst.Call, ...]  # `torch.cat([x] * (embeds.shape[0] // x.shape[0]))`
    layers: str  # the layers PAG perturbs by default: source text of `__init__`'s value (`"mid"`)
    layers_statement: cst.BaseStatement  # `self.set_pag_applied_layers(...)` in `__init__`
    # the pipeline's own PAG processors (with CFG, without), by class name; None: the mixin's identity ones
    processors: tuple[str, str] | None = None


def _shape0(value: m.BaseMatcherNode) -> m.Subscript:
    return m.Subscript(
        value=m.Attribute(value=value, attr=m.Name("shape")),
        slice=[m.SubscriptElement(m.Index(m.Integer("0")))],
    )


# `a.shape[0]`, or `a.shape[0] // num_frames`: the batch of `a`, whose rows may hold several per sample (AnimateDiff
# repeats its prompt embeddings per frame)
_CONDITIONINGS_BATCH = _shape0(m.DoNotCare()) | m.BinaryOperation(
    left=_shape0(m.DoNotCare()), operator=m.FloorDivide(), right=m.DoNotCare()
)
# `[x] * (a.shape[0] // x.shape[0])`: `x` repeated to the batch of `a`
_BATCH_RATIO = m.BinaryOperation(
    left=m.List(elements=[m.Element(m.Name())]),
    operator=m.Multiply(),
    right=m.BinaryOperation(left=_CONDITIONINGS_BATCH, operator=m.FloorDivide(), right=_shape0(m.Name())),
)


def repeated_to_batch_of(call: cst.Call) -> tuple[cst.Name, cst.BaseExpression] | None:
    """`torch.cat([x] * (a.shape[0] // x.shape[0]))` -> (`x`, `a`); also
    `torch.cat([x] * (a.shape[0] // num_frames // x.shape[0]))` -> (`x`, `a`)."""
    if len(call.args) != 1 or not matches(call.args[0].value, _BATCH_RATIO):
        return None
    product = call.args[0].value
    repeated = product.left.elements[0].value
    batch = product.right.left
    if isinstance(batch, cst.BinaryOperation):
        batch = batch.left
    numerator, denominator = batch.value.value, product.right.right.value.value
    if not same_expression(repeated, denominator):
        return None
    return repeated, numerator


def find_perturbed_attention(
    source: SourceModule, facts: ClassFacts, body: Sequence[cst.BaseStatement]
) -> PerturbedAttention | None:
    """The PAG of `__call__` (`body`), or None when it calls none of the mixin's PAG methods."""
    calls = [call for statement in body for call in findall(statement, _PAG_CALL)]
    if not calls:
        return None
    layers, layers_statement, processors = _layers(source, facts, calls[0])
    # each call's innermost `if` holding it in its body (parents come before children)
    innermost: dict[int, cst.If] = {}
    for statement in body:
        for node in findall(statement, m.If()):
            for call in findall(node.body, _PAG_CALL):
                innermost[id(call)] = node
    tests = [innermost[id(call)].test for call in calls if id(call) in innermost]
    flag = tests[0] if tests else None
    if flag is None or any(not same_expression(test, flag) for test in tests):
        at = calls[0] if flag is None else next(t for t in tests if not same_expression(t, flag))
        raise source.refuse(
            at,
            "perturbed-attention guidance that is not switched by one flag: every call of the PAG mixin's methods "
            "must sit in a branch on the same test (`if self.do_perturbed_attention_guidance:`)",
        )
    branches = tuple(
        node
        for statement in body
        for node in findall(statement, m.If() | m.IfExp())
        if same_expression(node.test, flag)
    )
    covered = {id(call) for branch in branches for call in findall(branch.body, _PAG_CALL)}
    outside = [call for call in calls if id(call) not in covered]
    if outside:
        raise source.refuse(outside[0], "a PAG mixin method called outside the branches on the PAG flag")
    flag_reads = [
        node
        for statement in body
        for node in walk(statement)
        if type(node) is type(flag) and same_expression(node, flag)
    ]
    tested = {id(branch.test) for branch in branches}
    stray = [node for node in flag_reads if id(node) not in tested]
    if stray:
        raise source.refuse(stray[0], "the PAG flag is read outside the tests of its branches")
    applies = [call for call in calls if matches(call, _APPLY)]
    if len(applies) != 1 or len(applies[0].args) < 4:
        raise source.refuse(calls[0], "expected one PAG combine (`self._apply_perturbed_attention_guidance(...)`)")
    settings, arguments = _settings(facts, body)
    if SCALE_STATE not in arguments:
        raise source.refuse(
            applies[0], f"the PAG scale is not set from a `__call__` argument (`self.{SCALE_STATE} = <argument>`)"
        )
    repeats = tuple(
        call
        for statement in body
        for call in findall(statement, m.Call(func=m.Attribute(value=m.Name("torch"), attr=m.Name("cat"))))
        if repeated_to_batch_of(call) is not None
    )
    return PerturbedAttention(
        flag=flag,
        branches=branches,
        cfg_flag=applies[0].args[1].value,
        scale=arguments[SCALE_STATE],
        adaptive_scale=arguments.get(ADAPTIVE_SCALE_STATE),
        settings=settings,
        batch_ratio_repeats=repeats,
        layers=layers,
        layers_statement=layers_statement,
        processors=processors,
    )


def _settings(
    facts: ClassFacts, body: Sequence[cst.BaseStatement]
) -> tuple[tuple[cst.SimpleStatementLine, ...], dict[str, str]]:
    """`self._pag_scale = pag_scale` (and the adaptive scale's): the statements and {state: argument}."""
    parameters = {p.name for p in facts.call_parameters}
    found, arguments = [], {}
    for statement in body:
        for state in (SCALE_STATE, ADAPTIVE_SCALE_STATE):
            pattern = m.SimpleStatementLine(
                body=[
                    m.Assign(
                        targets=[m.AssignTarget(m.Attribute(value=m.Name("self"), attr=m.Name(state)))],
                        value=m.Name(m.MatchIfTrue(lambda name: name in parameters)),
                    )
                ]
            )
            if matches(statement, pattern):
                found.append(statement)
                arguments[state] = statement.body[0].value.value
    return tuple(found), arguments


def _layers(
    source: SourceModule, facts: ClassFacts, at: cst.CSTNode
) -> tuple[str, cst.BaseStatement, tuple[str, str] | None]:
    """The layers `__init__` hands `set_pag_applied_layers`, as source text of their default value, and the PAG
    processors it hands it (`pag_attn_processors=(PAGCFGJointAttnProcessor2_0(), PAGJointAttnProcessor2_0())`),
    by class name."""
    setter = m.Call(func=m.Attribute(value=m.Name("self"), attr=m.Name(SET_LAYERS)))
    found = [(statement, call) for statement in facts.init.adaptation for call in findall(statement, setter)]
    if len(found) != 1:
        raise source.refuse(
            at, f"the PAG mixin's methods are called, but `__init__` does not call `self.{SET_LAYERS}(...)` once"
        )
    statement, call = found[0]
    given = [arg for arg in call.args[1:] if arg.keyword is None or arg.keyword.value == "pag_attn_processors"]
    processors = None
    if given:
        pair = m.Tuple([m.Element(m.Call(func=m.Name(), args=[])), m.Element(m.Call(func=m.Name(), args=[]))])
        if not matches(given[0].value, pair):
            raise source.refuse(
                given[0], "PAG processors that are not two processor classes constructed without arguments"
            )
        processors = tuple(element.value.func.value for element in given[0].value.elements)
    layers = call.args[0].value if call.args else None
    if isinstance(layers, cst.Name):
        parameter = next((p for p in facts.init.parameters if p.name == layers.value), None)
        if parameter is None or parameter.default is None:
            raise source.refuse(call, "the PAG layers are not an `__init__` argument with a default")
        return parameter.default, statement, processors
    if isinstance(layers, (cst.SimpleString, cst.List)):
        return code(layers), statement, processors
    raise source.refuse(call, "the PAG layers are neither an `__init__` argument nor a literal")
