"""Which results a helper returns doubled for CFG: the helper concatenates `[negative, positive]` under the CFG
flag it is handed, and returns the concatenation.

    def _encode_prompt(self, prompt, device, do_classifier_free_guidance):
        prompt_embeds = self.text_encoder(...)
        mask = ...
        if do_classifier_free_guidance:
            negative_prompt_embeds = self.text_encoder(...)
            prompt_embeds = torch.cat([negative_prompt_embeds, prompt_embeds])
        return prompt_embeds, mask

`doubled_results(helper, "do_classifier_free_guidance")` is `(True, False)`: the first result is the doubled
batch, the second is not. A result counts as doubled only when nothing reassigns it between the concatenation and
the helper's one `return`, its last statement; any other shape of helper gives None (what it returns doubled
cannot be told).
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from ...cst.dataflow import flow_of, names_read
from ...cst.match_filter import matches
from ...cst.tree_walk import findall, remembered, walk
from .doubled_batch import BATCH_REPEAT, TORCH_CAT, cat_elements
from .many_batches import conditional_positions
from .pairing import ELEMENTWISE, PER_SAMPLE_CALL

_RETURN_LINE = m.SimpleStatementLine(body=[m.Return()])
_ASSIGNED_NAME = m.SimpleStatementLine(body=[m.Assign(targets=[m.AssignTarget(m.Name())])])


LISTED = "listed"  # a result that is a list of values each concatenated for CFG (one per IP-Adapter)


def doubled_results(helper: cst.FunctionDef, flag: str) -> tuple[bool | str, ...] | None:
    """Per returned value, whether the helper returns it concatenated for CFG when `flag` holds: True, False, or
    `LISTED` for a list a loop fills with such values:

        embeds_list = []
        for i, single in enumerate(image_embeds):
            if flag:
                single = torch.cat([negative[i], single], dim=0)
            single = single.to(device=device)
            embeds_list.append(single)
        return embeds_list                                   -> (LISTED,)

    (Asked per call of the helper, on every start of the analysis: computed once per helper and flag while
    `remembered_children` is active.)
    """
    return remembered(f"doubled results when {flag}", helper, lambda node: _doubled_results(node, flag))


def _doubled_results(helper: cst.FunctionDef, flag: str) -> tuple[bool | str, ...] | None:
    statements = list(helper.body.body)
    returns = [n for n in walk(helper.body, skip=_nested_scope) if isinstance(n, cst.Return)]
    if not statements or len(returns) != 1 or not matches(statements[-1], _RETURN_LINE):
        return None
    returned = _returned_names(statements[-1].body[0].value)
    if returned is None:
        return None
    doubled: set[str] = set()
    for position, statement in enumerate(statements[:-1]):
        # (moving the doubled batch to a dtype or device later moves each half alike)
        later = {
            name
            for after in statements[position + 1 : -1]
            for name in flow_of([after]).writes
            if name not in _moved_only(after)
        }
        for name, _ in _doubled_under(statement, flag):
            if name not in later:
                doubled.add(name)
    listed = {name for name in returned if name not in doubled and _list_of_doubled(statements[:-1], name, flag)}
    return tuple(LISTED if name in listed else name in doubled for name in returned)


def _list_of_doubled(statements: list[cst.BaseStatement], name: str, flag: str) -> bool:
    """`name = []`, then a top-level `for` appending one value a line of its body concatenates under `flag` (and
    only moves after), and nothing else writes `name`."""
    writers = [s for s in statements if name in flow_of([s]).writes]
    empty = m.SimpleStatementLine(body=[m.Assign(targets=[m.AssignTarget(m.Name(name))], value=m.List(elements=[]))])
    if len(writers) != 1 or not matches(writers[0], empty):
        return False
    append = m.SimpleStatementLine(
        body=[m.Expr(m.Call(func=m.Attribute(m.Name(name), m.Name("append")), args=[m.Arg(m.Name())]))]
    )
    loops = [s for s in statements if isinstance(s, cst.For) and any(matches(line, append) for line in s.body.body)]
    if len(loops) != 1 or loops[0].orelse is not None:
        return False
    body = list(loops[0].body.body)
    (at,) = [k for k, line in enumerate(body) if matches(line, append)]
    item = body[at].body[0].value.args[0].value.value
    doubled_at = [k for k, line in enumerate(body[:at]) if any(n == item for n, _ in _doubled_under(line, flag))]
    if not doubled_at or at != len(body) - 1:
        return False
    after = body[doubled_at[-1] + 1 : at]
    return all(item not in flow_of([line]).writes or item in _moved_only(line) for line in after)


def kept_positions(helper: cst.FunctionDef, flag: str, ways: int) -> list[frozenset[int]]:
    """Per concatenation of `ways` parts the helper assigns under `flag`, the parts holding the value its target
    had, the one the helper hands on with the flag off (`x = torch.cat([x, n, n])` -> {0}): which part of the
    batch is the conditional one (`many_batches.conditional_part`)."""
    found = []
    for statement in helper.body.body:
        for name, value in _doubled_under(statement, flag):
            for cat in findall(value, TORCH_CAT | BATCH_REPEAT):
                elements = cat_elements(cat)
                if elements is not None and len(elements) == ways:
                    found.append(conditional_positions(elements, cst.Name(name)))
    return found


def _moved_only(statement: cst.BaseStatement) -> set[str]:
    """Names a statement only recomputes from themselves sample by sample (`x = x.to(dtype=d)`, `x = x * s`, also
    under an `if` with no `else`): each part of a doubled batch changed alike."""
    lines = statement.body.body if isinstance(statement, cst.If) and statement.orelse is None else [statement]
    moved = set()
    for line in lines:
        if not matches(line, _ASSIGNED_NAME):
            return set()
        name, value = line.body[0].targets[0].target.value, line.body[0].value
        if isinstance(value, cst.Name) or not _per_sample_of(value, name):
            return set()
        moved.add(name)
    return moved


def _per_sample_of(value: cst.BaseExpression, name: str) -> bool:
    """`value` reads `name` and computes from it sample by sample: per-sample methods (`.to(d)`), elementwise
    arithmetic with what does not read it (`x * scale`)."""
    if isinstance(value, cst.Name):
        return value.value == name
    if isinstance(value, cst.BinaryOperation) and isinstance(value.operator, ELEMENTWISE):
        sides = [value.left, value.right]
        reading = [side for side in sides if name in names_read(side)]
        return len(reading) == 1 and _per_sample_of(reading[0], name)
    if matches(value, PER_SAMPLE_CALL):
        arguments_read = any(name in names_read(argument.value) for argument in value.args)
        return not arguments_read and _per_sample_of(value.func.value, name)
    return False


def _returned_names(value: cst.BaseExpression | None) -> list[str] | None:
    """The name behind each returned value: itself, or the one name a value computes from sample by sample
    (`return x * scale`: a doubled `x` returns doubled)."""
    values = [e.value for e in value.elements] if isinstance(value, cst.Tuple) else [value]
    names = []
    for returned in values:
        # (the pipeline's own attributes are no values it computes: `x * self.vae.config.scaling_factor`)
        read = [name for name in dict.fromkeys(names_read(returned)) if name != "self"] if returned else []
        if len(read) != 1 or not _per_sample_of(returned, read[0]):
            return None
        names.append(read[0])
    return names


def _doubled_under(statement: cst.BaseStatement, flag: str) -> list[tuple[str, cst.BaseExpression]]:
    """(name, concatenation) a top-level statement of the helper assigns when the flag holds:
    `if flag: x = torch.cat([u, x])` (among other lines of that branch) or `x = torch.cat([u, x]) if flag else x`."""
    found = []
    if isinstance(statement, cst.If) and _tests_flag(statement.test, flag):
        for line in statement.body.body:
            if matches(line, _ASSIGNED_NAME) and _concatenates(line.body[0].value):
                found.append((line.body[0].targets[0].target.value, line.body[0].value))
    elif matches(statement, _ASSIGNED_NAME):
        value = statement.body[0].value
        if isinstance(value, cst.IfExp) and _tests_flag(value.test, flag) and _concatenates(value.body):
            found.append((statement.body[0].targets[0].target.value, value.body))
    return found


def _tests_flag(test: cst.BaseExpression, flag: str) -> bool:
    """The test is the flag itself: under `if flag and other:` the result comes back doubled only sometimes."""
    return matches(test, m.Name(flag))


def _concatenates(value: cst.BaseExpression) -> bool:
    """A value built by a concatenation along the batch (possibly moved after it: `torch.cat([u, c]).to(d)`)."""
    return any(cat_elements(cat) is not None for cat in findall(value, TORCH_CAT | BATCH_REPEAT))


def _nested_scope(node: cst.CSTNode) -> bool:
    return isinstance(node, (cst.FunctionDef, cst.ClassDef, cst.Lambda))
