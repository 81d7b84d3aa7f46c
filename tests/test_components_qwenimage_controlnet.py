"""QwenImage's ControlNet pipelines on tiny components built by class: the ControlNet mirrors the transformer it
feeds (the inpainting one also embeds the packed mask), its residuals are non-zero and follow the control image,
the standard pipelines run the default inputs and every case of the matrix, and the multi-ControlNet setup (one
net on two control images: diffusers' multi class refuses two nets) runs too."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from modularize.testing.components import DIMS, build_components, missing_classes, setup_by_class
from modularize.testing.components.controlnet import multi_class, multi_controlnet_setup

from .test_controlnet_components import _pipeline_class, _standard

PIPELINES = ["QwenImageControlNetPipeline", "QwenImageControlNetInpaintPipeline"]
MIRRORED = (
    "patch_size",
    "in_channels",
    "out_channels",
    "num_layers",
    "attention_head_dim",
    "num_attention_heads",
    "joint_attention_dim",
    "axes_dims_rope",
)


@functools.cache
def _multi():
    cls = _pipeline_class("QwenImageControlNetPipeline")
    setup = multi_controlnet_setup(cls)
    pipe = cls(**setup.components())
    pipe.set_progress_bar_config(disable=True)
    return pipe, setup


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _run(pipe, inputs) -> np.ndarray:
    output = pipe(**inputs, generator=torch.Generator("cpu").manual_seed(0))
    images = output.images
    return images.numpy() if torch.is_tensor(images) else np.asarray(images)


def _expected_count(inputs) -> int:
    prompt = inputs.get("prompt")
    return (len(prompt) if isinstance(prompt, list) else 1) * inputs.get("num_images_per_prompt", 1)


# -- components ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", PIPELINES)
def test_the_controlnet_mirrors_the_transformer(name):
    cls = _pipeline_class(name)
    assert missing_classes(cls) == ()
    components = build_components(cls)
    controlnet, transformer = components["controlnet"], components["transformer"]
    for key in MIRRORED:
        assert controlnet.config[key] == transformer.config[key], key
    assert controlnet.config.joint_attention_dim == components["text_encoder"].config.text_config.hidden_size
    # the inpainting ControlNet embeds the packed control latents joined with the packed mask (1 channel x 2 x 2)
    extra = 4 if "Inpaint" in name else 0
    assert controlnet.config.extra_condition_channels == extra
    assert controlnet.controlnet_x_embedder.in_features == DIMS.packed_latent_channels + extra
    zero = [
        n
        for n, module in controlnet.named_modules()
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)) and not module.weight.any()
    ]
    assert zero == []  # the zero layers are re-drawn: the ControlNet adds something
    again = build_components(cls)["controlnet"].state_dict()  # the same net every time
    assert all(torch.equal(v, again[k]) for k, v in controlnet.state_dict().items())


@pytest.mark.parametrize("name", PIPELINES)
def test_the_residuals_are_not_zero_and_follow_the_control_image(name):
    controlnet = build_components(_pipeline_class(name))["controlnet"]
    grid = DIMS.image_size // DIMS.vae_scale_factor // 2  # packed 2 x 2
    tokens, width = grid * grid, controlnet.config.in_channels + controlnet.config.extra_condition_channels
    noise = torch.Generator().manual_seed(0)
    common = {
        "hidden_states": torch.randn(1, tokens, DIMS.packed_latent_channels, generator=noise),
        "encoder_hidden_states": torch.randn(1, 5, DIMS.text_hidden, generator=noise),
        "encoder_hidden_states_mask": torch.ones(1, 5, dtype=torch.long),
        "timestep": torch.tensor([0.5]),
        "img_shapes": [(1, grid, grid)],
        "return_dict": False,
    }
    control = torch.randn(1, tokens, width, generator=noise)
    with torch.no_grad():
        first = controlnet(controlnet_cond=control, **common)
        second = controlnet(controlnet_cond=control.flip(1), **common)
        half = controlnet(controlnet_cond=control, conditioning_scale=0.5, **common)
    assert len(first) == controlnet.config.num_layers
    for a, b, c in zip(first, second, half, strict=True):
        assert a.abs().max() > 1e-3 and (a - b).abs().max() > 1e-3
        torch.testing.assert_close(c, 0.5 * a)


# -- the standard pipelines run ------------------------------------------------------------------------------------
def _case_ids():
    return [
        pytest.param(name, case, id=f"{name}-{case}")
        for name in PIPELINES
        for case in ("inputs", *(case for case, _ in setup_by_class(_pipeline_class(name)).cases))
    ]


def test_the_matrix_has_the_controlnet_cases():
    for name in PIPELINES:
        cases = dict(setup_by_class(_pipeline_class(name)).cases)
        assert cases["control_scale_0.5"] == {"controlnet_conditioning_scale": 0.5}
        assert cases["control_end_0.5"] == {"control_guidance_end": 0.5}
        assert "guess_mode" not in cases  # (no guess mode in the signature)
        assert cases["two_prompts_two_controls"]["control_image"].shape[0] == 2
    inpaint = dict(setup_by_class(_pipeline_class("QwenImageControlNetInpaintPipeline")).cases)
    assert inpaint["two_prompts_two_controls"]["control_mask"].shape[0] == 2


@pytest.mark.slow
@pytest.mark.parametrize(("name", "case"), _case_ids())
def test_standard_pipeline_runs_the_case(name, case):
    setup = setup_by_class(_pipeline_class(name))
    inputs = {**setup.inputs(), **dict(setup.cases).get(case, {})}
    output = _run(_standard(name), inputs)
    assert np.isfinite(output).all()
    assert output.shape[0] == _expected_count(inputs)


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
    assert np.abs(_run(pipe, {**setup.inputs(), **cases["control_scale_0.5"]}) - default).max() > 1e-2
    assert np.abs(_run(pipe, {**setup.inputs(), **cases["control_end_0.5"]}) - default).max() > 1e-4
    # one control image per prompt: the second prompt's is the mirror of the single image
    one = _run(pipe, {**setup.inputs(), **cases["two_prompts_x2"]})
    two = _run(pipe, {**setup.inputs(), **cases["two_prompts_two_controls"]})
    assert np.abs(one[2:] - two[2:]).max() > 1e-4


# -- multi-ControlNet ------------------------------------------------------------------------------------------------
def test_the_multi_setup_runs_one_net_on_two_control_images():
    from diffusers.models.controlnets import QwenImageMultiControlNetModel

    pipe, setup = _multi()
    assert isinstance(pipe.controlnet, QwenImageMultiControlNetModel) and len(pipe.controlnet.nets) == 1
    inputs = setup.inputs()
    assert len(inputs["control_image"]) == 2 and inputs["controlnet_conditioning_scale"] == [1.0, 0.5]
    # a single scale of a case is given per control image (the pipeline zips the scales with the images)
    assert dict(setup.cases)["control_scale_0.5"]["controlnet_conditioning_scale"] == [0.5, 0.5]
    # the inpainting pipeline takes a single ControlNet only
    with pytest.raises(LookupError):
        multi_class(_pipeline_class("QwenImageControlNetInpaintPipeline"))


def _multi_case_ids():
    setup = multi_controlnet_setup(_pipeline_class("QwenImageControlNetPipeline"))
    return [case for case, _ in setup.cases]


@pytest.mark.slow
@pytest.mark.parametrize("case", _multi_case_ids())
def test_multi_controlnet_runs_the_case(case):
    pipe, setup = _multi()
    inputs = {**setup.inputs(), **dict(setup.cases)[case]}
    output = _run(pipe, inputs)
    assert np.isfinite(output).all()
    assert output.shape[0] == _expected_count(inputs)


@pytest.mark.slow
def test_both_control_images_of_the_multi_controlnet_reach_the_output():
    pipe, setup = _multi()
    both = _run(pipe, setup.inputs())
    first_only = _run(pipe, {**setup.inputs(), "controlnet_conditioning_scale": [1.0, 0.0]})
    second_only = _run(pipe, {**setup.inputs(), "controlnet_conditioning_scale": [0.0, 0.5]})
    assert np.abs(both - first_only).max() > 1e-2 and np.abs(both - second_only).max() > 1e-2
