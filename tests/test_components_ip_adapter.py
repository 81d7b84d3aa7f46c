"""IP-Adapter setups on tiny components built by class: the adapter is loaded into the UNet as `load_ip_adapter`
loads one (its state dict drawn in memory), its image encoder and feature extractor fit its projection, building is
deterministic, the standard pipeline runs every case, and the adapter's image reaches the output."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from modularize.testing.components import build_components
from modularize.testing.components.ip_adapter import (
    IP_ADAPTER_TOKENS,
    ip_adapter_setup,
    ip_adapter_state_dict,
)
from modularize.testing.tiny_parts import tiny_image

PIPELINES = ["StableDiffusionPipeline", "StableDiffusionXLPipeline"]


def _pipeline_class(name: str) -> type:
    import diffusers

    return getattr(diffusers, name)


def _pipe(cls, components):
    pipe = cls(**components)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@functools.cache
def _standard(name: str, scale: float = 1.0):
    """The standard pipeline with the tiny IP-Adapter, built once per module (its runs do not change it)."""
    setup = ip_adapter_setup(_pipeline_class(name), scale=scale)
    return _pipe(_pipeline_class(name), setup.components()), setup


@functools.cache
def _without_adapter(name: str):
    cls = _pipeline_class(name)
    return _pipe(cls, build_components(cls))


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


def _case_ids():
    return [
        pytest.param(name, case, id=f"{name}-{case}")
        for name in PIPELINES
        for case, _ in ip_adapter_setup(_pipeline_class(name)).cases
    ]


# -- components ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", PIPELINES)
def test_the_adapter_is_loaded_as_load_ip_adapter_loads_it(name):
    from diffusers.models.attention_processor import IPAdapterAttnProcessor, IPAdapterAttnProcessor2_0
    from diffusers.models.embeddings import ImageProjection, MultiIPAdapterImageProjection

    components = ip_adapter_setup(_pipeline_class(name)).components()
    unet, encoder, extractor = components["unet"], components["image_encoder"], components["feature_extractor"]
    assert unet.config.encoder_hid_dim_type == "ip_image_proj"
    assert isinstance(unet.encoder_hid_proj, MultiIPAdapterImageProjection)
    (projection,) = unet.encoder_hid_proj.image_projection_layers
    assert isinstance(projection, ImageProjection)
    # coupled: the projection takes the image encoder's embedding, the extractor crops to the encoder's size
    assert projection.image_embeds.in_features == encoder.config.projection_dim
    assert projection.image_embeds.out_features == IP_ADAPTER_TOKENS * unet.config.cross_attention_dim
    assert extractor.crop_size["height"] == extractor.crop_size["width"] == encoder.config.image_size
    adapters = {
        key: processor
        for key, processor in unet.attn_processors.items()
        if isinstance(processor, (IPAdapterAttnProcessor, IPAdapterAttnProcessor2_0))
    }
    cross = [key for key in unet.attn_processors if key.endswith("attn2.processor")]
    assert sorted(adapters) == sorted(cross) and cross
    for processor in adapters.values():
        assert processor.scale == [1.0]
        assert processor.to_k_ip[0].weight.abs().min() > 0 and processor.to_v_ip[0].weight.abs().min() > 0


@pytest.mark.parametrize("name", PIPELINES)
def test_the_state_dict_is_laid_out_as_the_checkpoints_are(name):
    unet = build_components(_pipeline_class(name))["unet"]
    state_dict = ip_adapter_state_dict(unet, image_embed_dim=32, seed=0)
    assert sorted(state_dict["image_proj"]) == ["norm.bias", "norm.weight", "proj.bias", "proj.weight"]
    layers = sum(key.endswith("attn2.processor") for key in unet.attn_processors)
    expected = {f"{2 * i + 1}.{part}.weight" for i in range(layers) for part in ("to_k_ip", "to_v_ip")}
    assert set(state_dict["ip_adapter"]) == expected


@pytest.mark.parametrize("name", PIPELINES)
def test_building_is_deterministic(name):
    setup = ip_adapter_setup(_pipeline_class(name))
    first, second = setup.components(), setup.components()
    assert first.keys() == second.keys()
    for key, component in first.items():
        if isinstance(component, torch.nn.Module):
            a, b = component.state_dict(), second[key].state_dict()
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), key
    assert first["feature_extractor"].to_dict() == second["feature_extractor"].to_dict()
    a, b = ip_adapter_setup(_pipeline_class(name)).inputs(), setup.inputs()
    assert np.array_equal(np.asarray(a["ip_adapter_image"]), np.asarray(b["ip_adapter_image"]))


# -- runs ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, case", _case_ids())
def test_the_standard_pipeline_runs_every_case(name, case):
    pipe, setup = _standard(name)
    images = _run(pipe, {**setup.inputs(), **dict(setup.cases)[case]})
    assert np.isfinite(images).all()


@pytest.mark.parametrize("name", PIPELINES)
def test_the_cases_turn_cfg_on_and_off(name):
    _, setup = _standard(name)
    cases = dict(setup.cases)
    assert cases["cfg_off"]["guidance_scale"] == 1.0
    assert "guidance_scale" not in cases["default"]  # (the pipeline's default: CFG on)


@pytest.mark.parametrize("name", PIPELINES)
@pytest.mark.parametrize("cfg", [True, False], ids=["cfg_on", "cfg_off"])
def test_the_adapter_image_reaches_the_output(name, cfg):
    pipe, setup = _standard(name)
    inputs = {**setup.inputs(), **({} if cfg else {"guidance_scale": 1.0})}
    with_adapter = _run(pipe, inputs)
    other_image = _run(pipe, {**inputs, "ip_adapter_image": tiny_image(inputs["height"])})
    assert np.abs(with_adapter - other_image).max() > 1e-3
    plain = {k: v for k, v in inputs.items() if k != "ip_adapter_image"}
    assert np.abs(with_adapter - _run(_without_adapter(name), plain)).max() > 1e-3


@pytest.mark.parametrize("name", PIPELINES)
def test_at_scale_zero_the_adapter_changes_nothing(name):
    """The adapter is the only difference from the plain pipeline: switched off, the outputs agree."""
    pipe, setup = _standard(name, 0.0)
    inputs = setup.inputs()
    plain = {k: v for k, v in inputs.items() if k != "ip_adapter_image"}
    assert np.allclose(_run(pipe, inputs), _run(_without_adapter(name), plain), atol=1e-6)


@pytest.mark.parametrize("name", PIPELINES)
def test_precomputed_embeddings_give_what_the_image_gives(name):
    pipe, setup = _standard(name)
    inputs = setup.inputs()
    from_embeds = _run(pipe, {**inputs, **dict(setup.cases)["ip_adapter_image_embeds"]})
    assert np.array_equal(from_embeds, _run(pipe, inputs))


def test_a_package_refusing_the_adapter_inputs_gets_neither():
    from diffusers import StableDiffusionPipeline

    setup = ip_adapter_setup(StableDiffusionPipeline).serving(
        {"ip_adapter_image": None, "ip_adapter_image_embeds": None}
    )
    assert "ip_adapter_image" not in setup.inputs()
    assert "ip_adapter_image_embeds" not in dict(setup.cases)
    assert len(setup.notes) == 2


# -- converted packages serve the IP-Adapter -------------------------------------------------------------------------
SERVED = [
    "pipelines/stable_diffusion/pipeline_stable_diffusion.py",
    "pipelines/stable_diffusion/pipeline_stable_diffusion_img2img.py",
    "pipelines/controlnet/pipeline_controlnet.py",
    "pipelines/animatediff/pipeline_animatediff.py",
]


@pytest.mark.slow
@pytest.mark.parametrize("source", SERVED)
def test_converted_packages_serve_the_ip_adapter_bitwise(tmp_path, source):
    """The helper's list of CFG-doubled embeddings (one per adapter) is split where `__call__` receives it and paired
    for the guider: with the adapter's image, and with its precomputed embeddings, CFG on and off, plain and exact."""
    from modularize.cli import main
    from modularize.commands.verify import verify_package
    from modularize.frontend.source_file import installed_diffusers_file
    from modularize.testing.equivalence import load_package, package_classes, standard_class

    package = tmp_path / "package"
    assert main([str(installed_diffusers_file(source)), "-o", str(package), "-q"]) == 0
    pipeline_cls, _ = package_classes(load_package(package))
    standard = standard_class(pipeline_cls, package)
    report = verify_package(package, exact=True, components=lambda: ip_adapter_setup(standard))
    compared = [c for c in report.cases if c.status == "compared"]
    assert report.ok and all(c.bitwise for c in compared), [c for c in report.cases if not c.passed]
    assert {c.mode for c in compared} == {"plain", "exact"}
    assert {"default", "cfg_off", "ip_adapter_image_embeds"} <= {c.name for c in compared}
    assert all(c.inputs.get("ip_adapter_image") is not None or c.name == "ip_adapter_image_embeds" for c in compared)
