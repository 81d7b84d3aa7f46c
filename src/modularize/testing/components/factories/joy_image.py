"""JoyImage-Edit's denoiser. Its text encoder (Qwen3-VL), processor, tokenizer and VAE (Wan) are built by the
shared factories; the pipeline's override (`overrides._JOY_IMAGE_EDIT`) makes the VAE compress enough for the
1024-pixel resolution buckets the pipeline always renders at."""

from __future__ import annotations

from ..registry import Need, factory


@factory("JoyImageEditTransformer3DModel")
def joy_image_edit_transformer(need: Need):
    """A one-block double-stream transformer over (frames, height, width) patches of 1 x 2 x 2 latents: latents in
    and out, `heads` heads of `head_dim` channels (the rotary axes add up to it), text the width of the Qwen3-VL
    hidden states the pipeline hooks out of its encoder. `patch_size[0]` must stay 1: an edit puts the reference
    image's latents and the noise side by side as frames."""
    d = need.dims
    return need.model(
        need.cls,
        patch_size=[1, 2, 2],
        in_channels=d.latent_channels,
        out_channels=d.latent_channels,
        hidden_size=d.inner_dim,
        num_attention_heads=d.heads,
        text_dim=need.text_width(),
        mlp_width_ratio=2.0,
        num_layers=d.layers,
        rope_dim_list=list(d.rope_axes),
    )
