"""Golden cases: every case under `tests/cases/` regenerated in memory and compared byte for byte.

A case is a small input pipeline and the files the converter generates for it (`modularize.testing.golden`).
After an intended change to the generated code, rewrite the expected files and review their diff:

    PYTHONPATH=src python -m modularize.testing.golden --update
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from modularize.planning.plan import LoopPlan
from modularize.testing import golden
from modularize.testing.golden import REFUSAL, Case, differences, expected, find_cases, verify_calls

ROOT = Path(__file__).resolve().parent / "cases"
CASES = find_cases(ROOT)
UPDATE = "PYTHONPATH=src python -m modularize.testing.golden --update"
generate = functools.cache(golden.generate)  # each case converts once per session

# what each pattern directory holds: the guidance label `modularize plan` prints for its converted cases
LABELS = {
    "batched_cfg": "batched-cfg",
    "batched_custom_combine": "batched-cfg+custom-combine",
    "branched_cfg": "batched-cfg+custom-combine",
    "custom_combine": "separate-passes+custom-combine",
    "distilled": "distilled",
    "image_encode": "batched-cfg",
    "many_batches": "batched-cfg+custom-combine",
    "no_landmarks": "batched-cfg",
    "none": "none",
    "outer_loop": "batched-cfg",
    "perturbed_attention": "batched-cfg+perturbed-attention",
    "separate_passes": "separate-passes",
    "sub_pipelines": "none",  # (the pipelines it builds guide themselves)
}


def test_every_guidance_pattern_has_a_case():
    assert sorted({case.pattern for case in CASES}) == sorted(LABELS)
    assert any(REFUSAL in expected(case) for case in CASES), "a gap of today's converter is documented"


@pytest.mark.parametrize("case", CASES, ids=str)
def test_generated_files_match_the_expected_ones(case: Case):
    diff = differences(case, generate(case))
    assert not diff, f"{case.name}: generated files differ from expected/ (intended? run `{UPDATE}`)\n{diff}"


plan = functools.cache(golden.plan)


@pytest.mark.parametrize("case", [c for c in CASES if REFUSAL not in expected(c)], ids=str)
def test_each_case_is_converted_as_the_pattern_its_directory_names(case: Case):
    result = plan(case)
    assert result.guidance.label == LABELS[case.pattern]
    if case.pattern == "sub_pipelines":
        # a block per call of a built pipeline, one for the glue after it; the built one's own plan has the loop
        assert [block.key for block in result.blocks] == ["draft", "after_draft"]
        result = result.sub_pipelines[0].plan
    loop = next(block for block in result.blocks if isinstance(block, LoopPlan))
    assert [step.key for step in loop.steps if step.body][-2:] == ["denoiser", "after_denoiser"]


def test_every_expected_package_is_clean_under_diffusers_ruff_selection(tmp_path):
    import shutil

    from modularize.output.lint import lint_packages

    for case in CASES:
        if REFUSAL not in expected(case):
            shutil.copytree(case.directory / "expected", tmp_path / case.name.replace("/", "__"))
    assert lint_packages(tmp_path) == {}


def test_the_image_encode_case_encodes_in_a_block_of_its_own():
    (case,) = [c for c in CASES if c.name == "image_encode/img2img"]
    keys = [block.key for block in plan(case).blocks]
    assert keys.index("vae_encoder") == keys.index("prepare_latent_noise") - 1
    encoders = generate(case)["encoders.py"]
    assert "def prepare_latents_vae_encode(components, image, dtype, device, generator=None):" in encoders


def test_a_refusal_is_one_located_line():
    (case,) = [c for c in CASES if c.name == "no_landmarks/while_loop"]
    (line,) = expected(case)[REFUSAL].splitlines()
    assert line.startswith(f"{case.label}:56:9: the denoising loop is a `while` loop")


@pytest.mark.parametrize("name", ["no_landmarks/own_names", "no_landmarks/timesteps_named"])
def test_a_loop_without_an_index_is_found_by_what_it_does_and_enumerated_for_the_guider(name):
    """`for t in schedule:` steps the scheduler (found whatever it iterates); the guider counts steps, so the
    package numbers them itself instead of passing `step=None`."""
    (case,) = [c for c in CASES if c.name == name]
    loop = next(block for block in plan(case).blocks if isinstance(block, LoopPlan))
    assert loop.loop_targets == ("step_index", "t")
    denoise = generate(case)["denoise.py"]
    assert "for step_index, t in enumerate(" in denoise
    assert "components.guider.set_state(step=step_index," in denoise and "step=None" not in denoise


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
        "guider_calls._broadcast_once",
        "guider_calls._shares",
    ]
    assert copied("separate_passes/true_cfg", "denoise.py") == [
        "guider_state.guider_batch_name",
        "guider_state.guider_batch_label",
    ]
    assert copied("custom_combine/std_matched", "denoise.py") == []
    assert copied("none/unconditional", "denoise.py") == []
    for case in CASES:
        if REFUSAL not in expected(case):
            guided = ["standard_guider.install_standard_guider"] if plan(case).guidance.pattern != "none" else []
            if plan(case).guidance.perturbed is not None:
                guided += [
                    "perturbed_attention._PERTURBED_ATTENTION_HOOK",
                    "perturbed_attention.perturbed_attention_modules",
                    "perturbed_attention._same_final_number",
                    "perturbed_attention.OneShareOfPerturbedAttention",
                    "perturbed_attention.guider_runs_unconditional",
                    "perturbed_attention.StandardPerturbedAttentionGuidance",
                ]
            if plan(case).sub_pipelines:
                guided += ["sub_pipeline.StandardCall", "sub_pipeline.sub_pipeline"]
            assert copied(case.name, "modular_pipeline.py") == [
                "saved_package.SavedWithPackage",
                "explicit_none.ExplicitNoneInputs",
                "package_blocks.PackageBlocks",
                "saved_package.register_in_diffusers",
                *guided,
            ]


@pytest.mark.slow
@pytest.mark.parametrize("case", [c for c in CASES if verify_calls(c)], ids=str)
def test_cases_with_their_own_calls_are_bitwise_equal_to_their_input(case: Case, tmp_path, monkeypatch):
    """The generated package runs and computes what the case's input pipeline computes: its `verify.json` calls,
    plain and exact mode, on tiny components built by component class."""
    from modularize.cli import main
    from modularize.commands.verify import verify_package
    from modularize.testing.equivalence import Case as Call

    monkeypatch.chdir(ROOT.parent.parent)  # headers name the input by its repository-relative path
    package = tmp_path / "package"
    assert main([case.label, "-o", str(package), "-q"]) == 0
    calls = [Call(name, inputs) for name, inputs in verify_calls(case)]
    report = verify_package(package, cases=calls, exact=True)
    assert [(c.name, c.mode) for c in report.cases] == [
        (n, mode) for n, _ in verify_calls(case) for mode in ("plain", "exact")
    ]
    assert all(c.status == "compared" and c.bitwise for c in report.cases), [c for c in report.cases if not c.bitwise]


def test_a_progress_bar_of_any_name_stays_with_the_loop_wrapper():
    (case,) = [c for c in CASES if c.name == "no_landmarks/own_progress_bar"]
    loop = next(block for block in plan(case).blocks if isinstance(block, LoopPlan))
    assert any("bar.update()" in code for code in map(golden_code, loop.wrapper_body))
    assert not any("bar" in golden_code(s) for step in loop.steps for s in step.body)


def golden_code(statement) -> str:
    import libcst as cst

    return cst.Module(body=[statement]).code


def test_constructor_parameters_are_config_values_of_the_generated_pipeline(tmp_path, monkeypatch):
    """`self.noise_gain = noise_gain` in `__init__` becomes a config value: the constructor's default until the user
    sets it (a ModularPipeline takes no constructor arguments), declared by the blocks that read it."""
    from modularize.cli import main
    from modularize.testing.equivalence import load_package, package_classes

    monkeypatch.chdir(ROOT.parent.parent)
    package = tmp_path / "package"
    assert main(["tests/cases/batched_cfg/constructor_parameters/input.py", "-o", str(package), "-q"]) == 0
    pipeline_class, blocks_class = package_classes(load_package(package))
    pipe = pipeline_class(blocks=blocks_class())
    assert (pipe.noise_gain, pipe.stage_widths) == (0.5, (1, 2))
    pipe.update_components(noise_gain=0.25, stage_widths=[4])
    assert (pipe.noise_gain, pipe.stage_widths) == (0.25, (4,))
