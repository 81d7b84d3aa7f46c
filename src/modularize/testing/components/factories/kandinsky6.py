"""Kandinsky 6 video super-resolution: a causal video K-VAE and the text-free SR transformer that refines its latent
tiles.

The pipeline cuts the (pre-upscaled) input video into overlapping tiles, bilinearly upscales each to one of the
transformer's `tile_sizes` (pixels), encodes it, denoises the latent tile and blends the decoded tiles back. The
transformer's NABLA attention groups its token grid into 8 x 8 blocks, so a tile's latent height and width must be
multiples of 8; the tiny tile is two blocks a side:

    video (3 frames, 32 px) --x1.125--> 36 px --9 tiles of 16 px--> x2 --> 32 px tiles
          --VAE encode--> (1, latent_channels, 2, 16, 16) --SR transformer (2 x 16 x 16 tokens)--> ... --> 72 px

The test video has `2 x temporal + 1` frames with `temporal = 1` for a VAE `inputs` does not know (3 frames), and the
pipeline asks for `1 + k x temporal_compression_ratio`: the tiny VAE halves time once (3 frames -> 2 latent frames).
"""

from __future__ import annotations

from ..registry import Need, factory

# the tiny K-VAE: two levels (spatial factor 2), the first downsample also halving time
KANDINSKY6_VAE_WIDTHS = (8, 16)
KANDINSKY6_TEMPORAL = 2
# NABLA's attention blocks are 8 x 8 tokens (`FRACTAL_BLOCK_SIZE`); a tile's latent grid is two blocks a side
KANDINSKY6_TILE_TOKENS = 16


@factory("Kandinsky6SRVAE")
def kandinsky6_sr_vae(need: Need):
    """Encoder and decoder widths 8 -> 16, one residual block per level, `dims.latent_channels` latents; time is
    compressed by the first level's downsample (`temporal_compression_start_level=0`). No layer is zero-initialized."""
    return need.model(
        need.cls,
        latent_channels=need.dims.latent_channels,
        encoder_block_out_channels=KANDINSKY6_VAE_WIDTHS,
        decoder_block_out_channels=KANDINSKY6_VAE_WIDTHS,
        layers_per_block=1,
        temporal_compression_ratio=KANDINSKY6_TEMPORAL,
        temporal_compression_start_level=0,
    )


@factory("Kandinsky6SRTransformer3DModel")
def kandinsky6_sr_transformer(need: Need):
    """One block of `dims.heads` heads of `dims.head_dim` (RoPE axes `dims.rope_axes`), reading `[latent | anchor |
    anchor mask]` (`2 x latent_channels + 1` channels) and predicting a velocity of `latent_channels` (the
    flow-matching scheduler's; a pi-Flow scheduler would want `n_grid` times as many). One trained tile size, square,
    whose latent grid is `KANDINSKY6_TILE_TOKENS` a side.

    Its constructor zeroes `pooled_bias` (the folded empty-caption projection added to the time embedding): it is
    drawn, seeded, so the time embedding the conversion passes on is not the plain sinusoid's image."""
    d = need.dims
    spatial = 2 ** (len(KANDINSKY6_VAE_WIDTHS) - 1)
    tile = KANDINSKY6_TILE_TOKENS * spatial

    def build(**kwargs):
        import torch

        transformer = need.cls(**kwargs)
        with torch.no_grad():
            transformer.pooled_bias.normal_(std=0.1)
        return transformer

    return need.model(
        build,
        in_visual_dim=d.latent_channels,
        out_visual_dim=d.latent_channels,
        time_dim=d.inner_dim,
        model_dim=d.inner_dim,
        ff_dim=2 * d.inner_dim,
        num_visual_blocks=d.layers,
        axes_dims=d.rope_axes,
        tile_sizes=((tile, tile),),
    )
