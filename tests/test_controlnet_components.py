"""ControlNet pipelines on tiny components built by class: every component class has a factory, the ControlNet
mirrors the denoiser it feeds and its control changes the output, the standard pipeline runs every case of the
matrix (guess mode, a second conditioning scale, control that stops half-way, one control image per prompt), and
a multi-ControlNet setup (two differently seeded nets, two control images, two scales) runs."""

from __future__ import annotations

import functools
import inspect

import numpy as np
import pytest
import torch

from modularize.testing.components import DIMS, build_components, missing_classes, setup_by_class
from modularize.testing.components.controlnet import multi_controlnet_setup
from modularize.testing.components.inputs import PER_PROMPT, control_parameter

PIPELINES = [
    "StableDiffusionControlNetPipeline",
    "StableDiffusionXLControlNetPipeline",
    "StableDiffusion3ControlNetPipeline",
    "FluxControlNetPipeline",
    "StableDiffusionControlNetImg2ImgPipeline",
    "StableDiffusionControlNetInpaintPipeline",
    "StableDiffusionXLControlNetUnionPipeline",
]
# the ones with a guess mode (SD3's and Flux's pipelines have none; ControlNet-Union's fails upstream with CFG on)
GUESS_MODE = [
    "StableDiffusionControlNetPipeline",
    "StableDiffusionXLControlNetPipeline",
    "StableDiffusionControlNetImg2ImgPipeline",
    "StableDiffusionControlNetInpaintPipeline",
]


def _pipeline_class(name: str) -> type:
    import diffusers

    return getattr(diffusers, name)


@functools.cache
def _standard(name: str):
    """The standard pipeline on its by-class components, built once per module (its runs do not change it)."""
    cls = _pipeline_class(name)
    pipe = cls(**build_components(cls))
    pipe.set_progress_bar_config(disable=True)
    return pipe


@functools.cache
def _multi(name: str):
    setup = multi_controlnet_setup(_pipeline_class(name))
    pipe = _pipeline_class(name)(**setup.components())
    pipe.set_progress_bar_config(disable=True)
    return pipe, setup


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _run(pipe, inputs) -> np.ndarray:
    torch.manual_seed(0)  # (SD3's ControlNet pipelines encode the control image by sampling the global RNG)
    output = pipe(**inputs, generator=torch.Generator("cpu").manual_seed(0))
    images = output[0] if isinstance(output, tuple) else output.images
    return images.numpy() if torch.is_tensor(images) else np.asarray(images)


def _expected_count(pipeline: type, inputs) -> int:
    prompt = inputs.get("prompt")
    prompts = len(prompt) if isinstance(prompt, list) else 1
    parameters = inspect.signature(pipeline.__call__).parameters
    per_prompt = next(name for name in PER_PROMPT if name in parameters)
    return prompts * inputs.get(per_prompt, 1)


def _case_ids():
    return [
        pytest.param(name, case, id=f"{name}-{case}")
        for name in PIPELINES
        for case, _ in setup_by_class(_pipeline_class(name)).cases
    ]


# -- components ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", PIPELINES)
def test_components_build_by_class_the_same_every_time(name):
    cls = _pipeline_class(name)
    assert missing_classes(cls) == ()
    first, second = build_components(cls), build_components(cls)
    assert first.keys() == second.keys()
    for key, component in first.items():
        if isinstance(component, torch.nn.Module):
            a, b = component.state_dict(), second[key].state_dict()
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), key


def _no_zero_layers(model) -> None:
    zero = [
        name
        for name, module in model.named_modules()
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)) and not module.weight.any()
    ]
    assert zero == []  # the zero convolutions are re-drawn: the ControlNet adds something


@pytest.mark.parametrize(
    "name",
    [
        "StableDiffusionControlNetPipeline",
        "StableDiffusionXLControlNetPipeline",
        "StableDiffusionXLControlNetUnionPipeline",
    ],
)
def test_unet_controlnets_mirror_the_unet(name):
    components = build_components(_pipeline_class(name))
    unet, controlnet = components["unet"], components["controlnet"]
    for key in (
        "block_out_channels",
        "layers_per_block",
        "down_block_types",
        "cross_attention_dim",
        "attention_head_dim",
        "transformer_layers_per_block",
        "norm_num_groups",
        "addition_embed_type",
        "addition_time_embed_dim",
        "projection_class_embeddings_input_dim",
    ):
        assert controlnet.config[key] == unet.config[key], key
    assert controlnet.config.in_channels == components["vae"].config.latent_channels
    if "XL" in name:  # SDXL's added time conditioning comes along with the UNet's config
        assert controlnet.config.addition_embed_type == "text_time"
    # the control image at the tiny size lands on the latent grid, as wide as the first block
    image = torch.zeros(1, 3, DIMS.image_size, DIMS.image_size)
    latent = DIMS.image_size // DIMS.vae_scale_factor
    embedded = controlnet.controlnet_cond_embedding(image)
    assert embedded.shape == (1, unet.config.block_out_channels[0], latent, latent)
    _no_zero_layers(controlnet)


def test_transformer_controlnets_mirror_the_transformer():
    sd3 = build_components(_pipeline_class("StableDiffusion3ControlNetPipeline"))
    for key in ("num_layers", "attention_head_dim", "num_attention_heads", "joint_attention_dim", "patch_size"):
        assert sd3["controlnet"].config[key] == sd3["transformer"].config[key], key
    # the ControlNet's pooled projection is zeros of the pooled prompt embedding's width, its text T5's
    assert sd3["controlnet"].config.pooled_projection_dim == sd3["transformer"].config.pooled_projection_dim
    assert sd3["controlnet"].config.joint_attention_dim == sd3["text_encoder_3"].config.d_model
    assert sd3["transformer"].config.num_layers == 2  # SD3 adds no ControlNet output to its last block
    _no_zero_layers(sd3["controlnet"])
    inpainting = build_components(_pipeline_class("StableDiffusion3ControlNetInpaintingPipeline"))
    assert inpainting["controlnet"].config.extra_conditioning_channels == 1  # the mask joins the control latents
    flux = build_components(_pipeline_class("FluxControlNetPipeline"))
    for key in (
        "in_channels",
        "attention_head_dim",
        "num_attention_heads",
        "joint_attention_dim",
        "pooled_projection_dim",
        "axes_dims_rope",
        "guidance_embeds",
    ):
        assert flux["controlnet"].config[key] == flux["transformer"].config[key], key
    _no_zero_layers(flux["controlnet"])


# -- the case matrix ---------------------------------------------------------------------------------------------
def test_controlnet_cases_follow_the_call_signature():
    cases = {name: dict(setup_by_class(_pipeline_class(name)).cases) for name in PIPELINES}
    sd = cases["StableDiffusionControlNetPipeline"]
    assert sd["guess_mode"] == {"guess_mode": True}
    assert sd["guess_mode_two_prompts_x2"]["guess_mode"] is True
    assert (
        len(sd["guess_mode_two_prompts_x2"]["prompt"]) == sd["guess_mode_two_prompts_x2"]["num_images_per_prompt"] == 2
    )
    assert sd["control_scale_0.5"] == {"controlnet_conditioning_scale": 0.5}
    assert sd["control_end_0.5"] == {"control_guidance_end": 0.5}
    # the control image is `image` for the SD / SDXL pipelines, `control_image` where `image` is the start image
    assert sd["two_prompts_two_controls"]["image"].shape == (2, 3, DIMS.image_size, DIMS.image_size)
    img2img = cases["StableDiffusionControlNetImg2ImgPipeline"]
    assert (
        "image" not in img2img["two_prompts_two_controls"] and "control_image" in img2img["two_prompts_two_controls"]
    )
    # SD inpainting's default scale is 0.5 already: the second value is 1.0
    assert cases["StableDiffusionControlNetInpaintPipeline"]["control_scale_1.0"] == {
        "controlnet_conditioning_scale": 1.0
    }
    for name in ("StableDiffusion3ControlNetPipeline", "FluxControlNetPipeline"):  # no guess mode in the signature
        assert "guess_mode" not in cases[name] and "control_end_0.5" in cases[name]
        assert "control_image" in cases[name]["two_prompts_two_controls"]
    assert "guess_mode" not in cases["StableDiffusionXLControlNetUnionPipeline"]
    assert setup_by_class(_pipeline_class("StableDiffusionXLControlNetUnionPipeline")).inputs()["control_mode"] == 0
    assert control_parameter(inspect.signature(_pipeline_class("StableDiffusionPipeline").__call__).parameters) is None


# -- the standard pipelines run every case --------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize(("name", "case"), _case_ids())
def test_standard_pipeline_runs_the_case(name, case):
    cls = _pipeline_class(name)
    setup = setup_by_class(cls)
    inputs = {**setup.inputs(), **dict(setup.cases)[case]}
    output = _run(_standard(name), inputs)
    assert np.isfinite(output).all()
    assert output.shape[0] == _expected_count(cls, inputs)


@pytest.mark.parametrize("name", GUESS_MODE)
def test_guess_mode_changes_the_output(name):
    setup = setup_by_class(_pipeline_class(name))
    cases = dict(setup.cases)
    off = _run(_standard(name), setup.inputs())
    on = _run(_standard(name), {**setup.inputs(), **cases["guess_mode"]})
    assert np.abs(on - off).max() > 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("name", PIPELINES)
def test_the_control_changes_the_output(name):
    """The control image, its scale and its guidance window all reach the output (no zero ControlNet)."""
    setup = setup_by_class(_pipeline_class(name))
    cases = dict(setup.cases)
    pipe = _standard(name)
    default = _run(pipe, setup.inputs())
    without = _run(pipe, {**setup.inputs(), "controlnet_conditioning_scale": 0.0})
    assert np.abs(default - without).max() > 1e-2
    scale = next(case for case in cases if case.startswith("control_scale_"))
    assert np.abs(_run(pipe, {**setup.inputs(), **cases[scale]}) - default).max() > 1e-2
    assert np.abs(_run(pipe, {**setup.inputs(), **cases["control_end_0.5"]}) - default).max() > 1e-4
    # one control image per prompt: the second prompt's is the mirror of the single image
    one = _run(pipe, {**setup.inputs(), **cases["two_prompts_x2"]})
    two = _run(pipe, {**setup.inputs(), **cases["two_prompts_two_controls"]})
    assert np.abs(one[2:] - two[2:]).max() > 1e-4


# -- multi-ControlNet ------------------------------------------------------------------------------------------------
def test_multi_controlnet_setup_pairs_two_differently_seeded_nets():
    from diffusers.models.controlnets import MultiControlNetModel

    setup = multi_controlnet_setup(_pipeline_class("StableDiffusionControlNetPipeline"))
    first, second = setup.components(), setup.components()
    multi = first["controlnet"]
    assert isinstance(multi, MultiControlNetModel) and len(multi.nets) == 2
    a, b = (net.state_dict() for net in multi.nets)
    assert a.keys() == b.keys() and not all(torch.equal(a[k], b[k]) for k in a)  # two different nets
    assert multi.nets[0].config == multi.nets[1].config
    for built, again in zip(multi.nets, second["controlnet"].nets, strict=True):  # the same two every time
        assert all(torch.equal(v, again.state_dict()[k]) for k, v in built.state_dict().items())
    inputs = setup.inputs()
    assert len(inputs["image"]) == 2 and inputs["controlnet_conditioning_scale"] == [1.0, 0.5]
    assert inputs["image"][0].size == inputs["image"][1].size == (DIMS.image_size, DIMS.image_size)
    assert list(inputs["image"][0].getdata()) != list(inputs["image"][1].getdata())


def _multi_case_ids():
    setup = multi_controlnet_setup(_pipeline_class("StableDiffusionControlNetPipeline"))
    return [case for case, _ in setup.cases]


@pytest.mark.slow
@pytest.mark.parametrize("case", _multi_case_ids())
def test_multi_controlnet_runs_the_case(case):
    name = "StableDiffusionControlNetPipeline"
    pipe, setup = _multi(name)
    inputs = {**setup.inputs(), **dict(setup.cases)[case]}
    output = _run(pipe, inputs)
    assert np.isfinite(output).all()
    assert output.shape[0] == _expected_count(_pipeline_class(name), inputs)


def test_both_nets_of_the_multi_controlnet_reach_the_output():
    pipe, setup = _multi("StableDiffusionControlNetPipeline")
    both = _run(pipe, setup.inputs())
    first_only = _run(pipe, {**setup.inputs(), "controlnet_conditioning_scale": [1.0, 0.0]})
    second_only = _run(pipe, {**setup.inputs(), "controlnet_conditioning_scale": [0.0, 0.5]})
    assert np.abs(both - first_only).max() > 1e-2 and np.abs(both - second_only).max() > 1e-2


@pytest.mark.parametrize(
    "name",
    [
        "StableDiffusionXLControlNetPipeline",
        "StableDiffusion3ControlNetPipeline",
        "FluxControlNetPipeline",
        "StableDiffusionXLControlNetUnionPipeline",
    ],
)
def test_multi_controlnet_of_other_families_runs(name):
    pipe, setup = _multi(name)
    output = _run(pipe, setup.inputs())
    assert np.isfinite(output).all() and output.shape[0] == 1
    assert type(pipe.controlnet).__name__.endswith(("MultiControlNetModel", "MultiControlNetUnionModel"))


# -- the other variants, built by the same factories --------------------------------------------------------------
VARIANTS = [
    "StableDiffusionXLControlNetImg2ImgPipeline",
    "StableDiffusionXLControlNetInpaintPipeline",
    "StableDiffusion3ControlNetInpaintingPipeline",  # a control mask, one more conditioning channel
    "FluxControlNetImg2ImgPipeline",
    "FluxControlNetInpaintPipeline",
    "StableDiffusionXLControlNetUnionImg2ImgPipeline",
    "StableDiffusionXLControlNetUnionInpaintPipeline",
    "StableDiffusionControlNetXSPipeline",
    "StableDiffusionControlNetPAGPipeline",
    "StableDiffusionXLControlNetPAGImg2ImgPipeline",
]


@pytest.mark.slow
@pytest.mark.parametrize("name", VARIANTS)
def test_other_controlnet_variants_run_every_case(name):
    cls = _pipeline_class(name)
    assert missing_classes(cls) == ()
    setup = setup_by_class(cls)
    pipe = _standard(name)
    for case, overrides in setup.cases:
        inputs = {**setup.inputs(), **overrides}
        output = _run(pipe, inputs)
        assert np.isfinite(output).all(), case
        assert output.shape[0] == _expected_count(cls, inputs), case
    default = _run(pipe, setup.inputs())
    without = _run(pipe, {**setup.inputs(), "controlnet_conditioning_scale": 0.0})
    assert np.abs(default - without).max() > 1e-2  # the control reaches the output
