"""Denoisers of the chunk-by-chunk video pipelines: Helios and HunyuanVideo Framepack.

Both generate a long video a chunk (Framepack: a section) at a time: an outer loop around the denoising loop
denoises the next few latent frames while attending to the frames generated so far, which it hands the denoiser as
history latents at three resolutions (Helios: short / mid / long, Framepack: clean / 2x / 4x), each patched by its
own convolution (stride 1 x 2 x 2, 2 x 4 x 4, 4 x 8 x 8 over the latent grid, padded up to it first). Their text
encoders, tokenizers, VAEs and image encoder come from the shared factories; what couples with them here:

    text encoder hidden states (batch, tokens, text_width) --> `text_dim` / `text_embed_dim`
    CLIP pooled embedding (batch, text_width)               --> `pooled_projection_dim` (Framepack)
    SigLIP patch features (batch, patches, text_hidden)     --> `image_proj_dim` (Framepack)
    VAE latents (batch, latent_channels, frames, h, w)      --> `in_channels` / `out_channels`

The rotary axes (frames, height, width) add up to the head size (`dims.rope_axes`, `dims.head_dim`).
"""

from __future__ import annotations

from ..registry import Need, factory
from .controlnets import _awake


def _build_awake(cls: type):
    """`cls(**kwargs)` with any zero-initialized linear / 2D convolution re-drawn (seeded by `Need.model`): a
    zero output layer would give the same (zero) prediction whatever the inputs, so a wrong input could not show.
    Neither transformer zero-initializes one today (only norm biases start at zero); this keeps it so if one does."""
    return lambda **kwargs: _awake(cls(**kwargs))


@factory("HeliosTransformer3DModel")
def helios_transformer(need: Need):
    """A one-block Wan-like transformer with Helios' multi-term memory patches (short, mid, long history), 1 x 2 x 2
    patches, `heads` heads of `head_dim` channels, text at the UMT5 encoder's width."""
    d = need.dims
    return need.model(
        _build_awake(need.cls),
        patch_size=(1, 2, 2),
        num_attention_heads=d.heads,
        attention_head_dim=d.head_dim,
        in_channels=d.latent_channels,
        out_channels=d.latent_channels,
        text_dim=need.text_width(),
        freq_dim=32,
        ffn_dim=32,
        num_layers=d.layers,
        rope_dim=d.rope_axes,
    )


@factory("HunyuanVideoFramepackTransformer3DModel")
def hunyuan_video_framepack_transformer(need: Need):
    """HunyuanVideo's transformer (one double-stream, one single-stream block, one token-refiner layer) with
    Framepack's history embedder and image projection, both of which its forward pass always uses. Patches are
    2 x 2 because the history embedder's finest patch is (1, 2, 2) and shares the latents' rotary grid."""
    d = need.dims
    return need.model(
        _build_awake(need.cls),
        in_channels=d.latent_channels,
        out_channels=d.latent_channels,
        num_attention_heads=d.heads,
        attention_head_dim=d.head_dim,
        num_layers=d.layers,
        num_single_layers=1,
        num_refiner_layers=1,
        mlp_ratio=2.0,
        patch_size=2,
        patch_size_t=1,
        guidance_embeds=True,
        text_embed_dim=need.text_width(),
        pooled_projection_dim=need.text_width("text_encoder_2"),
        rope_axes_dim=d.rope_axes,
        has_image_proj=True,
        image_proj_dim=d.text_hidden,  # the SigLIP image encoder's width (`vision.siglip_vision_model`)
        has_clean_x_embedder=True,
    )
