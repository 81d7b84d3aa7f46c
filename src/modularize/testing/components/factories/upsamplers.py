"""Models that work on another model's outputs: Flux Redux's image embedder, LTX / LTX-2's latent upsamplers and
LTX-2's diffusion decoder.

Flux Redux turns a SigLIP image encoder's patch states into extra T5 tokens, appended to the prompt's:

    SigLIP patch states (batch, patches, siglip width)  --> `redux_dim` (the image embedder's input)
    image embeddings (batch, patches, txt_in_features)  --> joined to T5's states: `txt_in_features` is T5's width

The latent upsamplers read and write the video VAE's latents, twice as large in space:

    VAE latents (batch, latent_channels, frames, h, w)  --> `in_channels` (in and out)

Their residual blocks normalize in 32 groups (fixed upstream): the middle width is a multiple of 32
(`UPSAMPLER_MID_CHANNELS`).

LTX-2's diffusion decoder replaces the VAE's decoder: it reads the same latents (`latent_channels`) and decodes
them to the same videos. Its upsampling stages' strides multiply, with its pixel patch, to the tiny LTX-2 VAE's
compression (`VIDEO_COMPRESSION`: 2 in space, 2 in time): one stage that keeps the grid, one that doubles time, and
2 x 2 pixel patches. Its neighborhood attention needs every grid at least as large as its window (3 x 3 x 3 here)
and heads of a multiple of 8 channels (three rotary axes). It denoises its pixels itself, in 2 steps (its own
Euler loop: the pipeline's scheduler is only registered), from noise drawn with the pipeline's generator.
"""

from __future__ import annotations

from ..registry import Need, factory
from .vaes import VIDEO_COMPRESSION, latent_stats

UPSAMPLER_MID_CHANNELS = 32  # GroupNorm(32, ...) in every residual block: the narrowest width it allows
DIFFUSION_DECODER_WIDTH = 16  # every stage's channels: 2 heads of 8
DIFFUSION_DECODER_HEAD_DIM = 8  # the rotary embedding splits a head across three axes in pairs: a multiple of 8
DIFFUSION_DECODER_KERNEL = (3, 3, 3)  # neighborhood window (frames, height, width) of every stage
DIFFUSION_DECODER_STRIDES = ((1, 1, 1), (2, 1, 1))  # the second stage doubles time (dropping its leading frame)
DIFFUSION_DECODER_PATCH = 2  # 2 x 2 pixels a token in the denoising stage: the spatial compression
DIFFUSION_DECODER_STEPS = 2


@factory("ReduxImageEncoder")
def redux_image_encoder(need: Need):
    """Flux Redux's image embedder: SigLIP's width (`dims.text_hidden`, as the SigLIP factory builds it) up to T5's
    (the prompt states its output is joined to)."""
    return need.model(
        need.cls,
        redux_dim=need.dims.text_hidden,
        txt_in_features=need.text_width("text_encoder_2"),
    )


@factory("LTXLatentUpsamplerModel")
def ltx_latent_upsampler(need: Need):
    """One residual block before and after a 2x spatial pixel shuffle, in 3D convolutions, at the VAE's latent
    channels."""
    return need.model(
        need.cls,
        in_channels=need.dims.latent_channels,
        mid_channels=UPSAMPLER_MID_CHANNELS,
        num_blocks_per_stage=1,
        dims=3,
        spatial_upsample=True,
        temporal_upsample=False,
    )


@factory("LTX2LatentUpsamplerModel")
def ltx2_latent_upsampler(need: Need):
    """As LTX's, with LTX-2's rational resampler (scale 2: a 2x pixel shuffle, no blurred downsampling)."""
    return need.model(
        need.cls,
        in_channels=need.dims.latent_channels,
        mid_channels=UPSAMPLER_MID_CHANNELS,
        num_blocks_per_stage=1,
        dims=3,
        spatial_upsample=True,
        temporal_upsample=False,
        rational_spatial_scale=2.0,
        use_rational_resampler=True,
    )


@factory("LTX2VideoDiffusionDecoderModel")
def ltx2_video_diffusion_decoder(need: Need):
    """Two deterministic stages and a denoising stage of one block each, 16 channels throughout, decoding the tiny
    LTX-2 VAE's latents to its videos (see the module docstring); its fallback latent statistics (used without a
    VAE) differ per channel, as the VAE's do."""
    import torch

    d = need.dims
    spatial, temporal = VIDEO_COMPRESSION["AutoencoderKLLTX2Video"]

    def build(**kwargs):
        decoder = need.cls(**kwargs)
        stats = latent_stats(d.latent_channels)
        with torch.no_grad():
            decoder.latents_mean.copy_(torch.tensor(stats["latents_mean"]))
            decoder.latents_std.copy_(torch.tensor(stats["latents_std"]))
        return decoder

    stages = len(DIFFUSION_DECODER_STRIDES)
    return need.model(
        build,
        out_channels=3,
        latent_channels=d.latent_channels,
        patch_size=DIFFUSION_DECODER_PATCH,
        decoder_head_dim=DIFFUSION_DECODER_HEAD_DIM,
        decoder_stage_channels=(DIFFUSION_DECODER_WIDTH,) * (stages + 1),
        decoder_stage_depths=(1,) * (stages + 1),
        decoder_stage_kernels=(DIFFUSION_DECODER_KERNEL,) * stages,
        decoder_upsample_strides=DIFFUSION_DECODER_STRIDES,
        decoder_upsample_channel_reductions=(1,) * stages,
        decoder_stage5_kernel=DIFFUSION_DECODER_KERNEL,
        decoder_t_emb_dim=DIFFUSION_DECODER_WIDTH,
        decoder_num_inference_steps=DIFFUSION_DECODER_STEPS,
        spatial_compression_ratio=spatial,
        temporal_compression_ratio=temporal,
    )
