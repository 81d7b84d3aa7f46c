"""Kandinsky 5: the 3D transformer of its text-to-video, image-to-video, text-to-image and image-to-image pipelines,
and the words of their prompt templates.

The text encoders, tokenizers, VAEs and scheduler come from the shared factories; what couples with them here:

    Qwen2.5-VL last hidden states (batch, tokens, text_width)  --> `in_text_dim` (the text blocks' input)
    CLIP pooled output (batch, text_width)                     --> `in_text_dim2` (added to the time embedding)
    VAE latents, channels last (batch, frames, h, w, channels)  --> `in_visual_dim` / `out_visual_dim`

The pipelines compute the visual rotary positions as `latent size // 2`: patches are 1 x 2 x 2, and the rotary axes
(frames, height, width) add up to the head size (`dims.rope_axes`, `dims.head_dim`). The image-to-video and
image-to-image pipelines join `[latents | condition latents | condition mask]` (`2 x latent_channels + 1` channels):
their transformer has `visual_cond` on (see the overrides).

Every pipeline drops the first `prompt_template_encode_start_idx` tokens of the Qwen encoding (its fixed system
prompt) and, when a prompt is longer than `max_sequence_length`, cuts the text back from the end. With the tiny
byte-level tokenizer the template would be hundreds of tokens: the prompt would be cut away and the embedding would
not depend on it. The tokenizer therefore knows every word of the pipeline's template as one token, as the real
vocabulary does (`kandinsky5_template_words`), so the template is as many tokens as the pipeline drops (the video
pipelines 128, text-to-image 40; the image-to-image template is 49 tokens and the pipeline drops 54, so the first 5
tokens of a prompt go too, whatever the tokenizer).
"""

from __future__ import annotations

import functools
import inspect
import re

from ..registry import Need, factory
from .controlnets import _awake

# Words of the video template that the real Qwen vocabulary has no single token for (a typo, two rarer words): each
# is its two tokens, which brings the video template to the 128 tokens its pipelines drop
SPLIT_WORDS = {" scren": (" sc", "ren"), " dynamism": (" dynam", "ism"), " postprocessing": (" post", "processing")}
SPECIAL_TOKEN = re.compile(r"<\|[a-z_]+\|>")


@functools.cache
def kandinsky5_template_words(pipeline: type) -> tuple[str, ...]:
    """The words (Qwen's pre-tokens: ` the`, `.\\n`, `:`) of `pipeline`'s prompt template, which its constructor
    sets: read from a pipeline built without components."""
    from ...tokenizers import tiny_qwen2_tokenizer

    empty = pipeline(**{name: None for name in inspect.signature(pipeline.__init__).parameters if name != "self"})
    pre_tokenizer = tiny_qwen2_tokenizer().backend_tokenizer.pre_tokenizer
    whole: list[str] = []
    for text in SPECIAL_TOKEN.split(empty.prompt_template.replace("{}", " ")):
        for piece, _ in pre_tokenizer.pre_tokenize_str(text):
            word = piece.replace("Ġ", " ").replace("Ċ", "\n")
            if len(word) > 1 and word not in whole:
                whole.append(word)
    pieces = [piece for word in whole for piece in SPLIT_WORDS.get(word, ())]
    return tuple(word for word in whole if word not in SPLIT_WORDS) + tuple(pieces)


@factory("Kandinsky5Transformer3DModel")
def kandinsky5_transformer(need: Need):
    """One text block and one visual block, `dims.heads` heads of `dims.head_dim` (the head size is the sum of the
    rotary axes), 1 x 2 x 2 patches, the time embedding as wide as the model.

    Its constructor zeroes every modulation layer (the shift / scale / gate of each block and of the output layer):
    with them at zero no block adds anything and the prediction depends on the latents alone, not on the prompt or
    the timestep. They are re-drawn, seeded (`controlnets._awake`)."""
    d = need.dims
    return need.model(
        lambda **kwargs: _awake(need.cls(**kwargs)),
        in_visual_dim=d.latent_channels,
        out_visual_dim=d.latent_channels,
        in_text_dim=need.text_width("text_encoder"),
        in_text_dim2=need.text_width("text_encoder_2"),
        time_dim=d.inner_dim,
        model_dim=d.inner_dim,
        ff_dim=2 * d.inner_dim,
        num_text_blocks=d.layers,
        num_visual_blocks=d.layers,
        axes_dims=d.rope_axes,
        patch_size=(1, 2, 2),
    )
