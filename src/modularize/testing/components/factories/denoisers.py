"""UNets and transformers. Their text sizes are the text encoders' widths, their input / output channels the
VAE's latent channels (x4 where the pipeline packs 2x2 latent patches), their rotary axes add up to the head size."""

from __future__ import annotations

from ..registry import Need, factory
from .vaes import VIDEO_COMPRESSION


def _video(need: Need) -> tuple[int, int, int]:
    """(latent height = width, latent frames, temporal compression) of the pipeline's video VAE."""
    vae = need.class_of("vae")
    spatial, temporal = VIDEO_COMPRESSION.get(vae.__name__ if vae else "", (need.dims.vae_scale_factor, 1))
    return need.dims.video_size // spatial, 3, temporal


# -- UNets ---------------------------------------------------------------------------------------------------------
@factory("UNet2DConditionModel")
def unet_2d_condition(need: Need):
    d = need.dims
    text_widths = [need.text_width(name) for name in need.text_encoders]
    extra = {}
    if hasattr(need.pipeline, "_get_add_time_ids"):  # SDXL-style: time ids and the pooled text embedding added
        pooled = d.clip_projection if need.has_class("CLIPTextModelWithProjection") else text_widths[-1]
        extra = {
            "addition_embed_type": "text_time",
            "addition_time_embed_dim": d.addition_time_embed_dim,
            "projection_class_embeddings_input_dim": d.projection_class_embeddings_input_dim(pooled),
        }
    cross_attention_dim = sum(text_widths) or d.text_hidden
    if need.has_class(*CLASS_LABEL_TEXT_ENCODERS):
        # the text embedding is a class label (joined to the time embedding), and with no text to attend to, each
        # attention block's second attention attends to the block's own features: as wide as the block
        cross_attention_dim = d.block_out
        extra = {
            "class_embed_type": "simple_projection",
            "projection_class_embeddings_input_dim": d.clip_projection,
            "class_embeddings_concat": True,
        }
    if need.has_class("StableUnCLIPImageNormalizer"):  # unCLIP: a noised image embedding is the class label
        extra = {
            "class_embed_type": "projection",
            # the embedding and the sinusoidal embedding of its noise level, as wide as it
            "projection_class_embeddings_input_dim": 2 * d.clip_projection,
        }
    return need.model(
        need.cls,
        sample_size=d.image_size // d.vae_scale_factor,
        in_channels=d.latent_channels,
        out_channels=d.latent_channels,
        block_out_channels=d.block_out,
        layers_per_block=1,
        # Stable Diffusion's order: cross-attention at the high resolution, a plain block last (a T2I adapter's
        # features then match the resolutions the UNet adds them at)
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross_attention_dim,
        norm_num_groups=32,
        **extra,
    )


# A UNet2DConditionModel block type -> its flat counterpart (Versatile Diffusion's text UNet): the same attention
# blocks around 1 x 1 "images" of linear layers
FLAT_BLOCKS = {
    "CrossAttnDownBlock2D": "CrossAttnDownBlockFlat",
    "DownBlock2D": "DownBlockFlat",
    "CrossAttnUpBlock2D": "CrossAttnUpBlockFlat",
    "UpBlock2D": "UpBlockFlat",
    "UNetMidBlock2DCrossAttn": "UNetMidBlockFlatCrossAttn",
}


@factory("UNetFlatConditionModel")
def unet_flat_condition(need: Need):
    """Versatile Diffusion's text UNet, the image UNet's layout in flat blocks. Its pipeline swaps every
    `Transformer2DModel` of the image UNet for the text UNet's at the same place (and keeps only the image UNet):
    the text UNet mirrors the image UNet's widths, heads and cross-attention, so its attention blocks fit there.

        image_unet.down_blocks[0].attentions[0]   # Transformer2DModel(2 heads of 16, cross-attention 32), the text
        text_unet.down_blocks[0].attentions[0]    # UNet's the same shapes: after the swap the image UNet runs it
    """
    from .controlnets import _denoiser, _mirrored  # (controlnets imports this module)

    unet = _denoiser(need, "image_unet")
    config = _mirrored(unet, need.cls)
    for key in ("down_block_types", "up_block_types"):
        config[key] = tuple(FLAT_BLOCKS[block] for block in config[key])
    config["mid_block_type"] = FLAT_BLOCKS[config["mid_block_type"]]
    return need.model(need.cls, **config)


# Text encoders whose projected text embedding conditions the UNet as its class label, with no cross-attention
# context (AudioLDM and MusicLDM pass `class_labels=prompt_embeds, encoder_hidden_states=None`)
CLASS_LABEL_TEXT_ENCODERS = ("ClapTextModelWithProjection", "ClapModel")


@factory("Kandinsky3UNet")
def kandinsky3_unet(need: Need):
    """Kandinsky 3's UNet: the text encoder's states projected to its cross-attention width, attention-pooled into
    the time embedding; attention (8 heads of `attention_head_dim`) at every level but the first.

    Its conditional group norms start with a zero-initialized projection of the time embedding, so fresh from
    the constructor the UNet ignores the timestep and the pooled text (a conversion passing the wrong timestep
    or attention mask would still match the standard pipeline): they are re-drawn, seeded, as ControlNets' zero
    layers are (`controlnets._awake`)."""
    from .controlnets import _awake  # (controlnets imports this module)

    d = need.dims
    return need.model(
        lambda **kwargs: _awake(need.cls(**kwargs)),
        in_channels=d.latent_channels,
        time_embedding_dim=16,
        groups=4,  # divides every level's width and the half-width of the first (`block_out[0] // 2`)
        attention_head_dim=4,
        layers_per_block=2,  # (an up block has `layers_per_block - 2` middle layers)
        block_out_channels=d.block_out,
        cross_attention_dim=16,
        encoder_hid_dim=need.text_width(),
    )


@factory("UNet2DModel")
def unet_2d(need: Need):
    """An unconditional UNet: on pixels (3 channels), or on the latents of the pipeline's VAE / VQ model."""
    d = need.dims
    latent = need.class_of("vae") or need.class_of("vqvae")
    channels = d.latent_channels if latent is not None else 3
    return need.model(
        need.cls,
        sample_size=8,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=(8, 16),
        layers_per_block=1,
        norm_num_groups=4,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
    )


# -- masked-token denoisers -------------------------------------------------------------------------------------
# Denoisers that predict, for every masked image token, logits over the VQ codebook (aMUSEd): their pipeline's VQ
# model decodes token ids, and their vocabulary is the codebook plus the mask token
TOKEN_DENOISERS = ("UVit2DModel",)
# aMUSEd's micro-conditioning: width, height, crop top, crop left and aesthetic score, each embedded sinusoidally
MICRO_CONDITIONS = 5
MICRO_COND_ENCODE_DIM = 4


@factory("UVit2DModel")
def uvit_2d(need: Need):
    """aMUSEd's UVit: cross-attention on the text encoder's hidden states, its conditioning the pooled text
    embedding joined with the micro-conditions, one transformer layer between a downsampling and an upsampling
    block (16 x 16 image tokens -> 8 x 8)."""
    d = need.dims
    pooled = d.clip_projection if need.has_class("CLIPTextModelWithProjection") else need.text_width()
    return need.model(
        need.cls,
        hidden_size=d.inner_dim,
        cond_embed_dim=pooled,
        micro_cond_encode_dim=MICRO_COND_ENCODE_DIM,
        micro_cond_embed_dim=MICRO_CONDITIONS * MICRO_COND_ENCODE_DIM,
        encoder_hidden_size=need.text_width(),
        vocab_size=d.token_vocab_size,
        codebook_size=d.codebook_size,
        in_channels=8,  # the token embedding's width
        block_out_channels=16,
        num_res_blocks=1,
        downsample=True,
        upsample=True,
        block_num_heads=2,
        num_hidden_layers=d.layers,
        num_attention_heads=d.heads,
        intermediate_size=2 * d.inner_dim,
        sample_size=d.image_size // d.vae_scale_factor,
    )


# -- image transformers -----------------------------------------------------------------------------------------
@factory("SD3Transformer2DModel")
def sd3_transformer(need: Need):
    d = need.dims
    return need.model(
        need.cls,
        sample_size=d.image_size // d.vae_scale_factor,
        patch_size=1,
        in_channels=d.latent_channels,
        out_channels=d.latent_channels,
        num_layers=d.layers,
        attention_head_dim=8,
        num_attention_heads=4,
        joint_attention_dim=need.text_width("text_encoder_3"),
        caption_projection_dim=32,
        pooled_projection_dim=need.text_width("text_encoder") + need.text_width("text_encoder_2"),
    )


@factory("FluxTransformer2DModel")
def flux_transformer(need: Need):
    d = need.dims
    return need.model(
        need.cls,
        patch_size=1,
        in_channels=d.packed_latent_channels,
        num_layers=d.layers,
        num_single_layers=1,
        attention_head_dim=d.head_dim,
        num_attention_heads=d.heads,
        joint_attention_dim=need.text_width("text_encoder_2"),
        pooled_projection_dim=need.text_width("text_encoder"),
        guidance_embeds=True,
        axes_dims_rope=d.rope_axes,
    )


@factory("ChromaTransformer2DModel")
def chroma_transformer(need: Need):
    d = need.dims
    return need.model(
        need.cls,
        patch_size=1,
        in_channels=d.packed_latent_channels,
        num_layers=d.layers,
        num_single_layers=1,
        attention_head_dim=d.head_dim,
        num_attention_heads=d.heads,
        joint_attention_dim=need.text_width(),
        axes_dims_rope=d.rope_axes,
        approximator_hidden_dim=32,
        approximator_layers=1,
        approximator_num_channels=16,
    )


@factory("QwenImageTransformer2DModel")
def qwenimage_transformer(need: Need):
    d = need.dims
    return need.model(
        need.cls,
        patch_size=2,
        in_channels=d.packed_latent_channels,
        out_channels=d.latent_channels,
        num_layers=d.layers,
        attention_head_dim=d.head_dim,
        num_attention_heads=d.heads,
        joint_attention_dim=need.text_width(),
        axes_dims_rope=d.rope_axes,
    )


@factory("PixArtTransformer2DModel")
def pixart_transformer(need: Need):
    d = need.dims
    return need.model(
        need.cls,
        sample_size=d.image_size // d.vae_scale_factor,
        num_layers=2,
        patch_size=2,
        attention_head_dim=8,
        num_attention_heads=3,
        caption_channels=need.text_width(),
        in_channels=d.latent_channels,
        cross_attention_dim=24,
        out_channels=2 * d.latent_channels,  # learned sigma
        attention_bias=True,
        activation_fn="gelu-approximate",
        num_embeds_ada_norm=1000,
        norm_type="ada_norm_single",
        norm_elementwise_affine=False,
        norm_eps=1e-6,
    )


@factory("SanaTransformer2DModel")
def sana_transformer(need: Need):
    d = need.dims
    return need.model(
        need.cls,
        patch_size=1,
        in_channels=d.latent_channels,
        out_channels=d.latent_channels,
        num_layers=d.layers,
        num_attention_heads=2,
        attention_head_dim=4,
        num_cross_attention_heads=2,
        cross_attention_head_dim=4,
        cross_attention_dim=8,
        caption_channels=need.text_width(),
        sample_size=d.image_size // d.vae_scale_factor,
    )


@factory("AuraFlowTransformer2DModel")
def aura_flow_transformer(need: Need):
    d = need.dims
    return need.model(
        need.cls,
        sample_size=d.image_size // d.vae_scale_factor,
        patch_size=2,
        in_channels=d.latent_channels,
        num_mmdit_layers=1,
        num_single_dit_layers=1,
        attention_head_dim=8,
        num_attention_heads=4,
        caption_projection_dim=32,
        joint_attention_dim=need.text_width(),
        out_channels=d.latent_channels,
        pos_embed_max_size=256,
    )


@factory("ZImageTransformer2DModel")
def z_image_transformer(need: Need):
    d = need.dims
    return need.model(
        need.cls,
        all_patch_size=(2,),
        all_f_patch_size=(1,),
        in_channels=d.latent_channels,
        dim=d.inner_dim,
        n_layers=d.layers,
        n_refiner_layers=1,
        n_heads=d.heads,
        n_kv_heads=d.heads,
        cap_feat_dim=need.text_width(),
        # image-conditioned (Omni): SigLIP features of the condition images, as wide as the vision model
        siglip_feat_dim=d.text_hidden if need.has_class("Siglip2VisionModel") else None,
        axes_dims=list(d.rope_axes),
        axes_lens=[256, 32, 32],
    )


@factory("HunyuanImageTransformer2DModel")
def hunyuan_image_transformer(need: Need):
    d = need.dims
    return need.model(
        need.cls,
        in_channels=d.latent_channels,
        out_channels=d.latent_channels,
        num_attention_heads=4,
        attention_head_dim=8,
        num_layers=d.layers,
        num_single_layers=1,
        num_refiner_layers=1,
        patch_size=(1, 1),
        text_embed_dim=need.text_width(),
        text_embed_2_dim=need.text_width("text_encoder_2"),
        rope_axes_dim=(4, 4),
    )


# -- video transformers -----------------------------------------------------------------------------------------
@factory("WanTransformer3DModel")
def wan_transformer(need: Need):
    d = need.dims
    return need.model(
        need.cls,
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=d.latent_channels,
        out_channels=d.latent_channels,
        text_dim=need.text_width(),
        freq_dim=32,
        ffn_dim=32,
        num_layers=d.layers,
        rope_max_seq_len=32,
    )


@factory("WanVACETransformer3DModel")
def wan_vace_transformer(need: Need):
    """Wan with VACE control: its control stream is the conditioning video's latents (the inactive and the reactive
    part, `latent_channels` each) joined with the mask folded to the latents' grid (one channel per pixel of a
    spatial-compression patch); a control block at every layer (the first must have one)."""
    d = need.dims
    vae = need.class_of("vae")
    spatial, _ = VIDEO_COMPRESSION.get(vae.__name__ if vae else "", (d.vae_scale_factor, 1))
    return _wan_like(
        need,
        vace_layers=list(range(d.layers)),
        vace_in_channels=2 * d.latent_channels + spatial * spatial,
    )


@factory("CogVideoXTransformer3DModel")
def cogvideox_transformer(need: Need):
    d = need.dims
    latent_size, latent_frames, temporal = _video(need)
    return need.model(
        need.cls,
        num_attention_heads=4,
        attention_head_dim=8,
        in_channels=d.latent_channels,
        out_channels=d.latent_channels,
        time_embed_dim=2,
        text_embed_dim=need.text_width(),
        num_layers=d.layers,
        sample_width=latent_size,
        sample_height=latent_size,
        sample_frames=(latent_frames - 1) * temporal + 1,
        patch_size=2,
        temporal_compression_ratio=temporal,
        max_text_seq_length=d.max_sequence_length,
    )


@factory("UNet1DModel")
def unet_1d(need: Need):
    """An unconditional audio UNet (Dance Diffusion's layout, narrow)."""
    return need.model(
        need.cls,
        block_out_channels=(32, 32, 64),  # its attention blocks have one head per 32 channels
        extra_in_channels=64,  # the Fourier time features (2 x the first block's width) joined to the input
        sample_size=512,
        sample_rate=16_000,
        in_channels=2,
        out_channels=2,
        flip_sin_to_cos=True,
        use_timestep_embedding=False,
        time_embedding_type="fourier",
        mid_block_type="UNetMidBlock1D",
        down_block_types=("DownBlock1DNoSkip", "DownBlock1D", "AttnDownBlock1D"),
        up_block_types=("AttnUpBlock1D", "UpBlock1D", "UpBlock1DNoSkip"),
    )


def _unet_3d_config(need: Need) -> dict:
    d = need.dims
    return {
        "sample_size": d.image_size // d.vae_scale_factor,
        "in_channels": d.latent_channels,
        "out_channels": d.latent_channels,
        "block_out_channels": d.block_out,
        "layers_per_block": 1,
        "down_block_types": ("CrossAttnDownBlock3D", "DownBlock3D"),
        "up_block_types": ("UpBlock3D", "CrossAttnUpBlock3D"),
        "cross_attention_dim": need.text_width(),
        "attention_head_dim": 4,
        "norm_num_groups": 32,
    }


@factory("UNet3DConditionModel", "I2VGenXLUNet")
def unet_3d_condition(need: Need):
    return need.model(need.cls, **_unet_3d_config(need))


@factory("ControlNetXSAdapter")
def controlnet_xs_adapter(need: Need):
    """A ControlNet-XS adapter sized to the pipeline's UNet (built here the same way the `unet` argument is)."""
    from ..registry import factory_for
    from .controlnets import _awake

    unet_cls = need.class_of("unet")
    unet = factory_for(unet_cls)(_sibling(need, "unet", unet_cls))
    return need.model(
        # (its zero-initialized connections to the UNet re-drawn: see `controlnets`)
        lambda **kwargs: _awake(need.cls.from_unet(unet, **kwargs)),
        size_ratio=0.5,
        learn_time_embedding=True,
        conditioning_embedding_out_channels=(2, 2),
    )


def _sibling(need: Need, name: str, cls: type) -> Need:
    """What the factory of another component of the same pipeline is told (same seed offset as when it is built:
    its position among the constructor's arguments)."""
    from dataclasses import replace

    offset = list(need.classes).index(name) - list(need.classes).index(need.name)
    return replace(need, name=name, cls=cls, seed=need.seed + offset, config={})


@factory("T2IAdapter")
def t2i_adapter(need: Need):
    """Features at the UNet's down-block widths and resolutions: the first at the latent resolution."""
    d = need.dims
    return need.model(
        need.cls,
        in_channels=3,
        channels=list(d.block_out),
        num_res_blocks=1,
        downscale_factor=d.vae_scale_factor,
        adapter_type="full_adapter",
    )


@factory("LatteTransformer3DModel")
def latte_transformer(need: Need):
    d = need.dims
    return need.model(
        need.cls,
        sample_size=d.image_size // d.vae_scale_factor,
        num_layers=d.layers,
        patch_size=2,
        attention_head_dim=8,
        num_attention_heads=3,
        caption_channels=need.text_width(),
        in_channels=d.latent_channels,
        cross_attention_dim=24,
        out_channels=2 * d.latent_channels,  # learned sigma
        attention_bias=True,
        activation_fn="gelu-approximate",
        num_embeds_ada_norm=1000,
        norm_type="ada_norm_single",
        norm_elementwise_affine=False,
        norm_eps=1e-6,
    )


@factory("MochiTransformer3DModel")
def mochi_transformer(need: Need):
    d = need.dims
    return need.model(
        need.cls,
        patch_size=2,
        num_attention_heads=2,
        attention_head_dim=8,
        num_layers=d.layers,
        pooled_projection_dim=16,
        in_channels=d.latent_channels,
        qk_norm="rms_norm",
        text_embed_dim=need.text_width(),
        time_embed_dim=4,
        activation_fn="swiglu",
        max_sequence_length=d.max_sequence_length,
    )


@factory("HunyuanVideoTransformer3DModel")
def hunyuan_video_transformer(need: Need):
    d = need.dims
    return need.model(
        need.cls,
        in_channels=d.latent_channels,
        out_channels=d.latent_channels,
        num_attention_heads=2,
        attention_head_dim=10,
        num_layers=d.layers,
        num_single_layers=1,
        num_refiner_layers=1,
        patch_size=1,
        patch_size_t=1,
        guidance_embeds=True,
        text_embed_dim=need.text_width(),
        pooled_projection_dim=need.text_width("text_encoder_2"),
        rope_axes_dim=(2, 4, 4),
    )


def _wan_like(need: Need, **extra):
    """The Wan layout (SkyReels V2, ChronoEdit, Wan VACE): 2 heads of 12, 2x2 patches, text at the encoder's width."""
    d = need.dims
    return need.model(
        need.cls,
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=d.latent_channels,
        out_channels=d.latent_channels,
        text_dim=need.text_width(),
        freq_dim=32,
        ffn_dim=32,
        num_layers=d.layers,
        rope_max_seq_len=32,
        **extra,
    )


@factory("SkyReelsV2Transformer3DModel", "ChronoEditTransformer3DModel")
def wan_like_transformer(need: Need):
    return _wan_like(need)


@factory("CosmosTransformer3DModel")
def cosmos_transformer(need: Need):
    d = need.dims
    return need.model(
        need.cls,
        in_channels=d.latent_channels,
        out_channels=d.latent_channels,
        num_attention_heads=2,
        attention_head_dim=16,
        num_layers=d.layers,
        mlp_ratio=2,
        text_embed_dim=need.text_width(),
        adaln_lora_dim=4,
        max_size=(4, 32, 32),
        patch_size=(1, 2, 2),
        rope_scale=(2.0, 1.0, 1.0),
        concat_padding_mask=False,  # (resizing the padding mask needs torchvision)
        extra_pos_embed_type="learnable",
    )


@factory("SanaVideoTransformer3DModel")
def sana_video_transformer(need: Need):
    d = need.dims
    return need.model(
        need.cls,
        in_channels=d.latent_channels,
        out_channels=d.latent_channels,
        num_attention_heads=2,
        attention_head_dim=12,
        num_layers=d.layers,
        num_cross_attention_heads=2,
        cross_attention_head_dim=12,
        cross_attention_dim=24,
        caption_channels=need.text_width(),
        mlp_ratio=2.5,
        sample_size=8,
        patch_size=(1, 2, 2),
        norm_elementwise_affine=False,
        norm_eps=1e-6,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
    )


@factory("OvisImageTransformer2DModel")
def ovis_image_transformer(need: Need):
    d = need.dims
    return need.model(
        need.cls,
        patch_size=1,
        in_channels=d.packed_latent_channels,
        out_channels=d.packed_latent_channels,
        num_layers=d.layers,
        num_single_layers=1,
        attention_head_dim=d.head_dim,
        num_attention_heads=d.heads,
        joint_attention_dim=need.text_width(),
        axes_dims_rope=d.rope_axes,
    )


@factory("HunyuanVideo15Transformer3DModel")
def hunyuan_video15_transformer(need: Need):
    d = need.dims
    return need.model(
        need.cls,
        in_channels=2 * d.latent_channels + 1,  # latents, image-condition latents and their mask
        out_channels=d.latent_channels,
        num_attention_heads=2,
        attention_head_dim=8,
        num_layers=d.layers,
        num_refiner_layers=1,
        mlp_ratio=2.0,
        patch_size=1,
        patch_size_t=1,
        text_embed_dim=need.text_width(),
        text_embed_2_dim=need.text_width("text_encoder_2"),
        image_embed_dim=need.dims.text_hidden,
        rope_axes_dim=(2, 2, 4),
        target_size=d.video_size,
        task_type="t2v",
    )


@factory("EasyAnimateTransformer3DModel")
def easyanimate_transformer(need: Need):
    d = need.dims
    return need.model(
        need.cls,
        num_attention_heads=2,
        attention_head_dim=16,
        in_channels=d.latent_channels,
        out_channels=d.latent_channels,
        time_embed_dim=2,
        text_embed_dim=need.text_width(),
        num_layers=d.layers,
        sample_width=d.video_size,
        sample_height=d.video_size,
        patch_size=2,
    )


@factory("Flux2Transformer2DModel")
def flux2_transformer(need: Need):
    d = need.dims
    return need.model(
        need.cls,
        patch_size=1,
        in_channels=d.packed_latent_channels,
        num_layers=d.layers,
        num_single_layers=1,
        attention_head_dim=d.head_dim,
        num_attention_heads=d.heads,
        joint_attention_dim=need.text_width(),
        timestep_guidance_channels=256,
        axes_dims_rope=(4, 4, 4, 4),
        guidance_embeds=False,
    )


@factory("MotifVideoTransformer3DModel")
def motif_video_transformer(need: Need):
    d = need.dims
    return need.model(
        need.cls,
        in_channels=2 * d.latent_channels + 1,  # latents, condition latents and their mask
        out_channels=d.latent_channels,
        num_attention_heads=2,
        attention_head_dim=12,
        num_layers=d.layers,
        num_single_layers=1,
        mlp_ratio=4.0,
        patch_size=1,
        patch_size_t=1,
        qk_norm="rms_norm",
        text_embed_dim=need.text_width(),
        # image-to-video: the first frame's features from the text encoder's vision tower (as wide as the text)
        image_embed_dim=d.text_hidden if need.class_of("feature_extractor") is not None else None,
        rope_axes_dim=(4, 4, 4),
    )


@factory("ConsisIDTransformer3DModel")
def consisid_transformer(need: Need):
    """CogVideoX's layout plus the face-identity branch (`id_cond` of 2, `id_vit_hidden` of 2 x 2 per scale)."""
    d = need.dims
    latent_size, latent_frames, temporal = _video(need)
    return need.model(
        need.cls,
        num_attention_heads=2,
        attention_head_dim=16,
        in_channels=2 * d.latent_channels,  # latents + image latents
        out_channels=d.latent_channels,
        time_embed_dim=2,
        text_embed_dim=need.text_width(),
        num_layers=d.layers,
        sample_width=latent_size,
        sample_height=latent_size,
        sample_frames=(latent_frames - 1) * temporal + 1,
        patch_size=2,
        temporal_compression_ratio=temporal,
        max_text_seq_length=d.max_sequence_length,
        use_rotary_positional_embeddings=True,
        use_learned_positional_embeddings=True,
        cross_attn_interval=1,
        is_kps=False,
        is_train_face=True,
        cross_attn_dim_head=1,
        cross_attn_num_heads=1,
        LFE_id_dim=2,
        LFE_vit_dim=2,
        LFE_depth=5,
        LFE_dim_head=8,
        LFE_num_heads=2,
        LFE_num_id_token=1,
        LFE_num_querie=1,
        LFE_output_dim=21,
        LFE_ff_mult=1,
        LFE_num_scale=1,
    )


# -- audio ----------------------------------------------------------------------------------------------------------
AUDIO_LATENT_CHANNELS = 8
AUDIO_SAMPLING_RATE = 16  # samples per second: a 1-second clip is 16 samples, 4 latent frames


@factory("StableAudio3DiTModel")
def stable_audio3_dit(need: Need):
    width = need.text_width()
    return need.model(
        need.cls,
        io_channels=AUDIO_LATENT_CHANNELS,
        patch_size=1,
        embed_dim=32,
        depth=2,
        num_heads=4,
        cond_token_dim=width,
        global_cond_dim=width,
        local_add_cond_dim=AUDIO_LATENT_CHANNELS + 1,  # reference latents and their mask
        timestep_features_dim=16,
        ff_mult=2,
        num_memory_tokens=3,
        use_differential_attention=False,
    )


# Stable Audio: its DiT denoises a window of `STABLE_AUDIO_WINDOW` latent frames (8 frames of the Oobleck VAE:
# 32 samples, 2 seconds), conditioned on the prompt and the clip's start and end in seconds, each projected to
# `STABLE_AUDIO_CONDITIONING` channels (narrower than the text encoder, so the text projection is a real layer)
STABLE_AUDIO_WINDOW = 8
STABLE_AUDIO_CONDITIONING = 16


def stable_audio_seconds() -> int:
    """The length of the DiT's window in seconds: the longest clip the pipeline generates."""
    from .vaes import OOBLECK_HOP_LENGTH

    return STABLE_AUDIO_WINDOW * OOBLECK_HOP_LENGTH // AUDIO_SAMPLING_RATE


@factory("StableAudioDiTModel")
def stable_audio_dit(need: Need):
    """Two heads of 8 sharing one key / value head; the prompt's and the seconds' projections are its cross-attention
    input, the start and end seconds side by side its global input."""
    return need.model(
        need.cls,
        sample_size=STABLE_AUDIO_WINDOW,
        in_channels=AUDIO_LATENT_CHANNELS,
        out_channels=AUDIO_LATENT_CHANNELS,
        num_layers=2,
        attention_head_dim=8,  # (the pipeline rotates half of it: 4 rotary channels)
        num_attention_heads=2,
        num_key_value_attention_heads=1,
        cross_attention_dim=16,
        time_proj_dim=8,
        global_states_input_dim=2 * STABLE_AUDIO_CONDITIONING,
        cross_attention_input_dim=STABLE_AUDIO_CONDITIONING,
    )


@factory("StableAudioProjectionModel")
def stable_audio_projection(need: Need):
    """Projects the text encoder's hidden states, and seconds from 0 to the DiT's window, to the conditioning width."""
    return need.model(
        need.cls,
        text_encoder_dim=need.text_width(),
        conditioning_dim=STABLE_AUDIO_CONDITIONING,
        min_value=0,
        max_value=stable_audio_seconds(),
    )


@factory("StableAudio3DurationEmbedder")
def stable_audio3_duration_embedder(need: Need):
    return need.model(need.cls, output_dim=need.text_width(), fourier_dim=16)


@factory("NucleusMoEImageTransformer2DModel")
def nucleus_moe_image_transformer(need: Need):
    d = need.dims
    return need.model(
        need.cls,
        patch_size=2,
        in_channels=d.packed_latent_channels,
        out_channels=d.latent_channels,
        num_layers=d.layers,
        attention_head_dim=d.head_dim,
        num_attention_heads=d.heads,
        joint_attention_dim=need.text_width(),
        axes_dims_rope=d.rope_axes,
        moe_enabled=False,
        capacity_factors=[8.0] * d.layers,
    )


@factory("QwenImage21Transformer2DModel")
def qwenimage21_transformer(need: Need):
    d = need.dims
    return need.model(
        need.cls,
        patch_size=1,
        in_channels=d.latent_channels,
        out_channels=d.latent_channels,
        num_layers=d.layers,
        attention_head_dim=d.head_dim,
        num_attention_heads=d.heads,
        context_in_dim=need.text_width(),
        mlp_ratio=2,
        axes_dims_rope=d.rope_axes,
    )


@factory("DreamLiteUNetModel")
def dreamlite_unet(need: Need):
    d = need.dims
    return need.model(
        need.cls,
        sample_size=8,
        in_channels=d.latent_channels,
        out_channels=d.latent_channels,
        down_block_types=("DreamLiteCrossAttnNoSelfAttnDownBlock2D", "DreamLiteCrossAttnDownBlock2D"),
        up_block_types=("DreamLiteCrossAttnUpBlock2D", "DreamLiteUpBlock2D"),
        block_out_channels=d.block_out,
        cross_attention_dim=need.text_width(),
        attention_head_dim=8,
        layers_per_block=1,
        norm_num_groups=8,
        transformer_layers_per_block=1,
    )


@factory("SanaWMTransformer3DModel")
def sana_wm_transformer(need: Need):
    """SANA-WM: two blocks, so both its linear (gated delta) and its softmax camera attention run; Plücker rays
    come packed per latent frame, 6 numbers per pixel frame the VAE folds into it."""
    d = need.dims
    _, _, temporal = _video(need)
    layers = 2
    return need.model(
        need.cls,
        in_channels=d.latent_channels,
        num_layers=layers,
        hidden_size=d.inner_dim,
        num_attention_heads=d.heads,
        softmax_every_n=2,
        linear_head_dim=d.head_dim,
        caption_channels=need.text_width(),
        mlp_ratio=2.0,
        chunk_plucker_channels=6 * temporal,
        chunk_plucker_post_attn_blocks=layers,
    )


# -- more image and video transformers --------------------------------------------------------------------------
# the lengths HunyuanDiT's pipeline pads its prompts to without a `max_sequence_length`: BERT's and T5's
HUNYUAN_DIT_TEXT_LENGTHS = (77, 256)


@factory("HunyuanDiT2DModel")
def hunyuan_dit_transformer(need: Need):
    """BERT's states for cross-attention, T5's projected to them and pooled into the time embedding; the padding
    embeddings cover both prompt lengths. Its pipeline computes the rotary grid as `height // 8 // patch_size`,
    so the VAE it is used with scales by 8 (the `HunyuanDiTPipeline` override)."""
    d = need.dims
    bert_length, t5_length = HUNYUAN_DIT_TEXT_LENGTHS
    return need.model(
        need.cls,
        sample_size=d.image_size // d.vae_scale_factor,
        num_layers=2,
        patch_size=2,
        attention_head_dim=8,
        num_attention_heads=3,
        in_channels=d.latent_channels,
        cross_attention_dim=need.text_width("text_encoder"),
        cross_attention_dim_t5=need.text_width("text_encoder_2"),
        pooled_projection_dim=16,
        hidden_size=24,
        activation_fn="gelu-approximate",
        text_len=bert_length,
        text_len_t5=t5_length,
    )


@factory("LTXVideoTransformer3DModel")
def ltx_video_transformer(need: Need):
    """The caption is projected to the transformer's width before cross-attention: `cross_attention_dim` is that
    width, `caption_channels` the text encoder's."""
    d = need.dims
    heads, head_dim = 4, 8
    return need.model(
        need.cls,
        in_channels=d.latent_channels,
        out_channels=d.latent_channels,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=heads,
        attention_head_dim=head_dim,
        cross_attention_dim=heads * head_dim,
        num_layers=d.layers,
        caption_channels=need.text_width(),
    )


@factory("CogView3PlusTransformer2DModel")
def cogview3plus_transformer(need: Need):
    """Its size conditioning embeds original size, crop and target size (2 numbers each) at `condition_dim`."""
    d = need.dims
    latent_size = d.image_size // d.vae_scale_factor
    return need.model(
        need.cls,
        patch_size=2,
        in_channels=d.latent_channels,
        num_layers=d.layers,
        attention_head_dim=4,
        num_attention_heads=2,
        out_channels=d.latent_channels,
        text_embed_dim=need.text_width(),
        time_embed_dim=8,
        condition_dim=2,
        pos_embed_max_size=latent_size,
        sample_size=latent_size,
    )


@factory("CogView4Transformer2DModel")
def cogview4_transformer(need: Need):
    """Latents in and out (a control pipeline's override doubles the input: latents + control latents), text the
    width of GLM's hidden states; its size conditioning embeds original size, crop and target size at
    `condition_dim`. Its default size (`sample_size` latents) is the tiny image size."""
    d = need.dims
    return need.model(
        need.cls,
        patch_size=2,
        in_channels=d.latent_channels,
        out_channels=d.latent_channels,
        num_layers=d.layers,
        attention_head_dim=d.head_dim,
        num_attention_heads=d.heads,
        text_embed_dim=need.text_width(),
        time_embed_dim=8,
        condition_dim=4,
        sample_size=d.image_size // d.vae_scale_factor,
    )
