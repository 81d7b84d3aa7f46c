"""Image encoders and image processors (feature extractors)."""

from __future__ import annotations

import functools

from ..registry import Need, factory

IMAGE_ENCODER_SIZE = 32  # pixels the tiny image encoders see


@factory("CLIPImageProcessor", "CLIPImageProcessorPil", "CLIPImageProcessorFast")
def clip_image_processor(need: Need):
    size = IMAGE_ENCODER_SIZE
    return need.cls(crop_size={"height": size, "width": size}, size={"shortest_edge": size})


def _clip_vision_config(need: Need):
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(
        hidden_size=need.dims.text_hidden,
        projection_dim=need.dims.clip_projection,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        image_size=IMAGE_ENCODER_SIZE,
        patch_size=8,
    )


@factory("CLIPVisionModel", "CLIPVisionModelWithProjection")
def clip_vision_model(need: Need):
    return need.model(need.cls, config=_clip_vision_config(need))


# Paint by Example's mapper has one transformer block per 5 CLIP layers (rounded): 4 layers give it one
PAINT_BY_EXAMPLE_CLIP_LAYERS = 4


@factory("PaintByExampleImageEncoder")
def paint_by_example_image_encoder(need: Need):
    """A CLIP vision tower whose pooled output, mapped and projected, is what the UNet cross-attends to in place of
    text: projected to the text width (`text_hidden`, the UNet's cross-attention size), like its learned
    unconditional vector."""
    config = _clip_vision_config(need)
    config.num_hidden_layers = PAINT_BY_EXAMPLE_CLIP_LAYERS
    return need.model(need.cls, config=config, proj_size=need.dims.text_hidden)


@factory("CLIPProcessor")
def clip_processor(need: Need):
    from transformers import CLIPImageProcessor, CLIPProcessor

    from ...tokenizers import tiny_clip_tokenizer

    size = IMAGE_ENCODER_SIZE
    image_processor = CLIPImageProcessor(crop_size={"height": size, "width": size}, size={"shortest_edge": size})
    return CLIPProcessor(image_processor=image_processor, tokenizer=tiny_clip_tokenizer())


def _siglip_config(need: Need, config_cls):
    return config_cls(
        hidden_size=need.dims.text_hidden,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        image_size=IMAGE_ENCODER_SIZE,
        patch_size=8,
    )


@factory("SiglipVisionModel")
def siglip_vision_model(need: Need):
    from transformers import SiglipVisionConfig

    return need.model(need.cls, config=_siglip_config(need, SiglipVisionConfig))


@factory("SiglipImageProcessor", "SiglipImageProcessorPil")
def siglip_image_processor(need: Need):
    size = IMAGE_ENCODER_SIZE
    return need.cls(size={"height": size, "width": size})


@factory("DPTForDepthEstimation")
def dpt_depth_estimation(need: Need):
    from transformers import DPTConfig

    config = DPTConfig(
        image_size=IMAGE_ENCODER_SIZE,
        patch_size=16,
        num_channels=3,
        hidden_size=32,
        num_hidden_layers=4,
        backbone_out_indices=(0, 1, 2, 3),
        num_attention_heads=4,
        intermediate_size=37,
        is_hybrid=False,
        reassemble_factors=[4, 2, 1, 0.5],
        neck_hidden_sizes=[16, 16, 32, 32],
        fusion_hidden_size=16,
        head_in_index=-1,
    )
    return need.model(need.cls, config=config)


@factory("DPTImageProcessor", "DPTImageProcessorPil")
def dpt_image_processor(need: Need):
    size = IMAGE_ENCODER_SIZE
    return need.cls(size={"height": size, "width": size})


SIGLIP2_PATCH, SIGLIP2_PATCHES = 8, 16  # a 32-pixel image is 4 x 4 patches of 8


@factory("Siglip2VisionModel")
def siglip2_vision_model(need: Need):
    from transformers import Siglip2VisionConfig

    config = Siglip2VisionConfig(
        hidden_size=need.dims.text_hidden,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        patch_size=SIGLIP2_PATCH,
        num_patches=SIGLIP2_PATCHES,
    )
    return need.model(need.cls, config=config)


@factory("Siglip2ImageProcessor", "Siglip2ImageProcessorPil")
def siglip2_image_processor(need: Need):
    return need.cls(patch_size=SIGLIP2_PATCH, max_num_patches=SIGLIP2_PATCHES)


@factory("BlipImageProcessor")
def blip_image_processor(need: Need):
    """BLIP-Diffusion's reference-image processor: resized (and center-cropped) to the pixels the Q-Former's vision
    tower sees."""
    size = IMAGE_ENCODER_SIZE
    return need.cls(size={"height": size, "width": size})


# BLIP-Diffusion's Q-Former: its learned queries, read out as the subject embedding spliced into the prompt
BLIP2_QUERY_TOKENS = 8


@factory("Blip2QFormerModel")
def blip2_qformer(need: Need):
    """BLIP-Diffusion's Q-Former: a BLIP-2 vision tower on `IMAGE_ENCODER_SIZE` pixels, and a BERT-like query
    transformer over its learned queries and the subject category's tokens, cross-attending to the image. Its
    output (the queries, projected) is spliced into the text encoder's token embeddings: it is as wide as that
    encoder (the UNet's cross-attention width).

    It tokenizes the subject category itself, with a `BertTokenizer` it loads by name in its constructor (the Hub's
    `bert-base-uncased` unless the config names another): the tiny BERT tokenizer, saved to a local directory. Its
    queries start at zero (the constructor's initializer): they are drawn, seeded, so they matter. It was written
    against transformers 4: it calls mask helpers transformers 5 no longer has (`with_transformers4_masks`) and
    calls transformers' Q-Former attention blocks the transformers 4 way (`with_transformers4_call`)."""
    import torch
    from transformers import Blip2Config, Blip2QFormerConfig, Blip2VisionConfig

    d = need.dims
    tokenizer_dir = _tiny_bert_tokenizer_dir()
    vocab_size = len(_qformer_tokenizer(tokenizer_dir))
    vision = Blip2VisionConfig(
        hidden_size=d.text_hidden,
        intermediate_size=d.text_intermediate,
        num_attention_heads=d.text_heads,
        num_hidden_layers=d.text_layers,
        image_size=IMAGE_ENCODER_SIZE,
        patch_size=8,
    )
    qformer = Blip2QFormerConfig(
        vocab_size=vocab_size,
        hidden_size=need.text_width("text_encoder"),
        intermediate_size=d.text_intermediate,
        num_attention_heads=d.text_heads,
        num_hidden_layers=d.text_layers,
        max_position_embeddings=d.clip_max_length,
        cross_attention_frequency=1,
        encoder_hidden_size=vision.hidden_size,
    )
    config = Blip2Config(
        vision_config=vision.to_dict(),
        qformer_config=qformer.to_dict(),
        num_query_tokens=BLIP2_QUERY_TOKENS,
        tokenizer=tokenizer_dir,
    )

    def build(**kwargs):
        model = with_transformers4_masks(need.cls)(**kwargs)
        for layer in model.encoder.layer:
            for name in ("attention", "crossattention"):
                module = getattr(layer, name, None)
                if module is not None:
                    module.__class__ = with_transformers4_call(type(module))
        with torch.no_grad():
            model.query_tokens.normal_(std=config.initializer_range)
        return model

    return need.model(build, config=config)


def _qformer_tokenizer(directory: str):
    """The tokenizer the Q-Former loads from `directory`, as its constructor does (with BLIP's `[DEC]` token)."""
    from transformers import BertTokenizer

    tokenizer = BertTokenizer.from_pretrained(directory, truncation_side="right")
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    return tokenizer


@functools.cache
def _tiny_bert_tokenizer_dir() -> str:
    """A directory holding the tiny BERT tokenizer, for constructors that load a tokenizer by name or path. Named
    by its vocabulary's hash under the temporary directory, shared by processes (written aside, then renamed in)."""
    import hashlib
    import os
    import shutil
    import tempfile
    from pathlib import Path

    from ...tokenizers import tiny_bert_tokenizer

    tokenizer = tiny_bert_tokenizer()
    vocab = sorted(tokenizer.get_vocab().items())
    digest = hashlib.sha256(repr(vocab).encode()).hexdigest()[:12]
    target = Path(tempfile.gettempdir()) / f"modularize-tiny-bert-tokenizer-{digest}"
    if not target.is_dir():
        staging = tempfile.mkdtemp(prefix=f"{target.name}-", dir=target.parent)
        tokenizer.save_pretrained(staging)
        try:
            os.rename(staging, target)
        except OSError:  # another process got there first
            shutil.rmtree(staging, ignore_errors=True)
    return str(target)


@functools.cache
def with_transformers4_masks(model_cls: type) -> type:
    """`model_cls` with the attention-mask helpers transformers 4's `PreTrainedModel` had and transformers 5 dropped
    (diffusers' BLIP-2 Q-Former still calls them): `invert_attention_mask` (a 0 / 1 mask over the keys -> an additive
    one, broadcast over heads and queries) and `get_head_mask` (no head mask: `None` for every layer)."""
    import torch

    class WithTransformers4Masks(model_cls):
        def invert_attention_mask(self, encoder_attention_mask: torch.Tensor) -> torch.Tensor:
            if encoder_attention_mask.dim() == 3:
                extended = encoder_attention_mask[:, None, :, :]
            else:
                extended = encoder_attention_mask[:, None, None, :]
            extended = extended.to(dtype=self.dtype)
            return (1.0 - extended) * torch.finfo(self.dtype).min

        def get_head_mask(self, head_mask, num_hidden_layers: int, is_attention_chunked: bool = False):
            if head_mask is not None:
                raise NotImplementedError("head masks are not supported by the tiny Q-Former")
            return [None] * num_hidden_layers

    WithTransformers4Masks.__name__ = WithTransformers4Masks.__qualname__ = model_cls.__name__
    return WithTransformers4Masks


@functools.cache
def with_transformers4_call(attention_cls: type) -> type:
    """transformers' `Blip2QFormerAttention` called as in transformers 4, as diffusers' Q-Former layers call it:
    `(hidden_states, attention_mask, head_mask, encoder_hidden_states, encoder_attention_mask, past_key_value,
    output_attentions)` positionally, returning a tuple `(output, *attention weights, present key / value)` (here
    `(output, None)`: no weights, no cache), where transformers 5 takes the encoder's states third and returns the
    output alone. The masks are additive, as both versions add them to the attention scores."""

    class WithTransformers4Call(attention_cls):
        def forward(
            self,
            hidden_states,
            attention_mask=None,
            head_mask=None,
            encoder_hidden_states=None,
            encoder_attention_mask=None,
            past_key_value=None,
            output_attentions=False,
        ):
            if head_mask is not None or past_key_value is not None or output_attentions:
                raise NotImplementedError("head masks, caches and attention outputs are not supported here")
            output = super().forward(
                hidden_states,
                attention_mask=attention_mask,
                encoder_hidden_states=encoder_hidden_states,
                encoder_attention_mask=encoder_attention_mask,
            )
            return (output, None)

    WithTransformers4Call.__name__ = WithTransformers4Call.__qualname__ = attention_cls.__name__
    return WithTransformers4Call
