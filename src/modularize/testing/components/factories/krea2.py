"""Krea 2: its text encoder (a Qwen3-VL model without the language-model head), its prompt template's words, and its
single-stream transformer.

Krea 2 tokenizes every prompt into a fixed layout, `[system prefix | prompt | padding | assistant suffix]`, and drops
the first 34 tokens (the prefix, as the real Qwen tokenizer splits it) from the encoder's output; the suffix is 5
tokens. The tiny Qwen2 tokenizer knows the template's words as whole tokens (`KREA2_TEMPLATE_WORDS`), so the prefix
and suffix are exactly those lengths and the prompt itself is neither dropped nor truncated away.
"""

from __future__ import annotations

from ..registry import Need, factory
from .text import qwen3_vl

# Every word of Krea 2's prompt template (`Krea2Pipeline.prompt_template_encode_prefix` and `..._suffix`), with the
# leading space the real vocabulary has them with: with them the prefix tokenizes into the 34 tokens the pipeline
# drops (`<|im_start|>`, `system`, `\n`, `Describe`, ` the`, ... `<|im_end|>`, `\n`, `<|im_start|>`, `user`, `\n`)
# and the suffix into its 5 (`<|im_end|>`, `\n`, `<|im_start|>`, `assistant`, `\n`)
KREA2_TEMPLATE_WORDS = (
    "system",
    "Describe",
    " the",
    " image",
    " by",
    " detailing",
    " color",
    " shape",
    " size",
    " texture",
    " quantity",
    " text",
    " spatial",
    " relationships",
    " of",
    " objects",
    " and",
    " background",
    "user",
    "assistant",
)


@factory("Qwen3VLModel")
def qwen3_vl_model(need: Need):
    """The Qwen3-VL of `Qwen3VLForConditionalGeneration`'s factory without the head: Krea 2 reads its hidden states
    (every layer's, `output_hidden_states=True`) with multimodal rotary positions it computes itself."""
    return qwen3_vl(need)


@factory("Krea2Transformer2DModel")
def krea2_transformer(need: Need):
    """`heads` x `head_dim` wide (its rotary axes add up to the head size) with grouped key/value heads; it reads the
    text encoder's hidden states of `text_layers` layers stacked per token (the pipeline's
    `text_encoder_select_layers`, see the overrides), fused by one layer-wise and one token-wise block of the text
    encoder's width. Its input is the VAE's latents packed 2 x 2."""
    d = need.dims
    text_width = need.text_width("text_encoder")
    return need.model(
        need.cls,
        in_channels=d.packed_latent_channels,
        num_layers=d.layers,
        attention_head_dim=d.head_dim,
        num_attention_heads=d.heads,
        num_key_value_heads=1,
        intermediate_size=2 * d.inner_dim,
        timestep_embed_dim=16,
        text_hidden_dim=text_width,
        num_text_layers=d.text_layers,
        text_num_attention_heads=2,
        text_num_key_value_heads=1,
        text_intermediate_size=2 * text_width,
        num_layerwise_text_blocks=1,
        num_refiner_text_blocks=1,
        axes_dims_rope=d.rope_axes,
    )
