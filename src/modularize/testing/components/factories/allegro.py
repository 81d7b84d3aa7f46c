"""Allegro: its video VAE and its transformer.

The T5 text encoder and tokenizer and the scheduler come from the shared factories; what couples with them here:

    T5 hidden states (batch, tokens, text_width)        --> `caption_channels` (the caption projection)
    caption projection (batch, tokens, inner_dim)       --> `cross_attention_dim` (heads x head size)
    VAE latents (batch, latent_channels, frames, h, w)  --> `in_channels` / `out_channels`

The transformer splits each head into three equal rotary axes (frames, height, width), each rotated by halves: the
head size is a multiple of 6 (`ALLEGRO_HEAD_DIM`, not `dims.head_dim`, whose thirds are odd).

The VAE only decodes (and encodes) tile by tile: without tiling it raises, and the pipeline does not turn tiling on,
so the factory does (as Allegro's own example does, `pipe.vae.enable_tiling()`), and slicing too: tiled decoding
takes one video at a time (a batch of several fails to fit its one-video tile buffer). A tile is `sample_size` pixels
square and a fixed 24 frames (`sample_frames` in its constructor); a latent video shorter than one tile decodes to
nothing (zeros). So the tiny VAE's tile is one whole tiny video: `sample_size = dims.video_size`, and the pipeline is
asked for 24 frames (see the overrides), 6 latent frames at the temporal compression 4 of its two levels (each halves
time; the first also halves space: spatial compression 2, `VIDEO_COMPRESSION`).
"""

from __future__ import annotations

from ..registry import Need, factory
from .controlnets import _awake

ALLEGRO_HEAD_DIM = 24  # three rotary axes of 8 channels each
ALLEGRO_TILE_FRAMES = 24  # the VAE's fixed tile length in frames (`AutoencoderKLAllegro.__init__`: `sample_frames`)
ALLEGRO_TEMPORAL_COMPRESSION = 4


@factory("AutoencoderKLAllegro")
def autoencoder_kl_allegro(need: Need):
    """Two levels of 8 channels (4 groups), one layer each; both levels halve time, the first halves space. Tiling
    and slicing on, one tile the size of the tiny video."""
    d = need.dims

    def build(**kwargs):
        vae = need.cls(**kwargs)
        vae.enable_tiling()
        vae.enable_slicing()  # its tiled decoding copies one video at a time into its tile batch: one per slice
        return vae

    return need.model(
        build,
        in_channels=3,
        out_channels=3,
        down_block_types=("AllegroDownBlock3D",) * 2,
        up_block_types=("AllegroUpBlock3D",) * 2,
        block_out_channels=(8, 8),
        temporal_downsample_blocks=(True, True),
        temporal_upsample_blocks=(True, True),
        latent_channels=d.latent_channels,
        layers_per_block=1,
        norm_num_groups=4,
        temporal_compression_ratio=ALLEGRO_TEMPORAL_COMPRESSION,
        sample_size=d.video_size,
    )


@factory("AllegroTransformer3DModel")
def allegro_transformer(need: Need):
    """`dims.layers` blocks of `dims.heads` heads of `ALLEGRO_HEAD_DIM`, 2 x 2 patches, captions at the T5 encoder's
    width; its sample sizes are the tiny video's latent grid (they only set the default call size). Any
    zero-initialized linear layer is re-drawn (seeded), so the prediction depends on its inputs."""
    d = need.dims
    heads = d.heads
    return need.model(
        lambda **kwargs: _awake(need.cls(**kwargs)),
        patch_size=2,
        patch_size_t=1,
        num_attention_heads=heads,
        attention_head_dim=ALLEGRO_HEAD_DIM,
        in_channels=d.latent_channels,
        out_channels=d.latent_channels,
        num_layers=d.layers,
        cross_attention_dim=heads * ALLEGRO_HEAD_DIM,
        sample_height=d.video_size // 2,
        sample_width=d.video_size // 2,
        sample_frames=ALLEGRO_TILE_FRAMES // ALLEGRO_TEMPORAL_COMPRESSION,
        caption_channels=need.text_width(),
    )
