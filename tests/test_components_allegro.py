"""Allegro's tiny components: the transformer reads the T5 states and the VAE's latents; its prediction depends on
the prompt, the timestep and the latents; the VAE decodes one whole tile (24 frames) with tiling on; the standard
pipeline runs every case of the by-class setup."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modularize.testing.components import DIMS, build_components
from modularize.testing.components.factories.vaes import VIDEO_COMPRESSION

SIZE = 32  # the frames and the VAE tile the Allegro overrides ask for (`components.overrides`)


def _pipeline():
    from diffusers import AllegroPipeline

    pipe = AllegroPipeline(**build_components(AllegroPipeline))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _noise(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_allegro_components_are_coupled():
    pipe = _pipeline()
    transformer, t5, vae = pipe.transformer, pipe.text_encoder, pipe.vae
    config = transformer.config
    assert config.caption_channels == t5.config.d_model == DIMS.text_hidden
    assert config.cross_attention_dim == config.num_attention_heads * config.attention_head_dim
    assert config.attention_head_dim % 6 == 0  # three rotary axes, each rotated by halves
    assert config.in_channels == config.out_channels == vae.config.latent_channels
    assert VIDEO_COMPRESSION["AutoencoderKLAllegro"] == (vae.spatial_compression_ratio, pipe.vae_scale_factor_temporal)
    assert vae.use_tiling and vae.use_slicing  # it decodes only tile by tile, one video at a time
    assert vae.kernel == (24, SIZE, SIZE)  # one tile: the whole tiny video


def test_allegro_vae_decodes_one_tile_to_a_video():
    vae = _pipeline().vae
    latents = _noise(2, DIMS.latent_channels, 6, SIZE // 2, SIZE // 2, seed=0)
    with torch.no_grad():
        video = vae.decode(latents).sample
    assert video.shape == (2, 24, 3, SIZE, SIZE)  # (batch, frames, channels, h, w)
    assert torch.isfinite(video).all() and video.std() > 0
    assert not torch.equal(video[0], video[1])


def test_allegro_transformer_output_depends_on_its_inputs():
    pipe = _pipeline()
    transformer = pipe.transformer
    channels, frames, size = DIMS.latent_channels, 6, SIZE // 2
    rotary, positions = pipe._prepare_rotary_positional_embeddings(1, SIZE, SIZE, frames, "cpu")

    def predict(latent_seed: int = 0, text_seed: int = 1, timestep: float = 500.0) -> torch.Tensor:
        with torch.no_grad():
            return transformer(
                hidden_states=_noise(1, channels, frames, size, size, seed=latent_seed),
                encoder_hidden_states=_noise(1, 1, 5, DIMS.text_hidden, seed=text_seed),
                timestep=torch.tensor([timestep]),
                encoder_attention_mask=torch.ones(1, 5),
                image_rotary_emb=(rotary, positions),
                return_dict=False,
            )[0]

    first = predict()
    assert first.shape == (1, channels, frames, size, size)
    assert torch.isfinite(first).all() and first.std() > 0
    assert not torch.equal(first, predict(text_seed=2))  # the prompt is attended to
    assert not torch.equal(first, predict(timestep=100.0))
    assert not torch.equal(first, predict(latent_seed=3))


@pytest.mark.slow
def test_allegro_pipeline_runs_every_case():
    from diffusers import AllegroPipeline

    from modularize.testing.equivalence import components_by_class

    setup = components_by_class(AllegroPipeline)
    assert [name for name, _ in setup.cases] == [
        "default",
        "cfg_off",
        "negative_prompt",
        "two_prompts_x2",
        "cfg_off_latent",
    ]
    for name, overrides in setup.cases:
        pipe = AllegroPipeline(**setup.components())
        pipe.set_progress_bar_config(disable=True)
        frames = np.asarray(pipe(**{**setup.inputs(), "output_type": "np", **overrides}).frames)
        prompts = 2 if "prompt" in overrides else 1  # (the pipeline makes one video per prompt, whatever is asked)
        if overrides.get("output_type") == "latent":
            assert frames.shape == (prompts, DIMS.latent_channels, 6, SIZE // 2, SIZE // 2), name
        else:
            assert frames.shape == (prompts, 24, SIZE, SIZE, 3), name
            assert frames.std() > 0, name
        assert np.isfinite(frames).all(), name
