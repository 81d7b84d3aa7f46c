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

from ...cst.dataflow import flow_of
from ...cst.tree_walk import findall, walk
from .doubled_batch import BATCH_REPEAT, TORCH_CAT, cat_elements

_RETURN_LINE = m.SimpleStatementLine(body=[m.Return()])
_ASSIGNED_NAME = m.SimpleStatementLine(body=[m.Assign(targets=[m.AssignTarget(m.Name())])])


def doubled_results(helper: cst.FunctionDef, flag: str) -> tuple[bool, ...] | None:
    """Per returned value, whether the helper returns it concatenated for CFG when `flag` holds."""
    statements = list(helper.body.body)
    returns = [n for n in walk(helper.body, skip=_nested_scope) if isinstance(n, cst.Return)]
    if not statements or len(returns) != 1 or not m.matches(statements[-1], _RETURN_LINE):
        return None
    returned = _returned_names(statements[-1].body[0].value)
    if returned is None:
        return None
    doubled: set[str] = set()
    for position, statement in enumerate(statements[:-1]):
        later = flow_of(statements[position + 1 : -1]).writes
        for name in _doubled_under(statement, flag):
            if name not in later:
                doubled.add(name)
    return tuple(name in doubled for name in returned)


def _returned_names(value: cst.BaseExpression | None) -> list[str] | None:
    if isinstance(value, cst.Name):
        return [value.value]
    if isinstance(value, cst.Tuple) and all(isinstance(e.value, cst.Name) for e in value.elements):
        return [e.value.value for e in value.elements]
    return None


def _doubled_under(statement: cst.BaseStatement, flag: str) -> list[str]:
    """Names a top-level statement of the helper assigns a batch concatenation when the flag holds:
    `if flag: x = torch.cat([u, x])` (among other lines of that branch) or `x = torch.cat([u, x]) if flag else x`."""
    found = []
    if isinstance(statement, cst.If) and _tests_flag(statement.test, flag):
        for line in statement.body.body:
            if m.matches(line, _ASSIGNED_NAME) and _concatenates(line.body[0].value):
                found.append(line.body[0].targets[0].target.value)
    elif m.matches(statement, _ASSIGNED_NAME):
        value = statement.body[0].value
        if isinstance(value, cst.IfExp) and _tests_flag(value.test, flag) and _concatenates(value.body):
            found.append(statement.body[0].targets[0].target.value)
    return found


def _tests_flag(test: cst.BaseExpression, flag: str) -> bool:
    """The test is the flag itself: under `if flag and other:` the result comes back doubled only sometimes."""
    return m.matches(test, m.Name(flag))


def _concatenates(value: cst.BaseExpression) -> bool:
    """A value built by a concatenation along the batch (possibly moved after it: `torch.cat([u, c]).to(d)`)."""
    return any(cat_elements(cat) is not None for cat in findall(value, TORCH_CAT | BATCH_REPEAT))


def _nested_scope(node: cst.CSTNode) -> bool:
    return isinstance(node, (cst.FunctionDef, cst.ClassDef, cst.Lambda))
