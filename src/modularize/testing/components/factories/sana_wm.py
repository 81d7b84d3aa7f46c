"""SANA-WM's stage-2 refiner: a Gemma 3 text encoder, LTX-2's text connectors and the chunk-causal LTX-2 refiner DiT.

The refiner stacks every hidden state of the text encoder (its embeddings and each layer's output) along a last
axis, and the connectors project that stack back to the encoder's width and run it through a small transformer; the
DiT projects the result into its own width (`caption_channels` -> `inner_dim`) and cross-attends to it:

    prompt --Gemma 3 (GEMMA3_LAYERS layers)--> (1, tokens, text_width, GEMMA3_LAYERS + 1)
           --connectors--> (1, tokens, text_width) --DiT caption projection--> (1, tokens, inner_dim)

The DiT denoises the stage-1 latent (`dims.latent_channels` channels, the LTX-2 VAE's) block by block, keeping a
per-layer K/V cache of the attention sink and the refined history; its RoPE reads the VAE's compression
(`VIDEO_COMPRESSION`) to place frames and pixels.
"""

from __future__ import annotations

from ..registry import Need, factory
from .controlnets import _awake
from .vaes import VIDEO_COMPRESSION

# Two layers: the refiner walks its K/V cache per layer (store the sink, append and trim the history), so a layer
# index mixed up in that walk shows; and the connectors read `layers + 1` stacked hidden states
GEMMA3_LAYERS = 2
REFINER_LAYERS = 2
GEMMA3_HEAD_DIM = 16
# the refiner's default prompt length (`text_max_sequence_length`) is 1024 tokens: Gemma 3's positions cover it
GEMMA3_MAX_POSITIONS = 1024


@factory("Gemma3ForConditionalGeneration")
def gemma3_for_conditional_generation(need: Need):
    """Gemma 3 with `GEMMA3_LAYERS` text layers `text_width` wide and a one-layer SigLIP vision tower (built, never
    run: the pipelines pass text alone). Its vocabulary is the paired tokenizer's."""
    from transformers import Gemma3Config, Gemma3TextConfig, SiglipVisionConfig

    tokenizer = need.tokenizer()
    width = need.text_width(need.name)
    text_config = Gemma3TextConfig(
        hidden_size=width,
        intermediate_size=2 * width,
        num_hidden_layers=GEMMA3_LAYERS,
        num_attention_heads=width // GEMMA3_HEAD_DIM,
        num_key_value_heads=width // GEMMA3_HEAD_DIM,
        head_dim=GEMMA3_HEAD_DIM,
        vocab_size=len(tokenizer),
        max_position_embeddings=GEMMA3_MAX_POSITIONS,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    vision_config = SiglipVisionConfig(
        hidden_size=width,
        intermediate_size=2 * width,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
    )
    config = Gemma3Config(
        text_config=text_config,
        vision_config=vision_config,
        mm_tokens_per_image=4,  # 16 patches pooled to 2 x 2
        attn_implementation="eager",
    )
    return need.model(need.cls, config=config)


@factory("LTX2TextConnectors")
def ltx2_text_connectors(need: Need):
    """LTX-2.0's connectors (one shared input projection) for the pipeline's text encoder: `caption_channels` is its
    width, `text_proj_in_factor` the number of hidden states it stacks. One layer per stream, as wide as the
    encoder (the connector runs on the projected states), no learnable registers (they would replace padding
    tokens with fixed values: the padded prompt then carries no sign of its mask)."""
    width = need.text_width("text_encoder")
    return need.model(
        need.cls,
        caption_channels=width,
        text_proj_in_factor=GEMMA3_LAYERS + 1,
        video_connector_num_attention_heads=width // GEMMA3_HEAD_DIM,
        video_connector_attention_head_dim=GEMMA3_HEAD_DIM,
        video_connector_num_layers=1,
        video_connector_num_learnable_registers=None,
        audio_connector_num_attention_heads=width // GEMMA3_HEAD_DIM,
        audio_connector_attention_head_dim=GEMMA3_HEAD_DIM,
        audio_connector_num_layers=1,
        audio_connector_num_learnable_registers=None,
        connector_rope_base_seq_len=32,
    )


@factory("SanaWMLTX2RefinerTransformer3DModel")
def sana_wm_ltx2_refiner_transformer(need: Need):
    """`REFINER_LAYERS` blocks of `dims.heads` heads of `dims.head_dim`, on `dims.latent_channels` latents; its
    cross-attention reads the connectors' output (`caption_channels`: the text encoder's width) projected to its
    own width. Its RoPE's scale factors are the VAE's compression (time, height, width). The audio branch the
    refiner never runs is built as small as it goes. Zero-initialized linear layers (none by default) would be
    re-drawn (`controlnets._awake`)."""
    d = need.dims
    vae = need.class_of("vae")
    spatial, temporal = VIDEO_COMPRESSION.get(vae.__name__ if vae else "", (d.vae_scale_factor, 1))
    return need.model(
        lambda **kwargs: _awake(need.cls(**kwargs)),
        in_channels=d.latent_channels,
        out_channels=d.latent_channels,
        num_attention_heads=d.heads,
        attention_head_dim=d.head_dim,
        cross_attention_dim=d.inner_dim,
        vae_scale_factors=(temporal, spatial, spatial),
        audio_in_channels=d.latent_channels,
        audio_out_channels=d.latent_channels,
        audio_num_attention_heads=2,
        audio_attention_head_dim=4,
        audio_cross_attention_dim=8,
        num_layers=REFINER_LAYERS,
        caption_channels=need.text_width("text_encoder"),
    )
