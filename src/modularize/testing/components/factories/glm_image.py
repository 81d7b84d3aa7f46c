"""GLM-Image: its processor, its autoregressive vision-language model (which generates the image tokens the denoiser
is conditioned on) and its denoiser. Its glyph encoder (a T5 over ByT5's tokenizer) and VAE are the shared ones.

How the three fit together, in sizes:
- the processor asks the AR model for one token per `AR_TOKEN_PIXELS` x `AR_TOKEN_PIXELS` of the target (and, for
  text-to-image, a 16 x 16-ish preview grid first); the pipeline upsamples the tokens 2x, so the denoiser needs one
  patch per `AR_TOKEN_PIXELS / 2` pixels: VAE scale x transformer patch = 16;
- the AR model's head predicts `dims.codebook_size` image tokens, which are the denoiser's prior codebook and the
  vision tower's VQ codebook (source images are tokenized by it);
- the image start / end markers lie outside that range: the AR model can never sample its end-of-sequence marker, so
  it always generates the whole grid the pipeline slices (a random tiny model would otherwise stop early).
"""

from __future__ import annotations

from ...tokenizers import byte_symbols
from ..registry import Need, factory

AR_TOKEN_PIXELS = 32  # (GlmImageProcessor's `_get_target_shape`: one AR token per 32 x 32 pixels)
# (the tokenizer attribute the processor reads -> its token): GLM-Image's grid markers around `H W`, the image
# placeholder the processor expands to one per source image token, and the image start / end markers
GLM_IMAGE_MARKERS = {
    "grid_bos_token": "<sop>",
    "grid_eos_token": "<eop>",
    "image_token": "<|image|>",
    "image_end_token": "<|image_end|>",
}
IMAGE_START = "<|image_start|>"  # the tokenizer's `bos_token`: the processor ends every prompt with it
PAD = "<|endoftext|>"
# a user turn; an image becomes its start marker, the placeholder and its end marker (the AR model's 3D positions
# find source images between the two markers)
GLM_IMAGE_CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}" + IMAGE_START + "<|image|><|image_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endfor %}"
)


def glm_image_tokenizer():
    """A byte-level BPE (as `tiny_qwen2_tokenizer`, like GLM's own) with GLM-Image's markers as special tokens, after
    the byte symbols: ids far above the AR model's image tokens, which share the id range of the text vocabulary.

        glm_image_tokenizer()("<sop>1 1<eop><|image_start|>").input_ids  # -> [<sop>, 1, space, 1, <eop>, start]
    """
    from transformers import Qwen2Tokenizer

    vocab: dict[str, int] = {}
    for symbol in byte_symbols():
        vocab.setdefault(symbol, len(vocab))
    merges = [("Ġ", "a"), ("c", "a"), ("ca", "t"), ("Ġ", "t"), ("h", "e")]
    for first, second in merges:
        vocab.setdefault(first + second, len(vocab))
    for token in (PAD, IMAGE_START, *GLM_IMAGE_MARKERS.values()):
        vocab[token] = len(vocab)
    return Qwen2Tokenizer(
        vocab=vocab, merges=merges, bos_token=IMAGE_START, pad_token=PAD, extra_special_tokens=GLM_IMAGE_MARKERS
    )


@factory("GlmImageProcessor")
def glm_image_processor(need: Need):
    """The tokenizer above and an image processor that resizes a source image to one `AR_TOKEN_PIXELS` square patch
    (no merging, one frame): one source token, two after the pipeline's upsampling, as many as the denoiser's
    patches of the image's latents."""
    from transformers.models.glm_image.image_processing_pil_glm_image import GlmImageImageProcessorPil

    pixels = AR_TOKEN_PIXELS * AR_TOKEN_PIXELS
    image_processor = GlmImageImageProcessorPil(
        patch_size=AR_TOKEN_PIXELS, merge_size=1, temporal_patch_size=1, min_pixels=pixels, max_pixels=pixels
    )
    return need.cls(
        image_processor=image_processor, tokenizer=glm_image_tokenizer(), chat_template=GLM_IMAGE_CHAT_TEMPLATE
    )


@factory("GlmImageForConditionalGeneration")
def glm_image_ar_model(need: Need):
    """The AR model: a `text_layers`-deep text model at the text width (heads of 16 channels, multimodal rotary
    sections adding up to half of that) over the tokenizer's vocabulary, its head predicting `codebook_size` image
    tokens; one vision block on `AR_TOKEN_PIXELS` patches whose features the VQ codebook tokenizes."""
    from transformers import GlmImageConfig

    tokenizer = glm_image_tokenizer()
    ids = tokenizer.convert_tokens_to_ids
    d = need.dims
    vision_width = 16
    config = GlmImageConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": d.text_hidden,
            "intermediate_size": d.text_intermediate,
            "num_hidden_layers": d.text_layers,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "max_position_embeddings": 512,
            "vision_vocab_size": d.codebook_size,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 2, 2]},
            "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": ids(GLM_IMAGE_MARKERS["image_end_token"]),
        },
        vision_config={
            "depth": 1,
            "hidden_size": vision_width,
            "num_heads": 2,
            "intermediate_size": vision_width,
            "image_size": 2 * AR_TOKEN_PIXELS,
            "patch_size": AR_TOKEN_PIXELS,
        },
        vq_config={"embed_dim": 8, "num_embeddings": d.codebook_size, "latent_channels": vision_width},
        image_token_id=ids(GLM_IMAGE_MARKERS["image_token"]),
        image_start_token_id=ids(IMAGE_START),
        image_end_token_id=ids(GLM_IMAGE_MARKERS["image_end_token"]),
    )
    return need.model(need.cls, config=config)


@factory("GlmImageTransformer2DModel")
def glm_image_transformer(need: Need):
    """Latents in and out, patches of `AR_TOKEN_PIXELS / 2` pixels (one per upsampled AR token), the glyph
    encoder's width, the AR model's image tokens as its prior codebook."""
    d = need.dims
    return need.model(
        need.cls,
        patch_size=AR_TOKEN_PIXELS // 2 // d.vae_scale_factor,
        in_channels=d.latent_channels,
        out_channels=d.latent_channels,
        num_layers=d.layers,
        attention_head_dim=d.head_dim,
        num_attention_heads=d.heads,
        text_embed_dim=need.text_width(),
        time_embed_dim=16,
        condition_dim=8,
        prior_vq_quantizer_codebook_size=d.codebook_size,
    )
