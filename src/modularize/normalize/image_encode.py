"""Split the VAE encode of the input image out of the helper that does it, so it becomes its own block.

Image-to-image and inpainting pipelines encode the image inside `prepare_latents`, between checks and noising:

    def prepare_latents(self, image, timestep, batch_size, num_images_per_prompt, dtype, device, generator=None):
        image = image.to(device=device, dtype=dtype)
        batch_size = batch_size * num_images_per_prompt
        if image.shape[1] == 4:
            init_latents = image
        else:
            init_latents = retrieve_latents(self.vae.encode(image), generator=generator)
            init_latents = self.vae.config.scaling_factor * init_latents
        ...  # duplicate to batch_size, add noise
        return latents

    # 6. Prepare latent variables
    latents = self.prepare_latents(image, latent_timestep, batch_size, num_images_per_prompt, ...)

The helper is cut after its last top-level statement that encodes. The part up to there becomes a helper of its
own returning the latents it produced; the rest keeps the helper's name and takes those latents as a keyword-only
argument, recomputing the few plain assignments of the first part it still reads:

    def prepare_latents_vae_encode(self, image, batch_size, num_images_per_prompt, dtype, device, generator=None):
        image = image.to(device=device, dtype=dtype)
        batch_size = batch_size * num_images_per_prompt
        if image.shape[1] == 4: ...
        return init_latents

    def prepare_latents(self, timestep, batch_size, num_images_per_prompt, dtype, device, generator=None, *,
                        init_latents):
        batch_size = batch_size * num_images_per_prompt
        ...  # duplicate to batch_size, add noise

    # vae_encoder (a block of its own, just ahead of the block that called the helper)
    image_latents = self.prepare_latents_vae_encode(image=image, batch_size=batch_size, ...)
    # 6. Prepare latent variables
    latents = self.prepare_latents(latent_timestep, batch_size, ..., init_latents=image_latents)

A user holding pre-encoded latents drops the `vae_encoder` block and passes `image_latents`. The encode still runs
exactly where it ran in the source (the generator is consumed in the same order), so the split changes no bits.
Whatever the split cannot prove safe (statements that would run twice or in another order, a helper called from
elsewhere, per-call state, ...) leaves the helper whole, with the reason in the conversion report.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import libcst as cst
import libcst.matchers as m

from ..analysis.segment import Segment
from ..cst.dataflow import flow_of, names_read
from ..cst.match_filter import matches
from ..cst.substitute import replace_nodes
from ..cst.tree_walk import findall, remembered, walk
from ..frontend.class_facts import ClassFacts
from ..frontend.parse import SourceModule

ENCODER_KEY = "vae_encoder"
IMAGE_LATENTS = "image_latents"
# builtins that only compute: a statement calling nothing else can run twice, or earlier, without changing anything
_PURE_BUILTINS = frozenset({"int", "float", "bool", "len", "min", "max", "abs", "round", "tuple"})
_SELF = m.Name("self")


_EARLY_EXIT = m.If(body=m.IndentedBlock(body=[m.SimpleStatementLine(body=[m.Return()])]), orelse=None)


def _returning_none(exit_: cst.If) -> cst.If:
    """`if latents is not None: return latents.to(d)` -> `if latents is not None: return None` (nothing encoded)."""
    line = exit_.body.body[0]
    return exit_.with_changes(
        body=exit_.body.with_changes(body=[line.with_changes(body=[cst.Return(cst.Name("None"))])])
    )


@dataclass(frozen=True)
class ImageEncodeSplit:
    helper: str  # the helper that encoded, now taking the latents (`prepare_latents`)
    encoder: str  # the new helper holding the encode (`prepare_latents_vae_encode`)
    latents: str  # the helper's variable holding the encoded image (`init_latents`)
    call_site: cst.BaseStatement  # the `__call__` statement calling the helper
    call: cst.BaseStatement  # that statement, now passing `image_latents`
    encode: tuple[cst.BaseStatement, ...]  # the `vae_encoder` block's statements
    methods: Mapping[str, cst.FunctionDef]  # {helper: the rest, encoder: the encode}
    origins: Mapping[str, tuple[cst.CSTNode, str]]  # new statement or function -> (node it came from, what it is)


@dataclass(frozen=True)
class NotSplit:
    node: cst.CSTNode
    reason: str


def split_image_encode(
    facts: ClassFacts, stages: Sequence[Sequence[cst.BaseStatement]]
) -> ImageEncodeSplit | NotSplit | None:
    """Split the first helper call of `__call__` (before the loop; `stages` are its statements by stage) that
    VAE-encodes; None when nothing is encoded before the loop."""
    calls = {name: _self_calls(method) for name, method in facts.methods.items()}
    encoding = _encoding_helpers(calls)
    if not encoding:
        return None
    calls["__call__"] = _self_calls(facts.call)
    for stage_index, stage in enumerate(stages):
        for position, statement in enumerate(stage):
            found = _first_encode(statement, encoding)
            if found is None:
                continue
            if isinstance(found, str):
                return NotSplit(statement, found)
            return _split_at(facts, calls, encoding, stages, stage_index, position, found)
    return None


def with_image_encode(
    source: SourceModule,
    facts: ClassFacts,
    body: Sequence[cst.BaseStatement],
    segments: Sequence[Segment],
    split: ImageEncodeSplit,
) -> tuple[SourceModule, ClassFacts, list[cst.BaseStatement], list[Segment]]:
    """The source, class, `__call__` body and stages as if the source had been written split: new statements and
    functions report the lines of what they came from."""
    source = source.with_positions({new: old for new, (old, _) in split.origins.items()})
    facts = replace(facts, methods={**facts.methods, **split.methods})
    new_body: list[cst.BaseStatement] = []
    for statement in body:
        if statement is split.call_site:
            new_body += [*split.encode, split.call]
        else:
            new_body.append(statement)
    new_segments: list[Segment] = []
    for segment in segments:
        if any(s is split.call_site for s in segment.statements):
            label = f"VAE-encode the image (split out of {split.helper})"
            new_segments.append(Segment(label, "encode", split.encode, key=ENCODER_KEY))
            statements = tuple(split.call if s is split.call_site else s for s in segment.statements)
            segment = replace(segment, statements=statements)
        new_segments.append(segment)
    return source, facts, new_body, new_segments


def _encoding_helpers(calls: Mapping[str, Counter[str]]) -> set[str]:
    """Helper methods that call `self.vae.encode`, directly or through another helper."""
    encoding = {name for name, called in calls.items() if "vae.encode" in called}
    changed = True
    while changed:
        changed = False
        for name, called in calls.items():
            if name not in encoding and not encoding.isdisjoint(called):
                encoding.add(name)
                changed = True
    return encoding


def _self_calls(node: cst.CSTNode) -> Counter[str]:
    """How often a node calls what on `self` (helper names, and `vae.encode`); attributes it only reads count 0.
    One plain walk: matchers are slow here, and every method of the class is walked (once per conversion, not
    on every start of the analysis: a fresh copy is returned each time)."""
    return Counter(remembered("self calls", node, _counted_self_calls))


def _counted_self_calls(node: cst.CSTNode) -> Counter[str]:
    found: Counter[str] = Counter()
    # (by exact class: LibCST's node classes are final, and `isinstance` goes through `ABCMeta` on every miss)
    for child in walk(node):
        if type(child) is cst.Attribute:
            if type(child.value) is cst.Name and child.value.value == "self":
                found[child.attr.value] += 0  # read, not called (per-call state is read like this)
        elif type(child) is cst.Call and type(child.func) is cst.Attribute:
            func = child.func
            owner = func.value
            if type(owner) is cst.Name and owner.value == "self":
                found[func.attr.value] += 1
            elif (
                func.attr.value == "encode"
                and type(owner) is cst.Attribute
                and owner.attr.value == "vae"
                and type(owner.value) is cst.Name
                and owner.value.value == "self"
            ):
                found["vae.encode"] += 1
    return found


@dataclass(frozen=True)
class _Site:
    """Where `__call__` calls the encoding helper: `x = self.helper(...)`, possibly under `if`s (`if latents is
    None:`) whose tests the encoder block repeats."""

    call: cst.Call
    statement: cst.SimpleStatementLine
    guards: tuple[cst.If, ...]  # outermost first


def _first_encode(statement: cst.BaseStatement, encoding: set[str]) -> _Site | str | None:
    called = _self_calls(statement)
    if "vae.encode" in called:
        return "the image is VAE-encoded in `__call__` itself, not in a helper"
    if encoding.isdisjoint(called):
        return None
    calls = [c for c in findall(statement, m.Call(func=m.Attribute(value=_SELF, attr=m.Name()))) if _helper(c)]
    call = next(c for c in calls if _helper(c) in encoding)
    guards: list[cst.If] = []
    node: cst.BaseStatement = statement
    while isinstance(node, cst.If) and node.orelse is None and not _inside(node.test, call):
        first = node.body.body[0]
        if not _inside(first, call):  # statements ahead of it would have to move out of the branch
            break
        guards.append(node)
        node = first
    single = m.SimpleStatementLine(body=[m.Assign(value=m.Call(func=m.Attribute(value=_SELF, attr=m.Name())))])
    if not matches(node, single) or node.body[0].value is not call:
        return f"`self.{_helper(call)}(...)` encodes the image but is not a statement of its own (`x = ...`)"
    return _Site(call, node, tuple(guards))


def _inside(node: cst.CSTNode, target: cst.CSTNode) -> bool:
    return any(child is target for child in walk(node))


def _helper(call: cst.Call) -> str:
    return call.func.attr.value


def _split_at(
    facts: ClassFacts,
    calls: Mapping[str, Counter[str]],
    encoding: set[str],
    stages: Sequence[Sequence[cst.BaseStatement]],
    stage_index: int,
    position: int,
    found: _Site,
) -> ImageEncodeSplit | NotSplit:
    stage = stages[stage_index]
    top, site, call = stage[position], found.statement, found.call
    name = _helper(call)
    helper = facts.methods[name]
    encoder = f"{name.lstrip('_')}_vae_encode"
    problem = _helper_problem(facts, calls, name, encoder)
    if problem:
        return NotSplit(site, problem)
    parameters = [p.name.value for p in (*helper.params.posonly_params, *helper.params.params)][1:]
    docstring, body = _split_docstring(helper.body.body)
    last_encode = max(i for i, s in enumerate(body) if not (encoding | {"vae.encode"}).isdisjoint(_self_calls(s)))
    head, tail = body[: last_encode + 1], body[last_encode + 1 :]
    # `if latents is not None: return latents.to(...)` ahead of the encode: the encoder returns nothing there, and the
    # rest returns what the source returned before anything else
    exits = [statement for statement in head[:-1] if matches(statement, _EARLY_EXIT)]
    if any(isinstance(node, cst.Return) for statement in head if statement not in exits for node in walk(statement)):
        return NotSplit(site, f"`{name}` may return before it encodes, other than by one `if ...: return ...`")
    tail_reads = set(flow_of(tail).reads) | set(flow_of(exits).reads)
    handed = [n for n in flow_of([body[last_encode]]).writes if n in tail_reads]
    if len(handed) != 1:
        what = ", ".join(f"`{n}`" for n in handed) or "nothing"
        return NotSplit(site, f"the encode in `{name}` hands {what} to the rest of it; expected one latents variable")
    latents = handed[0]
    if latents in _parameter_names(helper):
        return NotSplit(site, f"`{name}` encodes into its own argument `{latents}`")
    needed = (tail_reads & set(flow_of(head[:-1]).writes)) - {latents}
    recomputed = _backward_slice(head[:-1], needed)
    if isinstance(recomputed, NotSplit):
        return NotSplit(site, f"the rest of `{name}` {recomputed.reason}")

    head = _without_dead_assignments(head)
    head_flow = flow_of(head)
    encode_body = [_returning_none(statement) if statement in exits else statement for statement in head]
    if latents not in head_flow.definite:  # encoded on some paths only: the rest reads it only on those
        encode_body.insert(0, cst.parse_statement(f"{latents} = None"))
    encode_body.append(cst.SimpleStatementLine([cst.Return(cst.Name(latents))], leading_lines=[cst.EmptyLine()]))
    rest_body = [*docstring, *recomputed, *(exit_.deep_clone() for exit_ in exits), *tail]
    if not docstring and all(line.comment is None for line in rest_body[0].leading_lines):
        rest_body[0] = rest_body[0].with_changes(leading_lines=[])  # no blank line right below the `def`
    encode_function = _with_body(helper, encoder, encode_body, set(head_flow.reads), None)
    rest_function = _with_body(helper, name, rest_body, set(flow_of(rest_body).reads), latents)

    arguments = _bind(call, parameters)
    if isinstance(arguments, str):
        return NotSplit(site, arguments)
    encode_arguments = [(p, arguments[p]) for p in _parameter_names(encode_function) if p in arguments]
    for _, value in encode_arguments:
        if not _pure(value):
            return NotSplit(site, f"the argument `{_code(value)}` of `{name}` would be evaluated twice")
    before = list(stage[:position])
    earlier = [s for st in stages[:stage_index] for s in st] + before
    call_parameters = {p.name for p in facts.call_parameters}
    if IMAGE_LATENTS in call_parameters or IMAGE_LATENTS in flow_of(earlier).writes:
        return NotSplit(site, f"`__call__` already has a variable `{IMAGE_LATENTS}`")
    for statement in before:
        if not _pure(statement):
            return NotSplit(statement, "it would run after the VAE encode it precedes in the source")
    for guard in found.guards:
        if not _pure(guard.test):
            return NotSplit(guard, "the test guarding the call would be evaluated twice")
    read = [*(v for _, v in encode_arguments), *(guard.test for guard in found.guards)]
    prelude = _backward_slice(before, {n for node in read for n in names_read(node)})
    if isinstance(prelude, NotSplit):  # unreachable: every statement before is pure
        return prelude
    # copies, so each block holds its own nodes; their comments stay with the originals
    clones = [statement.deep_clone().with_changes(leading_lines=[]) for statement in prelude]
    encode_call = cst.Call(
        func=cst.Attribute(cst.Name("self"), cst.Name(encoder)),
        args=[cst.Arg(value, keyword=cst.Name(p)) for p, value in encode_arguments],
    )
    encode_statement = cst.SimpleStatementLine([cst.Assign([cst.AssignTarget(cst.Name(IMAGE_LATENTS))], encode_call)])
    rest_call = call.with_changes(args=_kept_arguments(call, parameters, set(_parameter_names(rest_function))))
    rest_call = rest_call.with_changes(args=[*rest_call.args, cst.Arg(cst.Name(IMAGE_LATENTS), cst.Name(latents))])
    new_site = site.with_changes(body=[site.body[0].with_changes(value=rest_call)])
    new_top = new_site if top is site else replace_nodes(top, {site: new_site})
    for guard in reversed(found.guards):  # encoded when the source would have called the helper
        encode_statement = cst.If(guard.test.deep_clone(), cst.IndentedBlock([encode_statement]))
    origins = {clone: (original, "recomputed") for clone, original in zip(clones, prelude, strict=True)}
    origins[encode_statement] = (top, "encode")
    origins[new_top] = (top, "call")
    origins[encode_function] = (helper, "encoder")
    origins[rest_function] = (helper, "rest")
    return ImageEncodeSplit(
        helper=name,
        encoder=encoder,
        latents=latents,
        call_site=top,
        call=new_top,
        encode=(*clones, encode_statement),
        methods={name: rest_function, encoder: encode_function},
        origins=origins,
    )


def _helper_problem(facts: ClassFacts, calls: Mapping[str, Counter[str]], name: str, encoder: str) -> str | None:
    helper = facts.methods[name]
    if encoder in facts.methods:
        return f"the class already has a method `{encoder}`"
    params = helper.params
    if isinstance(params.star_arg, cst.Param) or params.star_kwarg is not None:
        return f"`{name}` takes `*args` / `**kwargs`"
    if not params.params or params.params[0].name.value != "self" or params.posonly_params:
        return f"`{name}` is not a plain method"
    uses = sum(called[name] for caller, called in calls.items() if caller != name)
    if uses != 1:
        return f"`{name}` is called {uses} times; only a helper called once is split"
    per_call = [attribute for attribute in calls[name] if facts.kind_of(attribute) == "per_call"]
    if per_call:
        return f"`{name}` reads per-call state `self.{per_call[0]}`"
    return None


def _split_docstring(body: Sequence[cst.BaseStatement]) -> tuple[list, list]:
    if body and matches(body[0], m.SimpleStatementLine(body=[m.Expr(value=m.SimpleString())])):
        return [body[0]], list(body[1:])
    return [], list(body)


def _backward_slice(statements: Sequence[cst.BaseStatement], needed: set[str]) -> list | NotSplit:
    """The statements (in order) that compute `needed`; each must be safe to run again."""
    kept: list[cst.BaseStatement] = []
    needed = set(needed)
    for statement in reversed(statements):
        flow = flow_of([statement])
        written = set(flow.writes) & needed
        if not written:
            continue
        if not _pure(statement):
            names = ", ".join(f"`{n}`" for n in sorted(written))
            return NotSplit(statement, f"reads {names}, computed by a statement that cannot run twice")
        kept.insert(0, statement)
        needed = (needed - set(flow.definite)) | set(flow.reads)
    return kept


def _without_dead_assignments(statements: Sequence[cst.BaseStatement]) -> list[cst.BaseStatement]:
    """Drop plain assignments nothing after them reads (the rest of the helper, not the encode, needed them)."""
    kept = list(statements)
    for index in range(len(kept) - 2, -1, -1):
        statement = kept[index]
        if _pure(statement) and not set(flow_of([statement]).writes) & set(flow_of(kept[index + 1 :]).reads):
            del kept[index]
    return kept


def _pure(node: cst.CSTNode) -> bool:
    """Plain assignments of arithmetic, attribute reads and a few builtins: nothing that could consume random
    numbers or change state (a generator passed along is only a name)."""
    if isinstance(node, cst.BaseStatement):
        pattern = m.SimpleStatementLine(body=[m.AtLeastN(m.Assign() | m.AnnAssign(), n=1)])
        if not matches(node, pattern):
            return False
        targets = [t.target for s in node.body for t in (s.targets if isinstance(s, cst.Assign) else [s])]
        if not all(isinstance(t, cst.Name) or matches(t, m.Tuple()) for t in targets):
            return False
    for called in findall(node, m.Call()):
        if not (isinstance(called.func, cst.Name) and called.func.value in _PURE_BUILTINS):
            return False
    return not findall(node, m.Lambda() | m.Await() | m.Yield() | m.NamedExpr())


def _parameter_names(function: cst.FunctionDef) -> list[str]:
    params = function.params
    return [p.name.value for p in (*params.posonly_params, *params.params, *params.kwonly_params)][1:]


def _with_body(
    helper: cst.FunctionDef, name: str, body: list[cst.BaseStatement], reads: set[str], latents: str | None
) -> cst.FunctionDef:
    params = helper.params
    kept = [p for p in params.params if p.name.value == "self" or p.name.value in reads]
    kwonly = [p for p in params.kwonly_params if p.name.value in reads]
    star_arg = params.star_arg if kwonly else cst.MaybeSentinel.DEFAULT
    if latents is not None:
        kwonly.append(cst.Param(cst.Name(latents)))
        star_arg = params.star_arg if isinstance(params.star_arg, cst.ParamStar) else cst.ParamStar()
    kept = [p.with_changes(comma=cst.MaybeSentinel.DEFAULT) for p in kept]
    kwonly = [p.with_changes(comma=cst.MaybeSentinel.DEFAULT) for p in kwonly]
    return helper.with_changes(
        name=cst.Name(name),
        params=params.with_changes(params=kept, kwonly_params=kwonly, star_arg=star_arg),
        body=helper.body.with_changes(body=body),
    )


def _bind(call: cst.Call, parameters: Sequence[str]) -> dict[str, cst.BaseExpression] | str:
    bound: dict[str, cst.BaseExpression] = {}
    for index, arg in enumerate(call.args):
        if arg.star:
            return f"`{_code(call.func)}(...)` is called with `*` / `**` arguments"
        if arg.keyword is None:
            if index >= len(parameters):
                return f"`{_code(call.func)}(...)` gets more positional arguments than it takes"
            bound[parameters[index]] = arg.value
        else:
            bound[arg.keyword.value] = arg.value
    return bound


def _kept_arguments(call: cst.Call, parameters: Sequence[str], kept: set[str]) -> list[cst.Arg]:
    """The call's arguments for the parameters still taken; positional ones after a dropped one become keywords."""
    result: list[cst.Arg] = []
    shifted = False
    for index, arg in enumerate(call.args):
        name = arg.keyword.value if arg.keyword is not None else parameters[index]
        if name not in kept:
            shifted = True
            continue
        if arg.keyword is None and shifted:
            arg = arg.with_changes(keyword=cst.Name(name), equal=cst.AssignEqual())
        result.append(arg.with_changes(comma=cst.MaybeSentinel.DEFAULT))
    return result


def _code(node: cst.CSTNode) -> str:
    return cst.Module(body=[]).code_for_node(node)
