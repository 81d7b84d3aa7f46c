"""`emit-tests`: the generated pytest file passes on the generated package and fails on every mutant of it."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from modularize.cli import main

# every test here runs torch pipelines end to end
pytestmark = pytest.mark.slow

SOURCE_TEXTS = {
    "two_prompts_x2": "two_prompts_x2_negatives_rescale_3_steps",
    "euler": '("euler", {"scheduler": "EulerDiscreteScheduler"',
}
# Single deliberate changes to the generated Stable Diffusion package, each of which the emitted tests must catch.
MUTATIONS = {
    "swap_two_statements_in_the_loop": (
        "denoise.py",
        "latents = components.scheduler.step(noise_pred, t, latents, **extra_step_kwargs, return_dict=False)[0]\n"
        "\n"
        "        if XLA_AVAILABLE:\n"
        "            xm.mark_step()\n"
        "        block_state.latents = latents\n",
        "block_state.latents = latents\n"
        "        latents = components.scheduler.step(noise_pred, t, latents, **extra_step_kwargs, return_dict=False)[0]\n"
        "\n"
        "        if XLA_AVAILABLE:\n"
        "            xm.mark_step()\n",
    ),
    "drop_the_guidance_rescale": (
        "modular_pipeline.py",
        "guidance_rescale=guidance_rescale if do_classifier_free_guidance and guidance_rescale > 0.0 else 0.0,",
        "guidance_rescale=0.0,",
    ),
    "change_a_default": (
        "modular_pipeline.py",
        "def guider_for_standard_call(self, guidance_scale: float = 7.5,",
        "def guider_for_standard_call(self, guidance_scale: float = 7.0,",
    ),
    "repeat_embeddings_in_the_wrong_order": (
        "encoders.py",
        "prompt_embeds = prompt_embeds.repeat(1, num_images_per_prompt, 1)",
        "prompt_embeds = prompt_embeds.repeat(num_images_per_prompt, 1, 1)",
    ),
    "skip_scale_model_input": (
        "denoise.py",
        'if hasattr(components.scheduler, "scale_model_input"):',
        "if False:",
    ),
    "pair_embeddings_the_wrong_way_round": (
        "denoise.py",
        '("prompt_embeds", "negative_prompt_embeds")',
        '("negative_prompt_embeds", "prompt_embeds")',
    ),
}


@pytest.fixture(scope="module")
def project(tmp_path_factory, sd_source) -> Path:
    """A user's project: the generated package and its emitted tests side by side."""
    root = tmp_path_factory.mktemp("project")
    package, tests = root / "modular_stable_diffusion", root / "tests"
    assert main([str(sd_source), "-o", str(package), "--emit-tests", str(tests), "-q"]) == 0
    return root


def pytest_run(root: Path, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "ignore", str(root / "tests")]
    return subprocess.run([*command, *args], capture_output=True, text=True, cwd=root)


def test_the_emitted_file_is_short_and_names_package_components_and_matrix(project):
    text = (project / "tests" / "test_modular_stable_diffusion.py").read_text()
    assert 'PACKAGE = Path(__file__).parent / "../modular_stable_diffusion"' in text
    assert "COMPONENTS = None" in text
    for fragment in SOURCE_TEXTS.values():
        assert fragment in text
    assert len(text.splitlines()) < 150


def test_the_emitted_tests_pass_serially_and_under_xdist(project):
    serial = pytest_run(project)
    assert serial.returncode == 0, serial.stdout[-3000:]
    assert "32 passed" in serial.stdout
    parallel = pytest_run(project, "-n", "2")
    assert parallel.returncode == 0, parallel.stdout[-3000:]
    assert "32 passed" in parallel.stdout


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_the_emitted_tests_catch_each_mutation(project, tmp_path, mutation):
    file, old, new = MUTATIONS[mutation]
    mutant = tmp_path / "mutant"
    shutil.copytree(project, mutant, ignore=shutil.ignore_patterns("__pycache__"))
    target = mutant / "modular_stable_diffusion" / file
    text = target.read_text()
    assert text.count(old) == 1, f"the mutation no longer applies to {file}"
    target.write_text(text.replace(old, new))
    # the plain-mode half of the file is enough to fail it (and half as slow): stop at the first failure
    run = pytest_run(mutant, "-x", "-k", "plain_mode")
    assert run.returncode == 1, run.stdout[-3000:]
    assert "1 failed" in run.stdout


def test_a_pipeline_without_hand_written_components_gets_the_cases_verify_builds_per_class(tmp_path):
    """SDXL ControlNet has no hand-written tiny setup: its tests take the matrix `verify` builds per component
    class; a case holding a tensor (a second control image) is named, and taken from that matrix when run."""
    from modularize.frontend.source_file import installed_diffusers_file

    source = installed_diffusers_file("pipelines/controlnet/pipeline_controlnet_sd_xl.py")
    package, tests = tmp_path / "modular_controlnet_sd_xl", tmp_path / "tests"
    assert main([str(source), "-o", str(package), "--emit-tests", str(tests), "-q"]) == 0
    text = (tests / "test_modular_controlnet_sd_xl.py").read_text()
    namespace: dict = {}
    exec(text.split("MATRIX = ")[1].split("\n\n")[0].join(["MATRIX = ", ""]), namespace)
    cases = dict(namespace["MATRIX"])
    assert cases["default"] == {} and cases["two_prompts_two_controls"] is None  # (its images are tensors)
    run = pytest_run(tmp_path, "-n", "2", "-k", "two_prompts_two_controls or default")
    assert run.returncode == 0 and "4 passed" in run.stdout, run.stdout[-3000:]
