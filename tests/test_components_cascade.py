"""Tiny components of Stable Cascade and Würstchen: the priors denoise a grid of image features from a prompt's CLIP
states (Stable Cascade's also from its pooled embedding and an image embedding), the decoders denoise Paella VQ
latents conditioned on those features and decode them with the Paella VQ model. The couplings hold, each model's
output depends on each of its inputs, and the standard pipelines run every case of the by-class setup. The priors'
converted packages verify bitwise in plain mode; in exact mode (one denoiser call per guider batch) they fail: the
converter routes the image embedding through the guider but passes the prompt's concatenated states (both halves)
to every batch's call."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modularize.cli import main
from modularize.commands.verify import verify_package
from modularize.testing.components import DIMS, setup_by_class
from modularize.testing.components.factories.cascade import IMAGE_EMBEDDING_CHANNELS, PAELLA_LATENT_CHANNELS
from modularize.testing.components.resolve import resolve

from .conftest import diffusers_class as _cls
from .conftest import outputs_of_every_case
from .conftest import pipeline_by_class as _pipeline
from .conftest import seeded_noise as _noise

SOURCES = {
    "StableCascadePriorPipeline": "pipelines/stable_cascade/pipeline_stable_cascade_prior.py",
    "WuerstchenPriorPipeline": "pipelines/deprecated/wuerstchen/pipeline_wuerstchen_prior.py",
    "StableCascadeDecoderPipeline": "pipelines/stable_cascade/pipeline_stable_cascade.py",
    "WuerstchenDecoderPipeline": "pipelines/deprecated/wuerstchen/pipeline_wuerstchen.py",
}
PRIORS = ("StableCascadePriorPipeline", "WuerstchenPriorPipeline")
TOKENS = 7


def _depends_on_each(model, inputs: dict, output=lambda out: out) -> None:
    """`model(**inputs)` is finite, varies, and changes when any one input is redrawn."""
    with torch.no_grad():
        first = output(model(**inputs))
        assert torch.isfinite(first).all() and first.std() > 0
        assert torch.equal(first, output(model(**inputs)))
        for name, value in inputs.items():
            other = _noise(*value.shape, seed=99) if value.dim() > 1 else value * 0.5
            assert not torch.equal(first, output(model(**{**inputs, name: other}))), name


@pytest.mark.parametrize("name", SOURCES)
def test_every_component_class_is_built(name):
    assert resolve(_cls(name)).missing == ()


# -- Stable Cascade -----------------------------------------------------------------------------------------------
def test_stable_cascade_prior_is_coupled_to_clip():
    pipe = _pipeline("StableCascadePriorPipeline")
    config, text = pipe.prior.config, pipe.text_encoder.config
    assert config.clip_text_in_channels == text.hidden_size == DIMS.text_hidden
    assert config.clip_text_pooled_in_channels == text.projection_dim == DIMS.clip_projection
    assert config.clip_image_in_channels == DIMS.clip_projection  # (a CLIP vision projection would feed it)
    assert config.in_channels == config.out_channels == IMAGE_EMBEDDING_CHANNELS
    assert config.effnet_in_channels is None  # the prior's role: no features to condition on


def test_stable_cascade_prior_output_depends_on_every_input():
    prior = _pipeline("StableCascadePriorPipeline").prior
    inputs = {
        "sample": _noise(2, IMAGE_EMBEDDING_CHANNELS, 3, 5, seed=0),
        "timestep_ratio": torch.tensor([0.9, 0.4]),
        "clip_text_pooled": _noise(2, 1, DIMS.clip_projection, seed=1),
        "clip_text": _noise(2, TOKENS, DIMS.text_hidden, seed=2),
        "clip_img": _noise(2, 1, DIMS.clip_projection, seed=3),
    }
    _depends_on_each(prior, inputs, lambda out: out.sample)
    with torch.no_grad():  # the prior keeps its grid's size, even 1 x 1
        assert prior(**{**inputs, "sample": _noise(2, IMAGE_EMBEDDING_CHANNELS, 1, 1, seed=0)}).sample.shape[-2:] == (
            1,
            1,
        )


def test_stable_cascade_decoder_is_coupled_to_prior_clip_and_vqgan():
    decoder_pipe = _pipeline("StableCascadeDecoderPipeline")
    config = decoder_pipe.decoder.config
    prior = _pipeline("StableCascadePriorPipeline").prior.config
    assert config.effnet_in_channels == prior.out_channels == IMAGE_EMBEDDING_CHANNELS
    assert config.clip_text_pooled_in_channels == decoder_pipe.text_encoder.config.projection_dim
    assert config.in_channels == config.out_channels == decoder_pipe.vqgan.config.latent_channels
    assert PAELLA_LATENT_CHANNELS == 4  # `prepare_latents` hard-codes 4 channels
    assert config.clip_text_in_channels is None and config.clip_image_in_channels is None


def test_stable_cascade_decoder_output_depends_on_every_input():
    decoder = _pipeline("StableCascadeDecoderPipeline").decoder
    inputs = {
        "sample": _noise(2, PAELLA_LATENT_CHANNELS, 32, 64, seed=0),
        "timestep_ratio": torch.tensor([0.9, 0.4]),
        "clip_text_pooled": _noise(2, 1, DIMS.clip_projection, seed=1),
        "effnet": _noise(2, IMAGE_EMBEDDING_CHANNELS, 3, 6, seed=2),
    }
    _depends_on_each(decoder, inputs, lambda out: out.sample)


# -- Würstchen ----------------------------------------------------------------------------------------------------
def test_wuerstchen_prior_is_coupled_to_clip():
    pipe = _pipeline("WuerstchenPriorPipeline")
    assert pipe.prior.config.c_cond == pipe.text_encoder.config.hidden_size == DIMS.text_hidden
    assert pipe.prior.config.c_in == IMAGE_EMBEDDING_CHANNELS


def test_wuerstchen_prior_output_depends_on_every_input():
    prior = _pipeline("WuerstchenPriorPipeline").prior
    inputs = {
        "x": _noise(2, IMAGE_EMBEDDING_CHANNELS, 3, 5, seed=0),
        "r": torch.tensor([0.9, 0.4]),
        "c": _noise(2, TOKENS, DIMS.text_hidden, seed=1),
    }
    _depends_on_each(prior, inputs)
    with torch.no_grad():  # its output layer is drawn small: it divides by |1 - b| with b near 0, not near 1
        a, b = prior.out(torch.zeros(1, prior.config.c, 1, 1)).chunk(2, dim=1)
        assert (1 - b).abs().min() > 0.5


def test_wuerstchen_decoder_is_coupled_to_prior_clip_and_vqgan():
    pipe = _pipeline("WuerstchenDecoderPipeline")
    config = pipe.decoder.config
    assert config.effnet_embd == _pipeline("WuerstchenPriorPipeline").prior.config.c_in
    assert config.clip_embd == pipe.text_encoder.config.hidden_size
    assert config.c_in == config.c_out == pipe.vqgan.config.latent_channels == PAELLA_LATENT_CHANNELS


def test_wuerstchen_decoder_output_depends_on_every_input():
    decoder = _pipeline("WuerstchenDecoderPipeline").decoder
    inputs = {
        "x": _noise(2, PAELLA_LATENT_CHANNELS, 32, 64, seed=0),
        "r": torch.tensor([0.9, 0.4]),
        "effnet": _noise(2, IMAGE_EMBEDDING_CHANNELS, 3, 6, seed=1),
        "clip": _noise(2, TOKENS, DIMS.text_hidden, seed=2),
    }
    _depends_on_each(decoder, inputs)


@pytest.mark.parametrize("name", ("StableCascadeDecoderPipeline", "WuerstchenDecoderPipeline"))
def test_paella_vq_model_decodes_4x_and_depends_on_latents(name):
    vqgan = _pipeline(name).vqgan
    with torch.no_grad():
        latents = _noise(1, PAELLA_LATENT_CHANNELS, 8, 6, seed=0)
        first = vqgan.decode(latents).sample
        assert first.shape == (1, 3, 32, 24)
        assert torch.isfinite(first).all() and first.std() > 0
        assert not torch.equal(first, vqgan.decode(_noise(1, PAELLA_LATENT_CHANNELS, 8, 6, seed=1)).sample)


# -- whole pipelines ----------------------------------------------------------------------------------------------
def _array(output) -> np.ndarray:
    first = output.image_embeddings if hasattr(output, "image_embeddings") else output.images
    return first.float().numpy() if torch.is_tensor(first) else np.asarray(first)


@pytest.mark.slow
@pytest.mark.parametrize("name", SOURCES)
def test_standard_pipeline_runs_every_case(name):
    outputs = outputs_of_every_case(_cls(name), _array)
    # CFG on and off differ; so do two prompts (or two feature grids) and one
    default = outputs["default"]
    for case, output in outputs.items():
        if case == "default" or (name not in PRIORS and case in ("cfg_off", "negative_prompt")):
            continue  # (the decoders' guidance is off by default: a scale of 1, or a negative prompt, change nothing)
        assert output.shape != default.shape or not np.array_equal(output, default), case


def _converted(tmp_path, name: str):
    from modularize.frontend.source_file import installed_diffusers_file

    package = tmp_path / "package"
    assert main([str(installed_diffusers_file(SOURCES[name])), "-o", str(package), "-q"]) == 0
    return package


@pytest.mark.slow
@pytest.mark.parametrize("name", [*PRIORS, "StableCascadeDecoderPipeline", "WuerstchenDecoderPipeline"])
def test_converted_package_verifies_bitwise_plain_and_exact(tmp_path, name):
    # (the priors pass the prompt's states as `torch.cat([embeds, negative]) if negative is not None else embeds`:
    # split per guider batch like a concatenation under the CFG flag; the decoders' `torch.zeros_like` part is named)
    report = verify_package(_converted(tmp_path, name), exact=True)
    assert report.ok, [c for c in report.cases if not c.passed]
    assert all(c.status == "compared" and c.bitwise for c in report.cases)
    assert {c.mode for c in report.cases} == {"plain", "exact"}
    assert {c.name for c in report.cases} == {case for case, _ in setup_by_class(_cls(name)).cases}
    assert {"default", "cfg_off"} <= {c.name for c in report.cases}
