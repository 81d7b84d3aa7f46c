"""The guidance rescale recognized by its helper's arithmetic (`analysis/guidance/rescale.py`)."""

from __future__ import annotations

import textwrap

import libcst as cst
import pytest

from modularize.analysis.guidance.rescale import inlined_return, rescale_call, rescale_roles

DIFFUSERS_SPELLING = """\
def rescale_noise_cfg(noise_cfg, noise_pred_text, guidance_rescale=0.0):
    std_text = noise_pred_text.std(dim=list(range(1, noise_pred_text.ndim)), keepdim=True)
    std_cfg = noise_cfg.std(dim=list(range(1, noise_cfg.ndim)), keepdim=True)
    noise_pred_rescaled = noise_cfg * (std_text / std_cfg)
    noise_cfg = guidance_rescale * noise_pred_rescaled + (1 - guidance_rescale) * noise_cfg
    return noise_cfg
"""

OWN_SPELLING = """\
def keep_spread(amount, guided, text):
    \"\"\"Docstrings are skipped.\"\"\"
    dims = list(range(1, text.ndim))
    ratio = text.std(dim=dims, keepdim=True) / guided.std(dim=dims, keepdim=True)
    return guided * (1 - amount) + (ratio * guided) * amount
"""


def function(text: str) -> cst.FunctionDef:
    return cst.parse_module(textwrap.dedent(text)).body[0]


def test_locals_are_inlined_into_the_returned_expression():
    returned = inlined_return(function("def f(a, b):\n    x = a * 2\n    x = x + 1\n    return x + b\n"))
    assert cst.Module(body=[]).code_for_node(returned) == "(((a * 2) + 1) + b)"


@pytest.mark.parametrize(
    ("text", "roles"),
    [
        (DIFFUSERS_SPELLING, ("noise_cfg", "noise_pred_text", "guidance_rescale")),
        (OWN_SPELLING, ("guided", "text", "amount")),
    ],
    ids=["diffusers", "own-names-and-order"],
)
def test_the_rescale_is_recognized_whatever_its_names(text, roles):
    assert rescale_roles(function(text)) == roles


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("(1 - guidance_rescale) * noise_cfg", "(1 - guidance_rescale) * noise_pred_text"),  # mixes another tensor
        ("(std_text / std_cfg)", "(std_cfg / std_text)"),  # the ratio inverted
        ("keepdim=True)\n    std_cfg", "keepdim=False)\n    std_cfg"),
        ("noise_cfg.std(", "noise_cfg.var("),
        ("    return noise_cfg", "    print(noise_cfg)\n    return noise_cfg"),  # does more than compute
    ],
)
def test_anything_else_is_not_the_rescale(old, new):
    assert old in DIFFUSERS_SPELLING
    assert rescale_roles(function(DIFFUSERS_SPELLING.replace(old, new))) is None


def test_a_call_binds_the_helpers_roles_by_position_keyword_or_default():
    functions = {
        "keep_spread": function(OWN_SPELLING),
        "self.spread": function(OWN_SPELLING.replace("(amount", "(self, amount")),
    }

    def factor(call: str, guided="g", cond="c"):
        found = rescale_call(cst.parse_statement(f"g = {call}\n"), guided, cond, functions)
        return None if found is None else cst.Module(body=[]).code_for_node(found)

    assert factor("keep_spread(r, g, c)") == "r"
    assert factor("keep_spread(0.7, text=c, guided=g)") == "0.7"
    assert factor("self.spread(self.guidance_rescale, g, c)") == "self.guidance_rescale"
    assert factor("keep_spread(r, c, g)") is None  # the tensors the other way round
    assert factor("other(r, g, c)") is None
