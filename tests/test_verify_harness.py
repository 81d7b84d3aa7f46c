"""The verify harness as a new user meets it: a pipeline file of their own, outside diffusers, with `--components`
and nothing else on the command line; tensor inputs, `return_dict=False`, string outputs, the global RNG."""

from __future__ import annotations

import copy
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from modularize.cli import main
from modularize.commands.verify import Case, verify_package
from modularize.testing import equivalence
from modularize.testing.compare import difference

from .conftest import FIXTURES, Run

CAPTIONED = "pipeline_captioned_img2img.py"
GLOBAL_NOISE = "pipeline_global_noise.py"


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A user's project directory (outside any package or git repository) as the current directory, with
    `sys.path` as the `modularize` console script has it: the current directory is not on it."""
    assert not any((parent / ".git").exists() for parent in tmp_path.parents)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", str(tmp_path))])
    return tmp_path


def run_cli(capsys, *args) -> Run:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return Run(code, captured.out, captured.err)


def convert_fixture(project: Path, name: str, package: str, replace: tuple[str, str] | None = None) -> Path:
    """Copy a fixture pipeline into the project (optionally changing its text) and convert it there."""
    text = (FIXTURES / "pipelines" / name).read_text(encoding="utf-8")
    if replace is not None:
        text = text.replace(*replace)
    (project / name).write_text(text, encoding="utf-8")
    assert main([name, "-o", package, "-q"]) == 0
    return project / package


# -- the whole story through the CLI ----------------------------------------------------------------------------------
def test_a_users_pipeline_file_verifies_through_the_cli_with_tensor_inputs_tuples_and_strings(project, capsys):
    convert_fixture(project, CAPTIONED, "modular_captioned")
    imported = set(sys.modules)
    run = run_cli(
        capsys,
        "verify",
        "modular_captioned",
        "--components",
        "pipeline_captioned_img2img:tiny_setup",
        "--exact",
        "--json",
        "--png",
        "cmp.png",
    )
    report = json.loads(run.out)
    assert run.code == 0, (report, run.err)
    assert report["ok"] and report["pipeline"] == "CaptionedImageToImagePipeline"
    runs = report["cases"]
    names = [c["name"] for c in runs]
    assert names == [n for n in ("default", "tuple", "two_prompts_eta", "tuple_eta_pt") for _ in range(2)]
    for case in runs:
        assert case["status"] == "compared" and case["passed"] and case["bitwise"], case
        assert case["max_abs_diff"] == 0.0  # a real numeric comparison of the images, not a skipped one
        assert case["inputs"]["image"] == "<Tensor (1, 3, 8, 8) torch.float32>"  # shape and dtype, not a crash
    assert {c["inputs"].get("return_dict", True) for c in runs} == {True, False}
    assert (project / "cmp.png").read_bytes()[:4] == b"\x89PNG"
    # nothing was imported by name from the current directory: the file was loaded from where the header says
    assert "pipeline_captioned_img2img" not in set(sys.modules) - imported


def test_verify_has_teeth_on_string_outputs_and_on_images(project, capsys):
    package = convert_fixture(project, CAPTIONED, "modular_captioned")
    decoders = package / "decoders.py"
    decoders.write_text(decoders.read_text().replace("(strength {strength})", "[strength {strength}]"))
    args = ["verify", package, "--components", "pipeline_captioned_img2img:tiny_setup", "--json", "--no-png"]
    run = run_cli(capsys, *args, "--no-default-cases", "--case", '{"return_dict": false}')
    report = json.loads(run.out)
    assert run.code == 1 and not report["ok"]
    (case,) = report["cases"]
    assert case["status"] == "compared" and not case["passed"] and not case["bitwise"]
    assert case["max_abs_diff"] is None  # strings have no numeric difference (and strict JSON has no Infinity)
    assert "captions" in case["reason"] and "a cat (strength 0.6)" in case["reason"]
    assert "a cat [strength 0.6]" in case["reason"]

    decoders.write_text(decoders.read_text().replace("[strength {strength}]", "(strength {strength})"))
    decoders.write_text(decoders.read_text().replace("latents / 2 + 0.5", "latents / 2 + 0.51"))
    run = run_cli(capsys, *args, "--no-default-cases", "--case", "{}")
    (case,) = json.loads(run.out)["cases"]
    assert run.code == 1 and 0.009 < case["max_abs_diff"] < 0.011, case


# -- one test per gap ---------------------------------------------------------------------------------------------
def test_tensor_and_array_inputs_are_shown_as_shape_and_dtype():
    from PIL import Image

    shown = equivalence._jsonable(
        {
            "image": torch.zeros(1, 3, 8, 8),
            "mask": np.zeros((2, 4), dtype=np.float32),
            "pil": Image.new("RGB", (6, 4)),
            "nested": [torch.ones(2, dtype=torch.float16), ("a", 1)],
        }
    )
    assert shown == {
        "image": "<Tensor (1, 3, 8, 8) torch.float32>",
        "mask": "<ndarray (2, 4) float32>",
        "pil": "<image 6x4 RGB>",
        "nested": ["<Tensor (2,) torch.float16>", ["a", 1]],
    }


def test_return_dict_false_is_compared_element_wise(project):
    package = convert_fixture(project, CAPTIONED, "modular_captioned")
    report = verify_package(
        package,
        cases=[Case("tuple", {"return_dict": False}), Case("dict", {})],
        components="pipeline_captioned_img2img:tiny_setup",
    )
    assert report.ok, report.cases
    assert [(c.status, c.bitwise) for c in report.cases] == [("compared", True), ("compared", True)]


def test_outputs_that_are_not_numbers_are_compared_exactly_and_recursively():
    same = difference(["a cat", "a dog"], ["a cat", "a dog"])
    assert same.bitwise and same.max_abs_diff == 0.0
    other = difference(["a cat", "a dog"], ["a cat", "a fox"])
    assert not other.bitwise and other.max_abs_diff == float("inf")
    assert "[1]" in other.detail and "'a dog' vs 'a fox'" in other.detail
    nested = {"captions": ("x",), "scores": [torch.ones(2), None], "meta": {"n": 1}}
    assert difference(nested, copy.deepcopy(nested)).bitwise
    close = difference((torch.ones(2), "x"), (torch.ones(2) + 1e-3, "x"))
    assert not close.bitwise and 9e-4 < close.max_abs_diff < 1.1e-3
    assert not difference({"n": 1}, {"n": 2}).bitwise
    assert not difference({"n": 1}, {"m": 1}).bitwise
    assert not difference(["a"], ["a", "b"]).bitwise
    assert difference(np.array(["a", "b"]), np.array(["a", "b"])).bitwise
    assert difference(3, 3.0).max_abs_diff == 0.0


def test_ddim_eta_noise_from_the_global_rng_is_seeded_identically_before_each_side(project):
    package = convert_fixture(project, CAPTIONED, "modular_captioned")
    state = torch.get_rng_state()
    report = verify_package(
        package,
        cases=[Case("eta", {"eta": 1.0, "strength": 1.0})],
        exact=True,
        components="pipeline_captioned_img2img:tiny_setup",
    )
    assert report.ok and all(c.bitwise for c in report.cases), report.cases
    assert torch.equal(torch.get_rng_state(), state)  # the caller's global RNG is left as it was


def test_a_call_without_a_generator_runs_with_the_global_rng_seeded(project, capsys):
    convert_fixture(project, GLOBAL_NOISE, "modular_global_noise")
    cases = ['{"batch_size": 2}', '{"eta": 1.0, "return_dict": false}']
    args = ["verify", "modular_global_noise", "--components", "pipeline_global_noise:tiny_components", "--exact"]
    run = run_cli(capsys, *args, "--json", "--no-png", *[arg for case in cases for arg in ("--case", case)])
    report = json.loads(run.out)
    assert run.code == 0, report
    # the two given cases in both modes, beside whatever default matrix the signature gives
    given = [(c["name"], c["mode"]) for c in report["cases"] if c["name"] in ("case_1", "case_2")]
    assert sorted(given) == [("case_1", "exact"), ("case_1", "plain"), ("case_2", "exact"), ("case_2", "plain")]
    assert all(c["status"] == "compared" and c["bitwise"] for c in report["cases"])


def test_a_built_in_setup_is_used_only_for_the_diffusers_class_itself(project, capsys, monkeypatch):
    import diffusers

    from modularize.testing.tiny import setup_for

    assert equivalence.builtin_setup(diffusers.DDPMPipeline) is setup_for("DDPMPipeline")
    convert_fixture(project, CAPTIONED, "modular_ddpm", replace=("CaptionedImageToImagePipeline", "DDPMPipeline"))
    package = equivalence.load_package(project / "modular_ddpm")
    users = equivalence.standard_class(equivalence.package_classes(package)[0], project / "modular_ddpm")
    assert users.__name__ == "DDPMPipeline" and users is not diffusers.DDPMPipeline
    assert equivalence.builtin_setup(users) is not setup_for("DDPMPipeline")
    # with no components by component class either, the user is asked for theirs
    monkeypatch.setattr(equivalence, "components_by_class", lambda standard_cls: None)
    run = run_cli(capsys, "verify", "modular_ddpm", "--no-png")
    assert run.code == 2 and run.out == ""
    assert "DDPMPipeline" in run.err and "--components" in run.err and len(run.err.strip().splitlines()) == 1


def test_components_the_constructor_does_not_take_are_one_setup_error(project, capsys):
    convert_fixture(project, CAPTIONED, "modular_captioned")
    (project / "my_components.py").write_text(
        "from pipeline_captioned_img2img import tiny_components\n\n\n"
        "def with_flag():\n"
        "    return {**tiny_components(), 'requires_safety_checker': False}\n\n\n"
        "def without_unet():\n"
        "    components = tiny_components()\n"
        "    del components['unet']\n"
        "    return components\n"
    )
    run = run_cli(capsys, "verify", "modular_captioned", "--components", "my_components:with_flag", "--no-png")
    assert run.code == 2 and run.out == "", run
    (line,) = run.err.strip().splitlines()
    assert "requires_safety_checker" in line and "CaptionedImageToImagePipeline.__init__" in line
    run = run_cli(capsys, "verify", "modular_captioned", "--components", "my_components:without_unet", "--no-png")
    assert run.code == 2 and "unet" in run.err and "CaptionedImageToImagePipeline.__init__" in run.err


def test_the_standard_pipeline_is_loaded_from_the_file_the_header_names_and_must_match_its_hash(
    project, capsys, tmp_path_factory, monkeypatch
):
    convert_fixture(project, GLOBAL_NOISE, "modular_global_noise")
    # from another directory: the source is found next to the package; components given as a file path
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    shutil.copy(project / GLOBAL_NOISE, elsewhere / "comps.py")
    monkeypatch.chdir(elsewhere)
    args = ["verify", project / "modular_global_noise", "--components", "comps.py:tiny_components", "--no-png"]
    args += ["--json", "--no-default-cases", "--case", "{}"]
    run = run_cli(capsys, *args)
    assert run.code == 0, run.err
    # an edited source: the package no longer describes it
    source = project / GLOBAL_NOISE
    source.write_text(source.read_text().replace("eta: float = 0.5", "eta: float = 0.25"))
    run = run_cli(capsys, *args)
    assert run.code == 2 and run.out == "", run
    assert "stale" in run.err and GLOBAL_NOISE in run.err and "modularize check --fix" in run.err
    # a missing source: said so, naming the file
    source.unlink()
    run = run_cli(capsys, *args)
    assert run.code == 2 and f"cannot find {GLOBAL_NOISE}" in run.err, run.err


def test_survey_verify_reports_a_package_that_crashes_as_failed_with_its_error(tmp_path, capsys, monkeypatch):
    import modularize.convert
    from modularize.frontend.source_file import installed_diffusers_file

    ddpm = installed_diffusers_file("pipelines/ddpm/__init__.py").parent
    original = modularize.convert.convert

    def crashing_at_run_time(text, options, read_module=None):
        files = original(text, options, read_module)
        decoders = files["decoders.py"]
        files["decoders.py"] = decoders.replace("block_state = self.get_block_state(state)", "1 / 0", 1)
        return files

    def not_importing(text, options, read_module=None):
        return {**original(text, options, read_module), "decoders.py": "raise ImportError('no such thing')\n"}

    for broken, error in ((crashing_at_run_time, "ZeroDivisionError"), (not_importing, "does not import")):
        monkeypatch.setattr(modularize.convert, "convert", broken)
        target = tmp_path / "survey.json"
        code = main(["survey", str(ddpm), "--verify", "--json", str(target), "-j", "1"])
        err = capsys.readouterr().err
        report = json.loads(target.read_text())
        (entry,) = report["pipelines"]
        assert entry["status"] == "converted"
        assert entry["equivalence"]["ok"] is False and entry["equivalence"]["failed"] >= 1
        assert error in entry["equivalence"]["error"], entry
        assert report["summary"]["verified"] == 1 and report["summary"]["verified_ok"] == 0
        assert code == 1
        assert "DDPMPipeline" in err and "FAILED" in err and error in err


def test_exact_mode_splits_per_layer_lists_by_layer_and_only_the_doubled_batch_of_an_auxiliary_model():
    """A ControlNet takes and returns one batched tensor per layer (a list whose length may equal the batch), and
    in guess mode runs on the conditional half alone, whose size may be even too."""
    import torch

    from modularize.testing.exact import half_batch_calls

    class Layered(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.batches = []

        def forward(self, sample, residuals):
            self.batches.append(sample.shape[0])
            return [sample[:, : r.shape[1]] + r for r in residuals], sample * 2

    model = Layered()
    sample = torch.arange(8.0).reshape(2, 4)
    # two layers of their own shapes, a batch of two: a list as long as the batch
    residuals = [torch.ones(2, 4), torch.full((2, 4), 3.0)[:, :3]]
    expected = model(sample, residuals)
    with half_batch_calls(model):
        halves = model(sample, residuals)
    assert model.batches == [2, 1, 1]
    assert all(torch.equal(a, b) for a, b in zip(halves[0], expected[0], strict=True)) and len(halves[0]) == 2
    assert torch.equal(halves[1], expected[1])
    with half_batch_calls(model, doubled=4):  # an even batch that is not the doubled one runs whole
        model(sample, residuals)
    assert model.batches[-1] == 2


def test_exact_mode_keeps_a_list_of_samples_whose_first_dimension_equals_the_batch_a_list_of_samples():
    """Z-Image passes its batch as a list of per-sample latents: 4 samples of 4 channels, in a batch of 4."""
    import torch

    from modularize.testing.exact import _half

    samples = [torch.full((4, 2), float(i)) for i in range(4)]
    assert [t[0, 0].item() for t in _half(samples, 4, slice(2, 4))] == [2.0, 3.0]


def test_exact_mode_splits_frames_folded_into_the_batch_sample_by_sample():
    """AnimateDiff repeats its prompt embeddings per frame, `(batch * frames, ...)`, sample-major, beside a 5-D
    sample; an auxiliary model's output may fold any number of rows per sample. Other tensors whose length is a
    multiple of the batch (HunyuanDiT's rotary embeddings) stay whole."""
    from modularize.testing.exact import _folded_frames, _half

    sample = torch.zeros(4, 2, 3, 8, 8)  # (batch, channels, frames, height, width)
    frames = _folded_frames((sample,), {})
    assert frames == {3}  # the frames' dimension, not the channels'
    assert _half(torch.arange(8.0).reshape(8, 1), 4, slice(2, 4), {}, frames).flatten().tolist() == list(range(8))
    embeds = torch.arange(12.0).reshape(12, 1)  # 3 rows per sample
    assert _half(embeds, 4, slice(2, 4), {}, frames).flatten().tolist() == [6.0, 7.0, 8.0, 9.0, 10.0, 11.0]
    rotary = torch.arange(8.0).reshape(8, 1)  # 2 rows per sample only by chance, without frames
    assert torch.equal(_half(rotary, 4, slice(2, 4), {}, _folded_frames((torch.zeros(4, 2, 8, 8),), {})), rotary)
    produced = torch.arange(20.0).reshape(20, 1)  # 5 rows per sample, returned by an auxiliary model
    assert _half(produced, 4, slice(0, 2), {id(produced): produced}).flatten().tolist() == list(range(10))


def test_an_argument_the_standard_call_never_reads_is_accepted_and_ignored(project):
    """A source that takes `eta` and never reads it: the package takes it too (the standard call ignores it), while
    an argument it cannot serve still raises."""
    package = convert_fixture(
        project,
        "pipeline_toy.py",
        "modular_toy",
        ('        output_type: str = "np",\n', '        output_type: str = "np",\n        eta: float = 0.0,\n'),
    )
    module = equivalence.load_package(package)
    pipeline_cls, _ = equivalence.package_classes(module)
    assert pipeline_cls.ignored_arguments == ("eta",)
    pipe = pipeline_cls()
    kwargs = pipe.translate_standard_call(prompt="a cat", eta=0.7, guidance_scale=1.0)
    assert "eta" not in kwargs and kwargs["prompt"] == "a cat"
    with pytest.raises(TypeError, match="unexpected keyword arguments"):
        pipe.translate_standard_call(prompt="a cat", strength=0.3)
