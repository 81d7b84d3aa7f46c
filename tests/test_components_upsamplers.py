"""Tiny components of the pipelines that work on another model's outputs: Flux Redux's image embedder reads SigLIP's
patch states and writes T5-wide tokens; the LTX / LTX-2 latent upsamplers read and write their VAE's latents, twice
as large in space; LTX-2's diffusion decoder decodes the LTX-2 VAE's latents to the videos its decoder makes. Each
model's output depends on its inputs; the standard pipelines run every case of the by-class setup, and the
converted packages verify bitwise."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modularize.testing.components import DIMS, setup_by_class
from modularize.testing.components.factories.upsamplers import UPSAMPLER_MID_CHANNELS
from modularize.testing.components.factories.vaes import VIDEO_COMPRESSION
from modularize.testing.components.resolve import resolve

from .conftest import diffusers_class as _cls
from .conftest import outputs_of_every_case
from .conftest import pipeline_by_class as _pipeline
from .conftest import seeded_noise as _noise
from .test_verify import converted_and_bitwise

SOURCES = {
    "FluxPriorReduxPipeline": "pipelines/flux/pipeline_flux_prior_redux.py",
    "LTXLatentUpsamplePipeline": "pipelines/ltx/pipeline_ltx_latent_upsample.py",
    "LTX2LatentUpsamplePipeline": "pipelines/ltx2/pipeline_ltx2_latent_upsample.py",
    "LTX2VideoDiffusionDecodePipeline": "pipelines/ltx2/pipeline_ltx2_diffusion_decode.py",
}
UPSAMPLE_PIPELINES = ("LTXLatentUpsamplePipeline", "LTX2LatentUpsamplePipeline")


@pytest.mark.parametrize("name", SOURCES)
def test_every_component_class_is_built(name):
    assert resolve(_cls(name)).missing == ()


# -- Flux Redux ---------------------------------------------------------------------------------------------------
def test_redux_image_embedder_is_coupled_to_siglip_and_t5():
    pipe = _pipeline("FluxPriorReduxPipeline")
    config = pipe.image_embedder.config
    assert config.redux_dim == pipe.image_encoder.config.hidden_size
    assert config.txt_in_features == pipe.text_encoder_2.config.d_model == DIMS.text_hidden


def test_redux_image_embedder_output_depends_on_its_input():
    embedder = _pipeline("FluxPriorReduxPipeline").image_embedder
    width = embedder.config.redux_dim

    def embed(seed: int) -> torch.Tensor:
        with torch.no_grad():
            return embedder(_noise(1, 16, width, seed=seed)).image_embeds

    first = embed(0)
    assert first.shape == (1, 16, embedder.config.txt_in_features)
    assert torch.isfinite(first).all() and first.std() > 0
    assert not torch.equal(first, embed(1))


def test_redux_prompt_embeds_append_the_image_tokens_and_depend_on_the_image():
    from PIL import ImageOps

    pipe = _pipeline("FluxPriorReduxPipeline")
    inputs = setup_by_class(type(pipe)).inputs()
    first = pipe(**inputs)
    patches = (pipe.image_encoder.config.image_size // pipe.image_encoder.config.patch_size) ** 2
    assert first.prompt_embeds.shape[-1] == pipe.text_encoder_2.config.d_model
    assert first.prompt_embeds.shape[1] > patches  # the prompt's tokens, then the image's
    mirrored = pipe(**{**inputs, "image": ImageOps.mirror(inputs["image"])})
    assert not torch.equal(first.prompt_embeds[:, -patches:], mirrored.prompt_embeds[:, -patches:])
    assert torch.equal(first.prompt_embeds[:, :-patches], mirrored.prompt_embeds[:, :-patches])


# -- LTX / LTX-2 latent upsamplers --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", UPSAMPLE_PIPELINES)
def test_latent_upsampler_is_coupled_to_the_vae(name):
    pipe = _pipeline(name)
    upsampler, vae = pipe.latent_upsampler, pipe.vae
    assert upsampler.config.in_channels == vae.config.latent_channels == DIMS.latent_channels
    assert upsampler.config.mid_channels == UPSAMPLER_MID_CHANNELS and UPSAMPLER_MID_CHANNELS % 32 == 0
    assert VIDEO_COMPRESSION[type(vae).__name__] == (vae.spatial_compression_ratio, vae.temporal_compression_ratio)


@pytest.mark.parametrize("name", UPSAMPLE_PIPELINES)
def test_latent_upsampler_doubles_space_and_depends_on_its_input(name):
    upsampler = _pipeline(name).latent_upsampler
    channels = DIMS.latent_channels

    def upsample(seed: int) -> torch.Tensor:
        with torch.no_grad():
            return upsampler(_noise(1, channels, 3, 4, 4, seed=seed))

    first = upsample(0)
    assert first.shape == (1, channels, 3, 8, 8)
    assert torch.isfinite(first).all() and first.std() > 0
    assert not torch.equal(first, upsample(1))


# -- LTX-2 diffusion decoder --------------------------------------------------------------------------------------
def test_diffusion_decoder_reads_and_decodes_as_the_vae_does():
    pipe = _pipeline("LTX2VideoDiffusionDecodePipeline")
    decoder, vae = pipe.diffusion_decoder, pipe.vae
    config = decoder.config
    assert config.latent_channels == vae.config.latent_channels == DIMS.latent_channels
    spatial, temporal = VIDEO_COMPRESSION["AutoencoderKLLTX2Video"]
    strides = config.decoder_upsample_strides
    assert (config.spatial_compression_ratio, config.temporal_compression_ratio) == (spatial, temporal)
    assert np.prod([s[1] for s in strides]) * config.patch_size == spatial
    assert np.prod([s[0] for s in strides]) == temporal
    latents = _noise(1, DIMS.latent_channels, 3, 8, 8, seed=0)
    with torch.no_grad():
        decoded = decoder.decode(latents, generator=torch.Generator().manual_seed(0)).sample
        by_vae = vae.decode(latents).sample
    assert decoded.shape == by_vae.shape == (1, 3, 5, 16, 16)
    # the pipeline's scheduler has no hint: the override names one (the decoder steps its own loop)
    assert type(pipe.scheduler).__name__ == "FlowMatchEulerDiscreteScheduler"
    # its fallback latent statistics (without a VAE) differ per channel, as the VAE's do
    assert torch.equal(decoder.latents_mean, vae.latents_mean) and torch.equal(decoder.latents_std, vae.latents_std)
    assert len(set(decoder.latents_std.tolist())) == DIMS.latent_channels


def test_diffusion_decoder_output_depends_on_latents_and_noise():
    decoder = _pipeline("LTX2VideoDiffusionDecodePipeline").diffusion_decoder

    def decode(latent_seed: int = 0, noise_seed: int = 0) -> torch.Tensor:
        with torch.no_grad():
            latents = _noise(1, DIMS.latent_channels, 3, 8, 8, seed=latent_seed)
            return decoder.decode(latents, generator=torch.Generator().manual_seed(noise_seed)).sample

    first = decode()
    assert torch.isfinite(first).all() and first.std() > 0
    assert torch.equal(first, decode())
    assert not torch.equal(first, decode(latent_seed=1))
    assert not torch.equal(first, decode(noise_seed=1))


# -- whole pipelines ----------------------------------------------------------------------------------------------
def _frames(output) -> np.ndarray:
    if hasattr(output, "frames"):
        return np.asarray(output.frames)
    return np.concatenate([output.prompt_embeds.flatten().numpy(), output.pooled_prompt_embeds.flatten().numpy()])


@pytest.mark.slow
@pytest.mark.parametrize("name", SOURCES)
def test_standard_pipeline_runs_every_case(name):
    outputs = outputs_of_every_case(_cls(name), _frames)
    # every case changes what comes out (a case the pipeline ignored would show as a copy of the default)
    default = outputs.pop("default")
    for case, output in outputs.items():
        assert output.shape != default.shape or not np.array_equal(output, default), case


@pytest.mark.slow
@pytest.mark.parametrize("name", SOURCES)
def test_converted_package_verifies_bitwise(tmp_path, name):
    # (the upsamplers' cases from given latents: their `prepare_latents` returns them before it encodes, so it is
    # not split at the encode, which would lose that return)
    _, report = converted_and_bitwise(tmp_path, SOURCES[name])
    assert {c.mode for c in report.cases} == {"plain", "exact"}
    assert {c.name for c in report.cases} == {case for case, _ in setup_by_class(_cls(name)).cases}
