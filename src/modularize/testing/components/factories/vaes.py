"""VAEs. Every one has `dims.latent_channels` latent channels; image VAEs scale by `dims.vae_scale_factor`."""

from __future__ import annotations

from ..registry import Need, factory

# the flow-matching families read `shift_factor` and skip the quant convs; the others ignore both
FLOW_VAE = {"shift_factor": 0.0609, "scaling_factor": 1.5035, "use_quant_conv": False, "use_post_quant_conv": False}

# video VAEs, keyed by class: (spatial, temporal) compression of the tiny config below. Video pipelines take
# `2 x temporal + 1` frames (two latent frames after the first) of `dims.video_size` pixels.
VIDEO_COMPRESSION = {
    "AutoencoderKLAllegro": (2, 4),
    "AutoencoderKLWan": (2, 2),
    "AutoencoderKLCogVideoX": (8, 4),
    "AutoencoderKLHunyuanVideo": (8, 4),
    "AutoencoderKLHunyuanVideo15": (4, 2),
    "AutoencoderKLMochi": (8, 6),
    "AutoencoderKLMagvit": (8, 4),
    "AutoencoderKLLTX2Video": (2, 2),
    "AutoencoderKLLTXVideo": (4, 4),
}


def latent_stats(channels: int) -> dict[str, list[float]]:
    """Per-channel latent mean / std, distinct per channel so a swapped channel shows."""
    means = [0.1, -0.2, 0.3, 0.0]
    stds = [1.5, 2.0, 1.2, 0.8]
    return {
        "latents_mean": [means[i % 4] + 0.01 * (i // 4) for i in range(channels)],
        "latents_std": [stds[i % 4] + 0.01 * (i // 4) for i in range(channels)],
    }


@factory("AutoencoderKL")
def autoencoder_kl(need: Need):
    """An image VAE, or, where the pipeline has a vocoder, a VAE of (one-channel) mel spectrograms."""
    d = need.dims
    levels = len(d.vae_block_out)
    channels = 1 if need.class_of("vocoder") is not None else 3
    return need.model(
        need.cls,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=d.vae_block_out,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        latent_channels=d.latent_channels,
        norm_num_groups=d.vae_norm_groups,
        sample_size=d.image_size,
        **FLOW_VAE,
    )


@factory("AutoencoderKLWan")
def autoencoder_kl_wan(need: Need):
    d = need.dims
    return need.model(
        need.cls,
        base_dim=8,
        z_dim=d.latent_channels,
        dim_mult=[1, 2],
        num_res_blocks=1,
        temperal_downsample=[True],
        scale_factor_temporal=2,
        scale_factor_spatial=2,
        **latent_stats(d.latent_channels),
    )


@factory("AutoencoderKLQwenImage")
def autoencoder_kl_qwenimage(need: Need):
    d = need.dims
    return need.model(
        need.cls,
        base_dim=16,
        z_dim=d.latent_channels,
        dim_mult=[1, 2],
        num_res_blocks=1,
        temperal_downsample=[False],
        **latent_stats(d.latent_channels),
    )


@factory("AutoencoderKLCogVideoX")
def autoencoder_kl_cogvideox(need: Need):
    return need.model(
        need.cls,
        in_channels=3,
        out_channels=3,
        down_block_types=("CogVideoXDownBlock3D",) * 4,
        up_block_types=("CogVideoXUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        latent_channels=need.dims.latent_channels,
        layers_per_block=1,
        norm_num_groups=2,
        temporal_compression_ratio=4,
    )


@factory("AutoencoderDC")
def autoencoder_dc(need: Need):
    return need.model(
        need.cls,
        in_channels=3,
        latent_channels=need.dims.latent_channels,
        attention_head_dim=2,
        encoder_block_types=("ResBlock", "EfficientViTBlock"),
        decoder_block_types=("ResBlock", "EfficientViTBlock"),
        encoder_block_out_channels=(8, 8),
        decoder_block_out_channels=(8, 8),
        encoder_qkv_multiscales=((), (5,)),
        decoder_qkv_multiscales=((), (5,)),
        encoder_layers_per_block=(1, 1),
        decoder_layers_per_block=(1, 1),
        downsample_block_type="conv",
        upsample_block_type="interpolate",
        decoder_norm_types="rms_norm",
        decoder_act_fns="silu",
        scaling_factor=0.41407,
    )


@factory("AutoencoderKLHunyuanImage")
def autoencoder_kl_hunyuanimage(need: Need):
    return need.model(
        need.cls,
        in_channels=3,
        out_channels=3,
        latent_channels=need.dims.latent_channels,
        block_out_channels=(32, 64, 64, 64),
        layers_per_block=1,
        scaling_factor=0.5,
        spatial_compression_ratio=8,
        sample_size=64,
    )


@factory("AsymmetricAutoencoderKL")
def asymmetric_autoencoder_kl(need: Need):
    d = need.dims
    levels = len(d.vae_block_out)
    return need.model(
        need.cls,
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * levels,
        down_block_out_channels=d.vae_block_out,
        up_block_types=("UpDecoderBlock2D",) * levels,
        up_block_out_channels=d.vae_block_out,
        latent_channels=d.latent_channels,
        norm_num_groups=d.vae_norm_groups,
        sample_size=d.image_size,
    )


@factory("VQModel")
def vq_model(need: Need):
    """A VQ model with `dims.codebook_size` codebook entries. Where the denoiser predicts image tokens (aMUSEd's
    UVit), the pipeline decodes token ids: the model looks them up in its codebook instead of taking latents."""
    from .denoisers import TOKEN_DENOISERS

    d = need.dims
    levels = len(d.vae_block_out)
    return need.model(
        need.cls,
        in_channels=3,
        out_channels=3,
        block_out_channels=d.vae_block_out,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        latent_channels=d.latent_channels,
        norm_num_groups=d.vae_norm_groups,
        num_vq_embeddings=d.codebook_size,
        lookup_from_codebook=need.has_class(*TOKEN_DENOISERS),
    )


@factory("AutoencoderTiny")
def autoencoder_tiny(need: Need):
    """Three upsampling stages: spatial scale 8."""
    return need.model(
        need.cls,
        in_channels=3,
        out_channels=3,
        encoder_block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        num_encoder_blocks=(1, 1, 1, 1),
        num_decoder_blocks=(1, 1, 1, 1),
        latent_channels=need.dims.latent_channels,
    )


@factory("AutoencoderKLMochi")
def autoencoder_kl_mochi(need: Need):
    channels = need.dims.latent_channels
    return need.model(
        need.cls,
        latent_channels=channels,
        out_channels=3,
        encoder_block_out_channels=(32, 32, 32, 32),
        decoder_block_out_channels=(32, 32, 32, 32),
        layers_per_block=(1, 1, 1, 1, 1),
        latents_mean=tuple(latent_stats(channels)["latents_mean"]),
        latents_std=tuple(latent_stats(channels)["latents_std"]),
    )


@factory("AutoencoderKLHunyuanVideo")
def autoencoder_kl_hunyuan_video(need: Need):
    return need.model(
        need.cls,
        in_channels=3,
        out_channels=3,
        latent_channels=need.dims.latent_channels,
        down_block_types=("HunyuanVideoDownBlock3D",) * 4,
        up_block_types=("HunyuanVideoUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        layers_per_block=1,
        act_fn="silu",
        norm_num_groups=4,
        scaling_factor=0.476986,
        spatial_compression_ratio=8,
        temporal_compression_ratio=4,
        mid_block_add_attention=True,
    )


@factory("AutoencoderKLHunyuanVideo15")
def autoencoder_kl_hunyuan_video15(need: Need):
    return need.model(
        need.cls,
        in_channels=3,
        out_channels=3,
        latent_channels=need.dims.latent_channels,
        block_out_channels=(16, 16),
        layers_per_block=1,
        spatial_compression_ratio=4,
        temporal_compression_ratio=2,
        downsample_match_channel=False,
        upsample_match_channel=False,
    )


@factory("AutoencoderKLMagvit")
def autoencoder_kl_magvit(need: Need):
    return need.model(
        need.cls,
        in_channels=3,
        out_channels=3,
        down_block_types=("SpatialDownBlock3D",) + ("SpatialTemporalDownBlock3D",) * 3,
        up_block_types=("SpatialUpBlock3D",) + ("SpatialTemporalUpBlock3D",) * 3,
        block_out_channels=(8, 8, 8, 8),
        latent_channels=need.dims.latent_channels,
        layers_per_block=1,
        norm_num_groups=2,
        spatial_group_norm=False,
    )


@factory("AutoencoderKLFlux2")
def autoencoder_kl_flux2(need: Need):
    d = need.dims
    levels = len(d.vae_block_out)
    return need.model(
        need.cls,
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=d.vae_block_out,
        layers_per_block=1,
        latent_channels=d.latent_channels,
        norm_num_groups=d.vae_norm_groups,
        sample_size=d.image_size,
        use_quant_conv=False,
        use_post_quant_conv=False,
    )


@factory("AutoencoderSAME")
def autoencoder_same(need: Need):
    """An audio autoencoder: stereo, 4x downsampling (patches of 2, stride 2), 8 latent channels."""
    from .denoisers import AUDIO_LATENT_CHANNELS, AUDIO_SAMPLING_RATE

    return need.model(
        lambda **kwargs: _weights_folded(need.cls(**kwargs)),
        audio_channels=2,
        patch_size=2,
        encoder_channels=8,
        encoder_c_mults=(2,),
        encoder_strides=(2,),
        encoder_transformer_depths=(1,),
        latent_dim=AUDIO_LATENT_CHANNELS,
        use_differential_attention=False,
        dim_heads=4,
        ff_mult=2,
        sampling_rate=AUDIO_SAMPLING_RATE,
    )


# Stable Audio's Oobleck VAE: stereo at `AUDIO_SAMPLING_RATE`, two stages halving the length (a latent frame per
# `OOBLECK_HOP_LENGTH` samples), `AUDIO_LATENT_CHANNELS` latent channels
OOBLECK_DOWNSAMPLING = (2, 2)
OOBLECK_HOP_LENGTH = 4


@factory("AutoencoderOobleck")
def autoencoder_oobleck(need: Need):
    from .denoisers import AUDIO_LATENT_CHANNELS, AUDIO_SAMPLING_RATE

    return need.model(
        lambda **kwargs: _weights_folded(need.cls(**kwargs)),
        encoder_hidden_size=8,
        downsampling_ratios=list(OOBLECK_DOWNSAMPLING),
        channel_multiples=[1, 2],
        decoder_channels=8,
        decoder_input_channels=AUDIO_LATENT_CHANNELS,
        audio_channels=2,
        sampling_rate=AUDIO_SAMPLING_RATE,
    )


@factory("AutoencoderKLHunyuanImageRefiner")
def autoencoder_kl_hunyuan_image_refiner(need: Need):
    return need.model(
        need.cls,
        in_channels=3,
        out_channels=3,
        latent_channels=need.dims.latent_channels,
        block_out_channels=(16, 16),
        layers_per_block=1,
        spatial_compression_ratio=4,
        temporal_compression_ratio=2,
        downsample_match_channel=False,
        upsample_match_channel=False,
    )


@factory("AutoencoderKLQwenImage21")
def autoencoder_kl_qwenimage21(need: Need):
    """QwenImage 2.1's VAE, which its pipeline assumes compresses 16x: four spatial downsamplings, narrow."""
    d = need.dims
    return need.model(
        need.cls,
        base_dim=4,
        decoder_base_dim=4,
        z_dim=d.latent_channels,
        dim_mult=[1, 1, 2, 2, 2],
        num_res_blocks=1,
        temperal_downsample=[False] * 4,
        scale_factor_temporal=1,
        scale_factor_spatial=16,
        **latent_stats(d.latent_channels),
    )


@factory("AutoencoderKLLTX2Video")
def autoencoder_kl_ltx2_video(need: Need):
    """LTX-2's video VAE with one level that halves space and time (`VIDEO_COMPRESSION`), no patching, and
    per-channel latent statistics that differ (its buffers default to mean 0, std 1, under which a statistic used
    the wrong way round would not show)."""
    import torch

    d = need.dims

    def build(**kwargs):
        vae = need.cls(**kwargs)
        stats = latent_stats(d.latent_channels)
        with torch.no_grad():
            vae.latents_mean.copy_(torch.tensor(stats["latents_mean"]))
            vae.latents_std.copy_(torch.tensor(stats["latents_std"]))
        return vae

    return need.model(
        build,
        in_channels=3,
        out_channels=3,
        latent_channels=d.latent_channels,
        block_out_channels=(8,),
        down_block_types=("LTX2VideoDownBlock3D",),
        decoder_block_out_channels=(8,),
        layers_per_block=(1,),
        decoder_layers_per_block=(1, 1),
        spatio_temporal_scaling=(True,),
        decoder_spatio_temporal_scaling=(True,),
        decoder_inject_noise=(False, False),
        downsample_type=("spatiotemporal",),
        upsample_type=("spatiotemporal",),
        upsample_residual=(False,),
        upsample_factor=(1,),
        patch_size=1,
        patch_size_t=1,
        encoder_causal=True,
        decoder_causal=False,
    )


@factory("AutoencoderKLLTXVideo")
def autoencoder_kl_ltx_video(need: Need):
    """LTX's video VAE with two levels that halve space and time (`VIDEO_COMPRESSION`: 4, 4), no patching, and
    per-channel latent statistics that differ (its buffers default to mean 0, std 1)."""
    d = need.dims
    return need.model(
        lambda **kwargs: _with_latent_stats(need.cls(**kwargs), d.latent_channels),
        in_channels=3,
        out_channels=3,
        latent_channels=d.latent_channels,
        block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, False, False),
        decoder_spatio_temporal_scaling=(True, True, False, False),
        decoder_inject_noise=(False,) * 5,
        upsample_residual=(False,) * 4,
        upsample_factor=(1,) * 4,
        timestep_conditioning=False,
        patch_size=1,
        patch_size_t=1,
        encoder_causal=True,
        decoder_causal=False,
    )


def _with_latent_stats(vae, channels: int):
    """`vae` with `latent_stats` in its `latents_mean` / `latents_std` buffers."""
    import torch

    stats = latent_stats(channels)
    with torch.no_grad():
        vae.latents_mean.copy_(torch.tensor(stats["latents_mean"]))
        vae.latents_std.copy_(torch.tensor(stats["latents_std"]))
    return vae


def _weights_folded(model):
    """`model` with its weight-normalized layers' weights computed once and stored (the same numbers they compute
    on every call): verify deep-copies components, which a weight-norm hook's derived tensor does not allow."""
    import torch
    from torch.nn.utils.weight_norm import WeightNorm

    for module in model.modules():
        if any(isinstance(hook, WeightNorm) for hook in module._forward_pre_hooks.values()):
            torch.nn.utils.remove_weight_norm(module)
    return model
