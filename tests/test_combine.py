"""The one combine matcher: `base + scale * (minuend - subtrahend)` in any operand order, nothing else."""

from __future__ import annotations

import libcst as cst
import pytest

from modularize.analysis.guidance.combine import (
    DIFFUSERS,
    ORIGINAL,
    assigned_combine,
    combine_formula,
    combines_in,
)


def formula_of(text: str):
    return combine_formula(cst.parse_expression(text))


@pytest.mark.parametrize(
    "text",
    [
        "u + s * (c - u)",
        "u + (c - u) * s",
        "s * (c - u) + u",
        "(c - u) * s + u",
        "u + self.guidance_scale * (c - u)",
    ],
)
def test_every_operand_order_of_the_diffusers_combine_is_one_formula(text):
    formula = formula_of(text)
    assert (formula.base, formula.minuend, formula.subtrahend) == ("u", "c", "u")
    assert formula.formulation("c", "u") == DIFFUSERS
    assert cst.Module([]).code_for_node(formula.scale) in ("s", "self.guidance_scale")


def test_the_original_formulation_starts_from_the_conditional_prediction():
    assert formula_of("c + s * (c - u)").formulation("c", "u") == ORIGINAL


@pytest.mark.parametrize("text", ["u + s * c", "u - s * (c - u)", "u + s / (c - u)", "u + s * (c + u)", "u * s"])
def test_other_arithmetic_is_not_a_combine(text):
    assert formula_of(text) is None


def test_names_that_are_not_the_two_predictions_have_no_formulation():
    assert formula_of("x + s * (c - u)").formulation("c", "u") is None
    assert formula_of("u + s * (u - c)").formulation("c", "u") is None


def test_an_assigned_combine_names_its_target_and_a_nested_one_is_found_in_order():
    target, formula = assigned_combine(cst.parse_statement("guided = u + s * (c - u)\n"))
    assert target == "guided" and formula.base == "u"
    assert assigned_combine(cst.parse_statement("guided = u + s\n")) is None
    statements = cst.parse_module("a = x + 1\nb = f(c + s * (c - u))\nd = u + t * (c - u)\n").body
    assert [(f.base, cst.Module([]).code_for_node(f.scale)) for f in combines_in(statements)] == [
        ("c", "s"),
        ("u", "t"),
    ]


@pytest.mark.slow
def test_a_commuted_combine_converts_and_verifies_bitwise(cli, tmp_path, monkeypatch):
    import json

    from .conftest import TOY

    original = "noise_pred = noise_uncond + self.guidance_scale * (noise_text - noise_uncond)"
    commuted = "noise_pred = (noise_text - noise_uncond) * self.guidance_scale + noise_uncond"
    text = TOY.read_text()
    assert original in text
    source = tmp_path / "pipeline_commuted.py"
    source.write_text(text.replace(original, commuted))
    monkeypatch.chdir(tmp_path)
    assert cli(source, "-o", "modular_commuted", "-q").code == 0
    cases = [
        '{"prompt": ["a cat", "a dog"], "negative_prompt": ["x", "y"]}',
        '{"prompt": "a cat", "guidance_scale": 1.0}',
    ]
    args = ["verify", "modular_commuted", "--components", f"{source}:tiny_components", "--exact", "--json", "--no-png"]
    run = cli(*args, *[part for case in cases for part in ("--case", case)])
    report = json.loads(run.out)
    assert run.code == 0, report
    compared = [case for case in report["cases"] if case["status"] == "compared"]
    assert len(compared) == len(report["cases"]) >= 4 and all(case["bitwise"] for case in compared)
