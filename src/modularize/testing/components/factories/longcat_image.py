"""LongCat-Image: the transformer of its text-to-image and image-editing pipelines.

The Qwen2.5-VL text encoder, its tokenizer and processor, the VAE and the scheduler come from the shared factories;
what couples with them here:

    Qwen2.5-VL last hidden states (batch, tokens, text_width)  --> `joint_attention_dim` (the context embedder)
    VAE latents packed 2 x 2 (batch, patches, 4 x channels)     --> `in_channels` (and the output: as many)

Both pipelines make their latents with 16 channels whatever the VAE (`num_channels_latents = 16`): the VAE has 16
latent channels (`dims.latent_channels`, see the overrides) and the transformer reads `4 x 16`. The rotary
positions are three axes (modality, row, column: text tokens on the diagonal, image patches after the padded text),
which add up to the head size (`dims.rope_axes`, `dims.head_dim`). `pooled_projection_dim` is stored but never read
(the pipelines pass no pooled embedding); it is the text width too. The editing pipeline joins the image's latents
to the noisy ones along the sequence, not the channels: the same transformer serves both.

Nothing in the transformer starts out as zeros (its modulations are default-initialized linear layers), so its
output depends on the prompt and the timestep as built.
"""

from __future__ import annotations

from ..registry import Need, factory


@factory("LongCatImageTransformer2DModel")
def longcat_image_transformer(need: Need):
    """One double-stream and one single-stream block, `dims.heads` heads of `dims.head_dim`, 1 x 1 patches of the
    packed latents."""
    d = need.dims
    width = need.text_width("text_encoder")
    return need.model(
        need.cls,
        patch_size=1,
        in_channels=d.packed_latent_channels,
        num_layers=d.layers,
        num_single_layers=1,
        attention_head_dim=d.head_dim,
        num_attention_heads=d.heads,
        joint_attention_dim=width,
        pooled_projection_dim=width,
        axes_dims_rope=d.rope_axes,
    )
