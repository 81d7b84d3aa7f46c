"""Follow CFG-paired tensors from their concatenation to the denoiser call.

Once `prompt_embeds = torch.cat([negative_prompt_embeds, prompt_embeds])` is undone, `prompt_embeds` holds the
conditional half and `negative_prompt_embeds` the unconditional one. Statements between the concatenation and the
model call that compute from a paired tensor are mirrored onto its counterpart, so the pair reaches the call:

    add_time_ids = add_time_ids.to(device).repeat(batch_size * num_images_per_prompt, 1)
    added_cond_kwargs = {"text_embeds": add_text_embeds, "time_ids": add_time_ids}

becomes

    if self.do_classifier_free_guidance:
        if batch_size * num_images_per_prompt > 1 and not torch.equal(negative_add_time_ids, add_time_ids):
            raise ValueError("...")
    add_time_ids = add_time_ids.to(device).repeat(batch_size * num_images_per_prompt, 1)
    if self.do_classifier_free_guidance:
        negative_add_time_ids = negative_add_time_ids.to(device).repeat(batch_size * num_images_per_prompt, 1)
    added_cond_kwargs = {"text_embeds": add_text_embeds, "time_ids": add_time_ids}
    if self.do_classifier_free_guidance:
        negative_added_cond_kwargs = {"text_embeds": negative_pooled_prompt_embeds, "time_ids": negative_add_time_ids}

Mirroring is exact for operations that treat each sample on its own (device and dtype moves, containers). A
`.repeat(k, ...)` of the concatenated pair tiles `[negative, positive]` as a whole, interleaving the two across the
batch; per half it is the same only when both halves are equal, so the generated code checks that at run time and
refuses otherwise. Anything else reading a paired tensor's batch is refused at conversion time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import libcst as cst
import libcst.matchers as m

from ...cst.dataflow import flow_of, names_read
from ...cst.match_filter import matches
from ...cst.substitute import replace_nodes, substitute_names
from ...cst.tree_walk import findall, remembered, visit_read_only, walk
from ...frontend.parse import SourceModule, code
from ..loop_header import fresh_name
from .doubled_batch import FILLS_LIKE

# methods that act on each sample of a batch independently
PER_SAMPLE_METHODS = frozenset(
    {"to", "float", "half", "bfloat16", "double", "type", "contiguous", "clone", "detach", "cpu", "cuda"}
)
_CAT_ALONG_FEATURES = m.Call(
    func=m.Attribute(value=m.Name("torch"), attr=m.Name("cat") | m.Name("concat") | m.Name("concatenate")),
    args=[m.Arg(m.List(), keyword=None), m.Arg(keyword=m.Name("dim"))],
)
# arithmetic that works sample by sample (the batch leads, or broadcasts): not `@`
ELEMENTWISE = (cst.Add, cst.Subtract, cst.Multiply, cst.Divide, cst.FloorDivide, cst.Modulo, cst.Power)
# a call of one of those, or a cast (`x.to(d)`, `x.bool()`): each sample moved or cast on its own
PER_SAMPLE_CALL = m.Call(
    func=m.Attribute(attr=m.OneOf(*map(m.Name, sorted(PER_SAMPLE_METHODS | {"bool", "long", "int"}))))
)
# attributes whose value does not depend on the batch size
BATCH_FREE_ATTRIBUTES = frozenset({"dtype", "device", "ndim"})


@dataclass(frozen=True)
class Pairing:
    pairs: Mapping[str, str]  # variable -> its unconditional counterpart, as the model call sees them
    mirrored: tuple[tuple[cst.CSTNode, cst.FlattenSentinel], ...]  # statement -> itself with guard and mirror
    layered: frozenset[str] = frozenset()  # lists of batched tensors, one per layer, and what is computed from them
    halved: frozenset[str] = frozenset()  # values both conditions share, reassigned one half of after the call


class _NotPerSample(Exception):
    pass


def _mirrorable(expression: cst.BaseExpression, pairs: Mapping[str, str], repeats: list) -> bool:
    """Whether `expression` reads paired names only in per-sample positions; collects `.repeat` uses."""
    if isinstance(expression, cst.Name):
        return expression.value in pairs
    if matches(expression, m.ListComp(for_in=m.CompFor(target=m.Name(), iter=m.Name(), ifs=[], inner_for_in=None))):
        # `[state.clone() for state in states]`: each item of a paired list, treated as the list is
        comp = expression.for_in
        if not _mirrorable(comp.iter, pairs, repeats):
            return False
        item = comp.target.value
        return _mirrorable(expression.elt, {**pairs, item: pairs[comp.iter.value]}, repeats)
    if matches(expression, m.Call(func=m.Attribute(value=m.Name("torch"), attr=m.Name()))) and (
        expression.func.attr.value in FILLS_LIKE and expression.args
    ):
        # `torch.zeros_like(embeds)`: a fill of the value's shape, sample by sample
        if any(reads_batch(arg.value, pairs) for arg in expression.args[1:]):
            raise _NotPerSample(expression)
        return _mirrorable(expression.args[0].value, pairs, repeats)
    if matches(expression, _CAT_ALONG_FEATURES):
        # `torch.cat([control, reference], dim=1)`: each sample joined to its own, along another dimension
        dims = [arg for arg in expression.args if arg.keyword is not None and arg.keyword.value == "dim"]
        if dims and not matches(dims[0].value, m.Integer("0")):
            return _mirrorable(expression.args[0].value, pairs, repeats)
    if isinstance(expression, cst.BinaryOperation) and isinstance(expression.operator, ELEMENTWISE):
        # `timestep * (1 - mask)`: elementwise arithmetic, each sample's result from that sample's operands
        sides = [_mirrorable(side, pairs, repeats) for side in (expression.left, expression.right)]
        return any(sides)
    if isinstance(expression, cst.UnaryOperation) and isinstance(expression.operator, cst.Minus):
        return _mirrorable(expression.expression, pairs, repeats)
    if isinstance(expression, cst.BooleanOperation):
        # `given or embeds`: one operand or the other, as a whole, for each condition alike
        return any([_mirrorable(expression.left, pairs, repeats), _mirrorable(expression.right, pairs, repeats)])
    if isinstance(expression, cst.IfExp):
        # `{"image_embeds": image_embeds} if ip_adapter_image is not None else None`: a test that does not read the
        # batch picks the same side for both conditions
        if reads_batch(expression.test, pairs):
            raise _NotPerSample(expression.test)
        sides = [_mirrorable(side, pairs, repeats) for side in (expression.body, expression.orelse)]
        return any(sides)
    if isinstance(expression, (cst.Dict, cst.List, cst.Tuple)):
        found = False
        for element in expression.elements:
            values = [element.key, element.value] if isinstance(element, cst.DictElement) else [element.value]
            for value in values:
                if _mirrorable(value, pairs, repeats):
                    found = True
                elif set(names_read(value)) & set(pairs):
                    raise _NotPerSample(value)
        return found
    if matches(expression, m.Call(func=m.Attribute())):
        method = expression.func.attr.value
        receiver = expression.func.value
        if any(reads_batch(arg.value, pairs) for arg in expression.args):
            raise _NotPerSample(expression)
        if not _mirrorable(receiver, pairs, repeats):
            if reads_batch(receiver, pairs):
                raise _NotPerSample(expression)
            return False
        if method == "repeat" and expression.args:
            repeats.append((receiver, expression.args[0].value))
            return True
        if method in PER_SAMPLE_METHODS or _interleaves_along_a_dimension(expression) or _reshapes_samples(expression):
            return True
        raise _NotPerSample(expression)
    if reads_batch(expression, pairs):
        raise _NotPerSample(expression)
    return False


# `x.shape[1]`, `x.shape[-1]`, `x.shape[2:]`: sizes other than the batch's
_NOT_FIRST = m.Integer(m.MatchIfTrue(lambda v: v != "0")) | m.UnaryOperation(m.Minus(), m.Integer())
_FEATURE_SIZE = m.Subscript(
    value=m.Attribute(value=m.Name(), attr=m.Name("shape")),
    slice=[m.SubscriptElement(m.Index(_NOT_FIRST) | m.Slice(lower=_NOT_FIRST, upper=None, step=None))],
)
# `x[:1]`: the first sample
_FIRST_SAMPLE = m.Subscript(
    value=m.Name(), slice=[m.SubscriptElement(m.Slice(lower=None, upper=m.Integer("1"), step=None))]
)


def _interleaves_along_a_dimension(call: cst.Call) -> bool:
    """`x.repeat_interleave(n, dim=0)` (or `repeats=n`, `dim` given either way): each sample repeated in place, so
    the halves of a concatenation stay halves (`[u, c]` -> `[u, u, c, c]`). Without `dim` it flattens; with repeats
    given per sample (a tensor) they would belong to one half or the other."""
    if call.func.attr.value != "repeat_interleave":
        return False
    keywords = {arg.keyword.value: arg.value for arg in call.args if arg.keyword is not None}
    positional = [arg.value for arg in call.args if arg.keyword is None]
    repeats = keywords.get("repeats", positional[0] if positional else None)
    has_dim = "dim" in keywords or len(positional) > 1
    return has_dim and isinstance(repeats, (cst.Integer, cst.Name, cst.Attribute, cst.BinaryOperation))


def _reshapes_samples(call: cst.Call) -> bool:
    """`x.unsqueeze(1)`, `x.squeeze(2)`: a dimension added or removed behind the batch's, in each sample alike (the
    dimension a positive number: a negative one may count back to the batch's)."""
    if call.func.attr.value not in {"unsqueeze", "squeeze"} or len(call.args) != 1:
        return False
    return matches(call.args[0].value, m.Integer(m.MatchIfTrue(lambda value: int(value, 0) > 0)))


def _batch_free(node: cst.CSTNode, pairs: Mapping[str, str]) -> bool:
    """A read of a paired value that does not depend on its batch: a size other than the batch's (`x.shape[1]`), or
    the first sample of a value both conditions share (`mask[:1]`: the same in the doubled batch and in one half)."""
    if matches(node, _FEATURE_SIZE):
        return True
    return matches(node, _FIRST_SAMPLE) and pairs.get(node.value.value) == node.value.value


def reads_batch(expression: cst.BaseExpression, pairs: Mapping[str, str]) -> bool:
    """Whether `expression` reads a paired tensor other than through a batch-free attribute:
    `f(prompt_embeds.dtype, prompt_embeds.device)` does not, `prompt_embeds.shape[0]` does."""
    batch_free = [
        node
        for node in walk(expression)
        if (
            isinstance(node, cst.Attribute)
            and isinstance(node.value, cst.Name)
            and node.attr.value in BATCH_FREE_ATTRIBUTES
        )
        or _batch_free(node, pairs)
    ]
    stripped = replace_nodes(expression, {node: cst.Name("None") for node in batch_free}) if batch_free else expression
    return bool(set(names_read(stripped)) & set(pairs))


def _root_name(expression: cst.BaseExpression) -> str | None:
    while isinstance(expression, cst.Call) and isinstance(expression.func, cst.Attribute):
        expression = expression.func.value
    return expression.value if isinstance(expression, cst.Name) else None


def _names_spelled(statement: cst.CSTNode) -> frozenset[str]:
    """Every name a statement spells (from the listing of its nodes by class, once per statement)."""
    return remembered("names spelled", statement, lambda node: frozenset(n.value for n in findall(node, _NAME)))


_NAME = m.Name()


def _paired_reads(
    statement: cst.CSTNode, pairs: Mapping[str, str], skip: set[int], source: SourceModule, starts: Mapping[str, tuple]
) -> list[cst.Name]:
    """Names of paired tensors a statement reads in a way that depends on their batch (after they were paired:
    `original_prompt_embeds = prompt_embeds` above the concatenation in the same branch reads the plain one)."""
    reads = _PairedReads(statement, pairs, skip, source, starts)
    visit_read_only(statement, reads)
    return reads.found


class _PairedReads(cst.CSTVisitor):
    # (a class of the module, not of `_paired_reads`: a class made per call is a reference cycle holding what its
    # methods see, the whole source, until the cyclic collector runs)
    def __init__(
        self,
        statement: cst.CSTNode,
        pairs: Mapping[str, str],
        skip: set[int],
        source: SourceModule,
        starts: Mapping[str, tuple],
    ):
        super().__init__()
        self.statement, self.pairs, self.skip, self.source, self.starts = statement, pairs, skip, source, starts
        self.found: list[cst.Name] = []

    def _after_pairing(self, node: cst.Name) -> bool:
        # (a node a rewrite added, the encoded image handed to the rest of its helper, is where its statement is)
        position = self.source.positions.get(node) or self.source.positions.get(self.statement)
        start = self.starts.get(node.value)
        if position is None or start is None:
            return True
        return (position.start.line, position.start.column) > start

    def on_visit(self, node: cst.CSTNode) -> bool:
        if id(node) in self.skip or isinstance(node, cst.AssignTarget) or _batch_free(node, self.pairs):
            return False
        if isinstance(node, cst.Attribute):
            if isinstance(node.value, cst.Name) and node.attr.value in BATCH_FREE_ATTRIBUTES:
                return False
            visit_read_only(node.value, self)
            return False
        if isinstance(node, cst.Arg):
            visit_read_only(node.value, self)
            return False
        if isinstance(node, cst.Name) and node.value in self.pairs and self._after_pairing(node):
            self.found.append(node)
        return True


def propagate_pairs(
    source: SourceModule,
    pipeline: str,
    pairs: Mapping[str, str],
    statements: Sequence[cst.BaseStatement],
    stop: cst.BaseStatement,
    skip: set[int],
    taken: set[str],
    condition: cst.BaseExpression,
    starts: Mapping[str, tuple] = {},
    layered: frozenset[str] = frozenset(),
    halved: tuple[cst.BaseStatement | None, frozenset[str]] = (None, frozenset()),
) -> Pairing:
    """Mirror the statements before `stop` (the model call) that compute from paired tensors; after it, only
    batch-free reads of them (`.dtype`) are allowed. Mirrors run under the CFG `condition`: without CFG there is
    no unconditional half to compute. `halved`: a statement after the call (the CFG branch) and the values both
    conditions share that it reassigns one half of (`timestep, _ = timestep.chunk(2)`): after it they are one
    condition's, as in a guider batch."""
    pairs = dict(pairs)
    mirrored = []
    reached_call = False
    shared_halved: frozenset[str] = frozenset()
    rebound: set[str] = set()
    for statement in statements:
        if statement is stop:
            reached_call = True
            continue
        if statement is halved[0]:
            shared_halved = frozenset(name for name in halved[1] if pairs.get(name) == name)
        if id(statement) in skip:
            continue
        # (a value halved after the call is one condition's from there on, and one the code after the call assigns
        # anew is not the doubled one: their reads are no batch reads)
        visible = {name: other for name, other in pairs.items() if name not in shared_halved and name not in rebound}
        # (most statements spell no paired name at all: neither writes into one nor reads one)
        spelled = not visible.keys().isdisjoint(_names_spelled(statement))
        written = _written_into(statement, visible, skip, source, starts) if spelled else None
        if written is not None:
            raise source.refuse(
                written,
                f"`{written.value}` is changed in place after it was doubled for CFG (one half differs from the "
                "other), which a guider's batches cannot reproduce",
            )
        reads = _paired_reads(statement, visible, skip, source, starts) if spelled else []
        if reached_call:
            # after the call: only reads of the value as it was (`image = vae.decode(...)` then `checker(image)` in
            # one branch reads the decoded image), and from then on names every path assigns anew are not it
            flow = flow_of([statement])
            reads = [read for read in reads if read.value in flow.reads]
            rebound |= flow.definite
        if not reads:
            continue
        if not reached_call and draws_at_random(statement):
            shared = [read for read in reads if pairs.get(read.value) == read.value]
            if shared:
                raise drawn_after_repeat(source, shared[0], shared[0].value)
        if not reached_call and _shares_only(statement, reads, pairs, skip, source, starts):
            # computed from values both conditions share (`torch.cat([x, x])` undone): one value for every batch
            # (a loop's own targets, `for i, image in enumerate(images)`, are its business: the next loop rebinds `i`)
            targets = set(names_read(statement.target)) if isinstance(statement, cst.For) else set()
            written = [name for name in flow_of([statement]).writes if name not in targets]
            pairs.update({name: name for name in written})
            if layered & {read.value for read in reads}:
                layered |= set(written)
            continue
        simple = m.SimpleStatementLine(body=[m.Assign(targets=[m.AssignTarget(m.Name())])])
        if not reached_call and isinstance(statement, cst.If):
            branches = _mirrored_branches(statement, pairs, taken)
            if branches is None:
                raise _refusal(source, reads[0])
            mirror, counterparts = branches
            # (before the `if`: its sides read what it reassigns as it was before it)
            mirrored.append((statement, cst.FlattenSentinel([_under(condition, [mirror]), statement])))
            pairs.update(counterparts)
            if layered & {read.value for read in reads}:
                layered |= set(counterparts)
            continue
        if reached_call or not matches(statement, simple):
            raise _refusal(source, reads[0])
        assign = statement.body[0]
        repeats: list = []
        try:
            _mirrorable(assign.value, pairs, repeats)
        except _NotPerSample:
            raise _refusal(source, reads[0]) from None
        target = assign.targets[0].target.value
        # (a value both conditions shared until now gets a counterpart of its own)
        shared_before = pairs.get(target, target) == target
        counterpart = fresh_name(f"negative_{target}", taken) if shared_before else pairs[target]
        taken.add(counterpart)
        value = substitute_names(assign.value, {name: cst.Name(other) for name, other in pairs.items()})
        mirror = cst.SimpleStatementLine(
            body=[cst.Assign(targets=[cst.AssignTarget(cst.Name(counterpart))], value=value)]
        )
        guards = [_repeat_guard(pipeline, pairs, receiver, count) for receiver, count in repeats]
        before = [_under(condition, guards)] if guards else []
        if shared_before and target in names_read(assign.value):
            # `x = torch.cat([x, image], dim=1)` of a shared `x`: the mirror reads `x` as it was before
            before.append(_under(condition, [mirror]))
            mirrored.append((statement, cst.FlattenSentinel([*before, statement])))
        else:
            mirrored.append((statement, cst.FlattenSentinel([*before, statement, _under(condition, [mirror])])))
        pairs[target] = counterpart
        if layered & {read.value for read in reads}:
            # (computed from lists of per-layer batches, `{"image_embeds": image_embeds}`: merged layer by layer)
            layered |= {target}
    return Pairing(pairs, tuple(mirrored), frozenset(layered), shared_halved)


def _mirrored_branches(branch: cst.If, pairs: dict[str, str], taken: set[str]) -> tuple[cst.If, dict[str, str]] | None:
    """`if <test>: x = f(p) else: x = g(p)`, a test that does not read the batch and sides that assign the same
    names per sample, mirrored side by side onto the counterparts (None for any other `if`):

        if force_zeros:                                 if force_zeros:
            pooled = torch.zeros_like(embeds)     ->        negative_pooled = torch.zeros_like(negative_embeds)
        else:                                           else:
            pooled = given or embeds                        negative_pooled = given or negative_embeds

    A paired value reassigned keeps its counterpart, with or without an `else` (Allegro):

        if embeds.ndim == 3:                      ->    if embeds.ndim == 3:
            embeds = embeds.unsqueeze(1)                    negative_embeds = negative_embeds.unsqueeze(1)
    """
    if reads_batch(branch.test, pairs) or not isinstance(branch.orelse, (cst.Else, type(None))):
        return None
    sides = [branch.body.body, *([branch.orelse.body.body] if branch.orelse else [])]
    simple = m.SimpleStatementLine(body=[m.Assign(targets=[m.AssignTarget(m.Name())])])
    if not all(statement and all(matches(line, simple) for line in statement) for statement in sides):
        return None
    targets = [{line.body[0].targets[0].target.value for line in side} for side in sides]
    if any(names != targets[0] for names in targets) or any(pairs.get(name) == name for name in targets[0]):
        return None  # (a value both conditions share, reassigned on one side only, would have no counterpart)
    # (a paired value reassigned, `x = x.unsqueeze(1)`, keeps its counterpart; a new one gets one of its own)
    counterparts = {name: pairs.get(name) or fresh_name(f"negative_{name}", taken) for name in sorted(targets[0])}
    taken.update(counterparts.values())
    renamed = {**{name: cst.Name(other) for name, other in pairs.items()}}
    mirrored_sides = []
    for side in sides:
        lines = []
        for line in side:
            try:
                _mirrorable(line.body[0].value, pairs, [])
            except _NotPerSample:
                return None
            value = substitute_names(line.body[0].value, renamed)
            target = counterparts[line.body[0].targets[0].target.value]
            lines.append(line.with_changes(body=[cst.Assign([cst.AssignTarget(cst.Name(target))], value)]))
        mirrored_sides.append(cst.IndentedBlock(body=lines))
    orelse = cst.Else(body=mirrored_sides[1]) if len(mirrored_sides) > 1 else None
    return branch.with_changes(body=mirrored_sides[0], orelse=orelse, leading_lines=()), counterparts


def _written_into(
    statement: cst.CSTNode, pairs: Mapping[str, str], skip: set[int], source: SourceModule, starts: Mapping[str, tuple]
) -> cst.Name | None:
    """The paired tensor a statement writes into (`masks[: n // 2] = 0`, `x += 1`, `x.a = b`), after it was
    paired; None when it writes into none."""
    for node in walk(statement, skip=lambda n: id(n) in skip):
        if isinstance(node, cst.AssignTarget):
            target = node.target
        elif isinstance(node, cst.AugAssign):
            target = node.target
        else:
            continue
        if isinstance(target, cst.Name) and not isinstance(node, cst.AugAssign):
            continue  # a plain rebinding, not a write into the value
        if isinstance(target, cst.Subscript) and not _indexes_rows(target):
            continue  # `kwargs["image_embeds"] = ...`: an entry of a container, not rows of a tensor
        while isinstance(target, (cst.Subscript, cst.Attribute)):
            target = target.value
        if isinstance(target, cst.Name) and target.value in pairs:
            position = source.positions.get(target)
            start = starts.get(target.value)
            if position is None or start is None or (position.start.line, position.start.column) > start:
                return target
    return None


def _indexes_rows(subscript: cst.Subscript) -> bool:
    """`x[: n // 2]`, `x[0]`, `x[-1]`: rows of a batch (a slice or a number), not a key."""
    first = subscript.slice[0].slice if subscript.slice else None
    if isinstance(first, cst.Slice):
        return True
    value = first.value if isinstance(first, cst.Index) else None
    if isinstance(value, cst.UnaryOperation):
        value = value.expression
    return isinstance(value, cst.Integer)


def _shares_only(
    statement: cst.CSTNode,
    reads: Sequence[cst.Name],
    pairs: Mapping[str, str],
    skip: set[int],
    source: SourceModule,
    starts: Mapping[str, tuple],
) -> bool:
    """Whether the statement reads only values both conditions share, and only in per-sample assignments (an
    `if` around them may test anything else), writing no name that has a counterpart of its own:

        if self.transformer.config.sample_size == 128:
            added_cond_kwargs = {"resolution": resolution}     # `resolution` was torch.cat([resolution] * 2)
    """
    shared = {name for name, other in pairs.items() if name == other}
    if not {read.value for read in reads} <= shared:
        return False
    if any(pairs.get(name, name) != name for name in flow_of([statement]).writes):
        return False
    assigns = [n for n in walk(statement, skip=lambda n: id(n) in skip) if isinstance(n, cst.Assign)]
    try:
        for assign in assigns:
            # (a doubling undone in place, `(torch.cat([x] * 2) if cfg else x).to(d)`, is the one-batch value)
            undone = {node: cst.Name("undone") for node in walk(assign.value) if id(node) in skip}
            value = replace_nodes(assign.value, undone) if undone else assign.value
            _mirrorable(_without_shapes_of(value, shared), pairs, [])
    except _NotPerSample:
        return False
    outside = _paired_reads(statement, pairs, skip | {id(a) for a in assigns}, source, starts)
    return not outside


def _without_shapes_of(expression: cst.BaseExpression, shared: set[str]) -> cst.BaseExpression:
    """`t.expand(mask.shape)` with `mask.shape` (`.size()`, `len(mask)`) as a name that reads no pair: a value both
    conditions share has, in each guider batch, the shape of one condition, so what is built to its shape is too."""
    name = m.Name(m.MatchIfTrue(lambda value: value in shared))
    shape = (
        m.Attribute(value=name, attr=m.Name("shape"))
        | m.Call(func=m.Attribute(value=name, attr=m.Name("size")))
        | m.Call(func=m.Name("len"), args=[m.Arg(name)])
    )
    found = findall(expression, shape)
    # ... and so is a count both conditions share (`x.repeat(repeat_factor, 1)`, `[x] * batch_multiplier * n`: the
    # factor sized for the batch)
    found += [arg.value for call in findall(expression, m.Call()) for arg in call.args if matches(arg.value, name)]
    for product in findall(expression, m.BinaryOperation(left=m.List() | m.BinaryOperation(), operator=m.Multiply())):
        if findall(product.left, m.List()):
            found += findall(product.right, name)
    return replace_nodes(expression, {node: cst.Name("batch_shape") for node in found}) if found else expression


_RANDOM_METHODS = frozenset({"sample", "normal_", "uniform_", "bernoulli_", "exponential_"})
_RANDOM_FUNCTIONS = frozenset({"randn_tensor", "randn", "rand", "randint", "randn_like", "rand_like", "normal"})


def drawn_after_repeat(source: SourceModule, node: cst.CSTNode, name: str):
    """The refusal of a value repeated for CFG and then drawn at random from (a control image VAE-sampled)."""
    return source.refuse(
        node,
        f"`{name}` was repeated for CFG before a random draw: each half of the doubled batch draws noise of its own, "
        "which one value shared by the guider's batches cannot reproduce",
    )


def draws_at_random(statement: cst.CSTNode) -> bool:
    """Whether a statement draws random numbers: `vae.encode(x).latent_dist.sample()`, `torch.randn(...)`."""
    for node in walk(statement):
        if not isinstance(node, cst.Call):
            continue
        func = node.func
        if isinstance(func, cst.Attribute) and func.attr.value in _RANDOM_METHODS | _RANDOM_FUNCTIONS:
            return True
        if isinstance(func, cst.Name) and func.value in _RANDOM_FUNCTIONS:
            return True
    return False


def _repeat_guard(pipeline: str, pairs: Mapping[str, str], receiver, count) -> cst.BaseStatement:
    name = _root_name(receiver)
    counterpart = pairs[name]
    message = (
        f"`{name}` and `{counterpart}` differ, and {pipeline}.__call__ repeats them concatenated: it interleaves "
        f"the two across a batch of more than one image, which a guider (one batch each) does not reproduce. Use "
        f"{pipeline} for this input."
    )
    return cst.parse_statement(
        f"if {code(count).strip()} > 1 and not torch.equal({counterpart}, {name}):\n    raise ValueError({message!r})\n"
    )


def _under(condition: cst.BaseExpression, statements: list[cst.BaseStatement]) -> cst.If:
    return cst.If(test=condition.deep_clone(), body=cst.IndentedBlock(body=statements))


def _refusal(source: SourceModule, name: cst.Name):
    return source.refuse(
        name,
        f"`{name.value}` is read with its CFG-doubled batch in a way that cannot be done per guider batch",
        fix="only per-sample operations (device/dtype moves, containers, a guarded `.repeat`) can be mirrored",
    )


def merged_mirrors(
    runs: Sequence[tuple[tuple[cst.CSTNode, cst.FlattenSentinel], ...]],
) -> tuple[tuple[cst.CSTNode, cst.FlattenSentinel], ...]:
    """The mirrors of several pairings (one per batch after the conditional one), one replacement per statement:
    where two runs mirror the same statement, the later run's statements take the statement's place inside the
    earlier run's, so each mirror stays beside it (`[guard, x = f(a), if cfg: n = f(na)]` and
    `[x = f(a), if cfg: n_2 = f(na_2)]` -> `[guard, x = f(a), if cfg: n_2 = f(na_2), if cfg: n = f(na)]`)."""
    merged: dict[int, tuple[cst.CSTNode, list[cst.CSTNode]]] = {}
    for run in runs:
        for statement, sentinel in run:
            if id(statement) not in merged:
                merged[id(statement)] = (statement, list(sentinel.nodes))
                continue
            _, nodes = merged[id(statement)]
            at = next(position for position, node in enumerate(nodes) if node is statement)
            nodes[at : at + 1] = list(sentinel.nodes)
    return tuple((statement, cst.FlattenSentinel(nodes)) for statement, nodes in merged.values())
