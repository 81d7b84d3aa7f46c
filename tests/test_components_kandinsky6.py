"""Kandinsky 6 SR's tiny components: the SR transformer reads the K-VAE's latents (plus anchor and mask), its trained
tile is a whole number of NABLA blocks of latents, and the VAE halves time once so the 3-frame test video fits."""

from __future__ import annotations

import warnings

import torch

from modularize.testing.components import DIMS, build_components


def test_kandinsky6_sr_components_are_coupled_and_run():
    from diffusers import Kandinsky6SRPipeline

    components = build_components(Kandinsky6SRPipeline)
    vae, transformer = components["vae"], components["transformer"]
    assert vae.config.latent_channels == transformer.config.in_visual_dim == DIMS.latent_channels
    assert transformer.config.out_visual_dim == DIMS.latent_channels  # a flow-matching velocity
    assert type(components["scheduler"]).__name__ == "FlowMatchEulerDiscreteScheduler"
    assert components["latent_upscaler"] is None
    ((tile_height, tile_width),) = transformer.config.tile_sizes
    # NABLA groups 8 x 8 tokens; the tile's latent grid must be a whole number of those blocks
    spatial = vae.spatial_compression_ratio
    assert tile_height % (8 * spatial) == 0 and tile_width % (8 * spatial) == 0
    assert vae.temporal_compression_ratio == 2  # 3 test frames = 1 + 1 x 2
    # the zeroed pooled bias (added to every time embedding) is drawn
    assert transformer.pooled_bias.abs().min() > 0

    frames = 3
    generator = torch.Generator().manual_seed(0)
    video = torch.rand(2, 3, frames, tile_height, tile_width, generator=generator) * 2 - 1
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # flex attention eagerly, on the CPU
        latents = vae.encode(video).latent_dist.mode()
        tokens = latents.permute(0, 2, 3, 4, 1)  # (batch, frames, height, width, channels)
        hidden = torch.cat([tokens, torch.zeros_like(tokens), torch.zeros((*tokens.shape[:-1], 1))], dim=-1)
        prediction = transformer(hidden_states=hidden, timestep=torch.tensor([900.0, 100.0]), return_dict=False)[0]
        decoded = vae.decode(latents).sample
    assert latents.shape == (2, DIMS.latent_channels, 2, tile_height // spatial, tile_width // spatial)
    assert prediction.shape == tokens.shape
    assert not torch.equal(prediction[0], prediction[1])
    assert decoded.shape == video.shape and torch.isfinite(decoded).all()
