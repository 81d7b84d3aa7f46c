"""End to end: the generated packages give the standard pipelines' outputs, and verify notices when they do not."""

import json
import shutil
from pathlib import Path

import pytest

from modularize.cli import main
from modularize.commands.verify import Case, load_package, package_classes, verify_package

from .conftest import TOY

# every test here runs torch pipelines end to end
pytestmark = pytest.mark.slow

# What the matrix has to cover (the foundation issue's list), as (input, value) pairs found in some case
REQUIRED_COVERAGE = [
    ("guidance_scale", 1.0),
    ("guidance_rescale", 0.7),
    ("negative_prompt", None),  # some case passes a negative prompt
    ("num_images_per_prompt", 2),
    ("output_type", "latent"),
    ("output_type", "np"),
    ("scheduler", "DDIMScheduler"),
    ("num_inference_steps", 3),
]


def test_demo_converts_and_proves_stable_diffusion_equal_in_plain_and_exact_mode(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = main(["demo", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["ok"] is True
    assert report["pipeline"] == "StableDiffusionPipeline"
    runs = report["cases"]
    assert {run["mode"] for run in runs} == {"plain", "exact"}
    for run in runs:
        assert run["status"] == "compared" and run["passed"], run
        if run["mode"] == "exact":
            assert run["bitwise"], run
        else:
            assert run["max_abs_diff"] <= 1e-5, run
    inputs = [run["inputs"] for run in runs]
    for name, value in REQUIRED_COVERAGE:
        assert any(name in i and (value is None or i[name] == value) for i in inputs), (name, value)
    assert any(i.get("guidance_scale", 7.5) == 7.5 for i in inputs)
    assert any(isinstance(i["prompt"], list) and len(i["prompt"]) == 2 for i in inputs)
    assert any(i.get("scheduler") == "DDIMScheduler" and i.get("eta", 0) > 0 for i in inputs)
    assert (tmp_path / "modular_stable_diffusion" / "denoise.py").exists()
    png = tmp_path / "verify_modular_stable_diffusion.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_verify_json_merges_cases_over_default_inputs(cli, sd_package, tmp_path):
    run = cli(
        "verify",
        sd_package,
        "--no-default-cases",
        "--case",
        '{"name": "off", "guidance_scale": 1.0, "num_images_per_prompt": 2}',
        "--exact",
        "--json",
        "--png",
        tmp_path / "cmp.png",
    )
    report = json.loads(run.out)
    assert run.code == 0 and report["ok"]
    assert [(c["name"], c["mode"]) for c in report["cases"]] == [("off", "plain"), ("off", "exact")]
    first = report["cases"][0]
    assert set(first) >= {"name", "inputs", "mode", "max_abs_diff", "bitwise"}
    assert first["inputs"] == {
        "prompt": "a photo of a cat",
        "num_inference_steps": 2,
        "output_type": "np",
        "guidance_scale": 1.0,
        "num_images_per_prompt": 2,
    }
    assert (tmp_path / "cmp.png").exists()


def test_a_case_the_standard_pipeline_rejects_is_skipped_not_passed(sd_package):
    report = verify_package(sd_package, cases=[Case("bad_size", {"height": 36, "width": 36})])
    (result,) = report.cases
    assert result.status == "skipped" and not result.passed and not result.bitwise
    assert "divisible by 8" in result.reason
    assert not report.ok  # nothing was compared, so nothing was proven
    (case,) = json.loads(json.dumps(report.as_json(), allow_nan=False))["cases"]
    assert case["max_abs_diff"] is None and case["bitwise"] is False


def test_the_toy_pipeline_verifies_with_user_components(cli, toy_package, toy_on_path):
    cases = [
        '{"prompt": "a cat"}',
        '{"prompt": ["a cat", "a dog"], "negative_prompt": ["x", "y"], "output_type": "latent"}',
        '{"prompt": "a cat", "guidance_scale": 1.0, "num_inference_steps": 3}',
    ]
    args = ["verify", toy_package, "--components", "pipeline_toy:tiny_components", "--exact", "--json", "--no-png"]
    for case in cases:
        args += ["--case", case]
    run = cli(*args)
    report = json.loads(run.out)
    assert run.code == 0, report
    # the three given cases in both modes, beside the default matrix the toy's signature gives; every run bitwise
    given = sorted((c["name"], c["mode"]) for c in report["cases"] if c["name"].startswith("case_"))
    assert given == [(f"case_{i}", mode) for i in (1, 2, 3) for mode in ("exact", "plain")]
    assert all(c["status"] == "compared" and c["bitwise"] for c in report["cases"])


@pytest.fixture
def sd_pipeline(sd_package):
    from modularize.testing.tiny import stable_diffusion_components

    pipeline_cls, blocks_cls = package_classes(load_package(sd_package))
    pipe = pipeline_cls(blocks=blocks_cls())
    components = stable_diffusion_components()
    pipe.update_components(**{k: v for k, v in components.items() if k in pipe._component_specs})
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_inputs_the_package_cannot_serve_raise_a_clear_error(sd_pipeline):
    with pytest.raises(ValueError, match="`callback_on_step_end` is not supported"):
        sd_pipeline.translate_standard_call(prompt="a cat", callback_on_step_end=lambda *a: {})
    with pytest.raises(TypeError, match="unexpected keyword arguments: \\['promt'\\]"):
        sd_pipeline.translate_standard_call(promt="a cat")


def test_an_ip_adapter_the_rest_of_call_cannot_pair_stays_an_error():
    """SDXL adds the IP-Adapter's embeddings to `added_cond_kwargs` inside the loop, which the guider cannot pair
    per batch: the analysis gates the inputs instead (raising when given), as before the split was tried."""
    from modularize.convert import ConvertOptions, plan_for
    from modularize.frontend.source_file import installed_diffusers_file, read_source

    path = installed_diffusers_file("pipelines/stable_diffusion_xl/pipeline_stable_diffusion_xl.py")
    source = read_source(str(path))
    plan = plan_for(source.text, ConvertOptions(str(path), source.label, source.module_name))
    raises = [n for n in plan.notes if n.action == "raises"]
    assert len(raises) == 1 and "`ip_adapter_image` / `ip_adapter_image_embeds`" in raises[0].what


def test_the_guider_follows_the_standard_pipelines_condition(sd_pipeline):
    sd_pipeline.translate_standard_call(prompt="a", guidance_scale=7.5, guidance_rescale=0.7)
    assert sd_pipeline.guider.num_conditions == 2 and sd_pipeline.guider.guidance_rescale == 0.7
    sd_pipeline.translate_standard_call(prompt="a", guidance_scale=0.5, guidance_rescale=0.7)
    # the guider alone would do CFG at 0.5; the standard pipeline does not, and then it never rescales
    assert sd_pipeline.guider.num_conditions == 1 and sd_pipeline.guider.guidance_rescale == 0.0


def test_guidance_arguments_passed_straight_to_the_modular_call_mean_what_they_mean_in_the_standard_call(sd_pipeline):
    sd_pipeline(prompt="a", num_inference_steps=1, guidance_scale=1.0, output="images")
    assert sd_pipeline.guider.num_conditions == 1  # CFG off, as the standard pipeline would have it
    sd_pipeline(prompt="a", num_inference_steps=1, guidance_scale=5.0, guidance_rescale=0.5, output="images")
    assert sd_pipeline.guider.num_conditions == 2 and sd_pipeline.guider.guidance_scale == 5.0
    with pytest.raises(ValueError, match="`callback` is not supported"):
        sd_pipeline(prompt="a", num_inference_steps=1, callback=print, callback_steps=1)
    # how often the deprecated callback would run changes nothing without one: accepted, as the standard call does
    sd_pipeline(prompt="a", num_inference_steps=1, callback_steps=1, output="images")


MUTATIONS = [
    # conditional and unconditional embeddings paired the wrong way round
    (
        "denoise.py",
        '("prompt_embeds", "negative_prompt_embeds")',
        '("negative_prompt_embeds", "prompt_embeds")',
        "denoise",
    ),
    # a merged prediction handed back to the wrong guider batches
    ("denoise.py", "zip(merged.merged_from,", "zip(merged.merged_from[::-1],", "denoise"),
    # the guider's scale drifts from the standard call's
    ("modular_pipeline.py", "guidance_scale=guidance_scale,", "guidance_scale=guidance_scale * 1.01,", "denoise"),
    # the standard constructor's fix of outdated scheduler configs is not reproduced
    (
        "modular_pipeline.py",
        "super().register_components(**kwargs)\n",
        "return super().register_components(**kwargs)\n",
        "prepare_timesteps",
    ),
    # the initial noise is scaled differently
    (
        "before_denoise.py",
        "latents = latents * components.scheduler.init_noise_sigma",
        "latents = latents * components.scheduler.init_noise_sigma * 1.001",
        "prepare_latent_variables",
    ),
]


@pytest.mark.parametrize(("file", "old", "new", "block"), MUTATIONS)
def test_verify_has_teeth_and_names_the_first_diverging_block(sd_package, tmp_path, file, old, new, block):
    mutant = tmp_path / "mutant"
    shutil.copytree(sd_package, mutant)
    text = (mutant / file).read_text()
    assert old in text
    (mutant / file).write_text(text.replace(old, new, 1))
    cases = [Case("default", {}), Case("ddim", {"scheduler": "DDIMScheduler", "eta": 0.5})]
    report = verify_package(mutant, cases=cases)
    assert not report.ok
    failing = [c for c in report.cases if c.status == "compared" and not c.passed]
    assert failing and all(not c.bitwise for c in failing)
    assert all(c.first_diverging_block.startswith(f"{block} (`") for c in failing), failing
    assert all(c.first_diverging_block == "" for c in report.cases if c.passed)


def test_exact_mode_makes_one_model_call_per_guider_batch(sd_package):
    calls = []
    from modularize.testing import tiny

    original = tiny.stable_diffusion_components

    def counting():
        components = original()
        unet = components["unet"]
        forward = unet.forward

        def spy(sample, *args, **kwargs):
            calls.append(sample.shape[0])
            return forward(sample, *args, **kwargs)

        unet.forward = spy
        return components

    report = verify_package(
        sd_package, cases=[Case("two", {"num_images_per_prompt": 2})], exact=True, components=counting
    )
    assert report.ok and [c.mode for c in report.cases] == ["plain", "exact"]
    # PNDM runs 3 iterations for 2 steps; generated pipeline first, then the standard one. Plain mode: one call on
    # the batch of 4 (2 images x [uncond, cond]) per iteration on each side; exact mode: two calls of 2.
    assert calls == [4] * 6 + [2] * 12
    assert TOY.exists()


def converted_and_bitwise(tmp_path, source: str | Path):
    """Convert an installed diffusers pipeline (`pipelines/...` relative to the package, or its path) and verify it
    in plain and exact mode over its built-in matrix: every case compared (none skipped), every one bitwise.
    Returns (the package, the report)."""
    from modularize.frontend.source_file import installed_diffusers_file

    path = installed_diffusers_file(source) if isinstance(source, str) else source
    package = tmp_path / "package"
    assert main([str(path), "-o", str(package), "-q"]) == 0
    report = verify_package(package, exact=True)
    assert report.ok, [c for c in report.cases if not c.passed]
    assert all(c.status == "compared" and c.bitwise for c in report.cases)
    return package, report


SD_SCALES = (7.5, 1.0)  # (the default guidance scale, one that turns CFG off)


@pytest.mark.parametrize(
    ("source", "strengths", "scales"),
    [
        ("pipelines/stable_diffusion/pipeline_stable_diffusion_img2img.py", {0.5, 0.9}, SD_SCALES),
        ("pipelines/stable_diffusion/pipeline_stable_diffusion_inpaint.py", {0.75, 1.0}, SD_SCALES),
        # the same mechanisms (the `vae_encoder` split, early returns after the loop) on the other families
        ("pipelines/stable_diffusion_xl/pipeline_stable_diffusion_xl_img2img.py", {0.5, 0.9}, SD_SCALES),
        ("pipelines/stable_diffusion_xl/pipeline_stable_diffusion_xl_inpaint.py", {0.75, 1.0}, SD_SCALES),
        ("pipelines/stable_diffusion_3/pipeline_stable_diffusion_3_img2img.py", {0.6, 0.9}, SD_SCALES),
        ("pipelines/stable_diffusion_3/pipeline_stable_diffusion_3_inpaint.py", {0.75, 1.0}, SD_SCALES),
        # branched CFG with a model output object (no `return_dict=False`): the merged call's output is split too
        ("pipelines/z_image/pipeline_z_image_img2img.py", {0.6, 0.9, 1.0}, (5.0, 0.0)),
        ("pipelines/z_image/pipeline_z_image_inpaint.py", {0.6, 0.9, 1.0}, (5.0, 0.0)),
    ],
)
def test_image_to_image_and_inpainting_are_bitwise_equal(tmp_path, source, strengths, scales):
    package, report = converted_and_bitwise(tmp_path, source)
    _, blocks = package_classes(load_package(package))
    # the encode is its own block, so latents can be fed instead; not where the helper, given latents, draws noise
    # and encodes before it returns (Z-Image inpainting): split there, the rest would not know it had returned
    assert ("vae_encoder" in blocks().sub_blocks) == ("z_image_inpaint" not in source)
    covered = {c.inputs.get("strength") for c in report.cases}
    assert strengths <= covered
    assert {c.inputs.get("guidance_scale", scales[0]) for c in report.cases} >= set(scales)
    assert {c.inputs["output_type"] for c in report.cases} == {"np", "latent"}
    assert any(c.inputs.get("num_images_per_prompt") == 2 for c in report.cases)


@pytest.mark.parametrize(
    "source",
    [
        "pipelines/stable_diffusion_xl/pipeline_stable_diffusion_xl.py",
        "pipelines/stable_diffusion_3/pipeline_stable_diffusion_3.py",
        "pipelines/pixart_alpha/pipeline_pixart_sigma.py",
        "pipelines/sana/pipeline_sana.py",
        "pipelines/aura_flow/pipeline_aura_flow.py",
    ],
)
def test_batched_cfg_families_are_bitwise_equal(tmp_path, source):
    package, report = converted_and_bitwise(tmp_path, source)
    inputs = [c.inputs for c in report.cases]
    assert {i.get("guidance_scale") for i in inputs} >= {1.0, None}  # CFG off, and on at the default scale
    assert any(isinstance(i["prompt"], list) for i in inputs) and any(
        i.get("num_images_per_prompt") == 2 for i in inputs
    )
    assert {i["output_type"] for i in inputs} == {"np", "latent"}
    if "pixart" in source or "sana" in source:  # resolution binning: generated at a bin's size, resized back
        assert any(i["use_resolution_binning"] for i in inputs) and any(
            not i["use_resolution_binning"] for i in inputs
        )


def test_sdxl_refuses_negative_sizes_it_cannot_reproduce(tmp_path):
    """The standard SDXL pipeline repeats `[negative, positive]` time ids together; with different negative sizes
    and several images the generated package raises instead of silently computing something else."""
    from modularize.frontend.source_file import installed_diffusers_file

    package = tmp_path / "package"
    source = installed_diffusers_file("pipelines/stable_diffusion_xl/pipeline_stable_diffusion_xl.py")
    assert main([str(source), "-o", str(package), "-q"]) == 0
    case = Case("negative_sizes_x2", {"negative_original_size": (24, 24), "num_images_per_prompt": 2})
    case = Case(case.name, {**case.overrides, "negative_target_size": (32, 32)})
    (result,) = verify_package(package, cases=[case]).cases
    assert result.status == "failed" and "negative_add_time_ids` differ" in result.reason


def _true_cfg_on(inputs: dict, default_scale: float) -> bool:
    return bool(inputs.get("negative_prompt")) and inputs.get("true_cfg_scale", default_scale) > 1


@pytest.mark.parametrize(
    ("source", "label", "images_argument", "cfg_on"),
    [
        (
            "pipelines/flux/pipeline_flux.py",
            "separate-passes+distilled",
            "num_images_per_prompt",
            lambda i: _true_cfg_on(i, 1.0),
        ),
        (  # each prediction is sliced right after its call: every guider batch slices its own
            "pipelines/flux/pipeline_flux_kontext.py",
            "separate-passes+distilled",
            "num_images_per_prompt",
            lambda i: _true_cfg_on(i, 1.0),
        ),
        (
            "pipelines/qwenimage/pipeline_qwenimage.py",
            "separate-passes+custom-combine+distilled",
            "num_images_per_prompt",
            lambda i: _true_cfg_on(i, 4.0),
        ),
        (
            "pipelines/wan/pipeline_wan.py",
            "separate-passes",
            "num_videos_per_prompt",
            lambda i: i.get("guidance_scale", 5.0) > 1,
        ),
        (
            "pipelines/z_image/pipeline_z_image.py",
            "batched-cfg+custom-combine",
            "num_images_per_prompt",
            lambda i: i.get("guidance_scale", 5.0) > 0,
        ),
        (  # three-way guidance: a guider with one batch per part of the prediction
            "pipelines/stable_diffusion/pipeline_stable_diffusion_instruct_pix2pix.py",
            "batched-cfg+custom-combine",
            "num_images_per_prompt",
            lambda i: i.get("guidance_scale", 7.5) > 1 and i.get("image_guidance_scale", 1.5) >= 1,
        ),
        (  # ... with its flag a local, its scales plain arguments and a rescale by the text-guided part
            "pipelines/stable_diffusion_xl/pipeline_stable_diffusion_xl_instruct_pix2pix.py",
            "batched-cfg+custom-combine",
            "num_images_per_prompt",
            lambda i: i.get("guidance_scale", 5.0) > 1 and i.get("image_guidance_scale", 1.5) >= 1,
        ),
    ],
)
def test_guidance_beyond_plain_batched_cfg_is_bitwise_equal(tmp_path, cli, source, label, images_argument, cfg_on):
    from modularize.frontend.source_file import installed_diffusers_file

    path = installed_diffusers_file(source)
    plan = json.loads(cli("plan", path, "--json").out)
    assert plan["guidance"]["label"] == label
    # bitwise in both modes: plain-mode batches run as the one call a batched source made (Z-Image), or as the
    # separate calls a separate-passes source made
    _, report = converted_and_bitwise(tmp_path, path)
    inputs = [c.inputs for c in report.cases]
    on = [i for i in inputs if cfg_on(i)]
    assert on and len(on) < len(inputs)  # CFG on and off (true CFG needs a negative prompt)
    assert any(isinstance(i["prompt"], list) for i in on) and any(i.get(images_argument) == 2 for i in inputs)
    assert {i["output_type"] for i in inputs} == {"np", "latent"}
    assert {i["num_inference_steps"] for i in inputs} == {2, 3}


@pytest.mark.parametrize(
    ("source", "scheduler"),
    [
        ("pipelines/ddpm/pipeline_ddpm.py", "DDPMScheduler"),
        ("pipelines/ddim/pipeline_ddim.py", "DDIMScheduler"),
        ("pipelines/deprecated/pndm/pipeline_pndm.py", "PNDMScheduler"),
    ],
)
def test_unlabelled_unconditional_pipelines_are_bitwise_equal(tmp_path, source, scheduler):
    """No stage comments (blocks cut at anchors), a DiffusionPipeline helper (`numpy_to_pil`), and for DDIM an
    `__init__` that replaces the scheduler it is given."""
    from modularize.frontend.source_file import installed_diffusers_file
    from modularize.testing.equivalence import load_package, package_classes
    from modularize.testing.tiny import setup_for

    package = tmp_path / "package"
    assert main([str(installed_diffusers_file(source)), "-o", str(package), "-q"]) == 0
    report = verify_package(package, exact=False)
    assert report.ok and all(c.status == "compared" and c.bitwise for c in report.cases)
    assert {c.inputs["output_type"] for c in report.cases} == {"np", "pil"}
    assert any(c.inputs.get("batch_size") == 2 for c in report.cases)
    pipeline_cls, blocks_cls = package_classes(load_package(package))
    assert [key for key in blocks_cls().sub_blocks] == ["inputs", "prepare", "denoise", "decode"]
    pipe = pipeline_cls(blocks=blocks_cls())
    pipe.update_components(**setup_for(pipeline_cls.standard_pipeline.rsplit(".", 1)[1]).components())
    assert type(pipe.scheduler).__name__ == scheduler


def test_a_pipeline_that_runs_its_own_guiders_is_carried_and_bitwise_equal(tmp_path, cli):
    """HunyuanImage picks one of two guider components per call and runs the guider protocol itself: there is no
    CFG to rewrite, its loop (and its `guider_state`) is carried as written, the guiders stay components."""
    from modularize.frontend.source_file import installed_diffusers_file

    path = installed_diffusers_file("pipelines/hunyuan_image/pipeline_hunyuanimage.py")
    plan = json.loads(cli("plan", path, "--json").out)
    assert plan["guidance"]["label"] == "none"
    _, report = converted_and_bitwise(tmp_path, path)
    assert any('"' in c.inputs["prompt"] for c in report.cases)  # the text (OCR) guider's case
    assert any(c.inputs.get("negative_prompt") for c in report.cases)


def test_a_local_the_loop_carries_from_step_to_step_is_bitwise_equal(tmp_path):
    """CogVideoX's DPM-solver++ passes its previous prediction (`old_pred_original_sample`, set to None inside the
    `with self.progress_bar(...)` around the loop) from one step to the next: it lives on the loop's block state."""
    _, report = converted_and_bitwise(tmp_path, "pipelines/cogvideo/pipeline_cogvideox.py")
    assert any(c.inputs.get("scheduler") == "CogVideoXDPMScheduler" for c in report.cases)
    assert {c.inputs.get("guidance_scale") for c in report.cases} >= {1.0, None}


@pytest.mark.parametrize(
    "source",
    [
        "pipelines/flux/pipeline_flux_img2img.py",
        "pipelines/flux/pipeline_flux_inpaint.py",
        "pipelines/qwenimage/pipeline_qwenimage_img2img.py",
        "pipelines/qwenimage/pipeline_qwenimage_inpaint.py",
    ],
)
def test_true_cfg_image_to_image_and_inpainting_are_bitwise_equal(tmp_path, source):
    """Separate CFG passes (true CFG) with an input image (and mask): the text-to-image matrix at strength 0.6,
    plus 0.9 and 1.0."""
    package, report = converted_and_bitwise(tmp_path, source)
    assert {c.inputs["strength"] for c in report.cases} == {0.6, 0.9, 1.0}
    assert any(c.inputs.get("negative_prompt") and c.inputs.get("true_cfg_scale", 1.0) > 1 for c in report.cases)
    assert {c.inputs["output_type"] for c in report.cases} == {"np", "latent"}


def test_a_guidance_distilled_unet_needs_no_guider_and_is_bitwise_equal(tmp_path, cli):
    """Latent consistency: the UNet embeds the guidance scale (`timestep_cond`), nothing is batched for CFG."""
    from modularize.frontend.source_file import installed_diffusers_file

    path = installed_diffusers_file("pipelines/latent_consistency_models/pipeline_latent_consistency_text2img.py")
    plan = json.loads(cli("plan", path, "--json").out)
    assert plan["guidance"]["label"] == "distilled" and not plan["guidance"].get("guider")
    _, report = converted_and_bitwise(tmp_path, path)
    assert len({c.inputs.get("guidance_scale") for c in report.cases}) > 1


def test_video_to_video_with_separate_cfg_passes_is_bitwise_equal(tmp_path):
    _, report = converted_and_bitwise(tmp_path, "pipelines/wan/pipeline_wan_video2video.py")
    assert {c.inputs["strength"] for c in report.cases} == {0.7, 1.0}
    assert {c.inputs.get("guidance_scale", 5.0) for c in report.cases} == {1.0, 5.0}
