"""Image encoders and image processors (feature extractors)."""

from __future__ import annotations

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
