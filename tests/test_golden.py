"""Golden cases: every case under `tests/cases/` regenerated in memory and compared byte for byte.

A case is a small input pipeline and the files the converter generates for it (`modularize.testing.golden`).
After an intended change to the generated code, rewrite the expected files and review their diff:

    PYTHONPATH=src python -m modularize.testing.golden --update
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from modularize.convert import ConvertOptions, plan_for
from modularize.planning.plan import LoopPlan
from modularize.testing import golden
from modularize.testing.golden import REFUSAL, Case, differences, expected, find_cases

ROOT = Path(__file__).resolve().parent / "cases"
CASES = find_cases(ROOT)
UPDATE = "PYTHONPATH=src python -m modularize.testing.golden --update"
generate = functools.cache(golden.generate)  # each case converts once per session

# what each pattern directory holds: the guidance label `modularize plan` prints for its converted cases
LABELS = {
    "batched_cfg": "batched-cfg",
    "branched_cfg": "batched-cfg+custom-combine",
    "custom_combine": "separate-passes+custom-combine",
    "distilled": "distilled",
    "image_encode": "batched-cfg",
    "no_landmarks": "batched-cfg",
    "none": "none",
    "separate_passes": "separate-passes",
}


def test_every_guidance_pattern_has_a_case():
    assert sorted({case.pattern for case in CASES}) == sorted(LABELS)
    assert any(REFUSAL in expected(case) for case in CASES), "a gap of today's converter is documented"


@pytest.mark.parametrize("case", CASES, ids=str)
def test_generated_files_match_the_expected_ones(case: Case):
    diff = differences(case, generate(case))
    assert not diff, f"{case.name}: generated files differ from expected/ (intended? run `{UPDATE}`)\n{diff}"


@functools.cache
def plan(case: Case):
    text = (case.directory / "input.py").read_text()
    return plan_for(text, ConvertOptions(path=case.label, label=case.label))


@pytest.mark.parametrize("case", [c for c in CASES if REFUSAL not in expected(c)], ids=str)
def test_each_case_is_converted_as_the_pattern_its_directory_names(case: Case):
    result = plan(case)
    assert result.guidance.label == LABELS[case.pattern]
    loop = next(block for block in result.blocks if isinstance(block, LoopPlan))
    assert [step.key for step in loop.steps if step.body][-2:] == ["denoiser", "after_denoiser"]


def test_the_image_encode_case_encodes_in_a_block_of_its_own():
    (case,) = [c for c in CASES if c.name == "image_encode/img2img"]
    keys = [block.key for block in plan(case).blocks]
    assert keys.index("vae_encoder") == keys.index("prepare_latent_variables") - 1
    encoders = generate(case)["encoders.py"]
    assert "def prepare_latents_vae_encode(components, image, dtype, device, generator=None):" in encoders


def test_a_refusal_is_one_located_line():
    (case,) = [c for c in CASES if c.name == "no_landmarks/own_names"]
    (line,) = expected(case)[REFUSAL].splitlines()
    assert line.startswith(f"{case.label}:40:9: no denoising loop over `timesteps`")


def test_runtime_helpers_are_copied_into_the_packages_that_call_them():
    """Which runtime definitions each pattern's package carries, by their `# Copied from` lines."""

    def copied(case_name: str, file: str) -> list[str]:
        (case,) = [c for c in CASES if c.name == case_name]
        prefix = "# Copied from modularize.emit.runtime."
        return [line[len(prefix) :] for line in expected(case)[file].splitlines() if line.startswith(prefix)]

    merging = ["guider_calls._UNMERGEABLE", "guider_calls._merge_order", "guider_calls._concatenated"]
    assert copied("batched_cfg/rescale", "denoise.py") == [
        *merging,
        "guider_calls.merge_guider_batches",
        "guider_calls.split_guider_predictions",
    ]
    assert copied("branched_cfg/both_paths", "denoise.py") == [
        *merging,
        "guider_calls.denoiser_call",
        "guider_calls.run_denoiser_calls",
        "guider_calls._shares",
    ]
    assert copied("separate_passes/true_cfg", "denoise.py") == ["guider_state.guider_batch_name"]
    assert copied("custom_combine/std_matched", "denoise.py") == []
    assert copied("none/unconditional", "denoise.py") == []
    for case in CASES:
        if REFUSAL not in expected(case):
            assert copied(case.name, "modular_pipeline.py") == ["explicit_none.ExplicitNoneInputs"]
