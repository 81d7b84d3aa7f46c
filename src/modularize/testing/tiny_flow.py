"""Tiny offline components for the flow-matching transformer families: Flux, QwenImage, Wan, Z-Image.

Dimension couplings that matter: Flux packs 2x2 latent patches, so its transformer's `in_channels` is 4x the VAE's
`latent_channels` and sizes are multiples of 2x the VAE's scale factor; the text encoders' widths are the
transformer's `joint_attention_dim` (T5) and `pooled_projection_dim` (CLIP); the rotary axes add up to
`attention_head_dim`.
"""

from __future__ import annotations

from typing import Any

from .tiny_parts import FLOW_VAE, TinySetup, clip_text_config, seeded, tiny_image, tiny_mask, tiny_t5, tiny_vae
from .tokenizers import tiny_clip_tokenizer, tiny_qwen2_tokenizer, tiny_t5_tokenizer

_TWO_PROMPTS = ["a photo of a cat", "the dog and the moon"]
_TWO_NEGATIVES = ["blurry", "low quality"]


def flux_components(seed: int = 0, guidance_embeds: bool = True) -> dict[str, Any]:
    """CLIP (pooled, width 32) and T5 (width 32) text encoders, a Flux transformer and a VAE, 32x32 images."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel
    from transformers import CLIPTextModel

    tokenizer, tokenizer_2 = tiny_clip_tokenizer(), tiny_t5_tokenizer()
    transformer = seeded(
        seed + 2,
        lambda: FluxTransformer2DModel(
            patch_size=1,
            in_channels=16,
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=16,
            num_attention_heads=2,
            joint_attention_dim=32,
            pooled_projection_dim=32,
            guidance_embeds=guidance_embeds,
            axes_dims_rope=(4, 6, 6),
        ).eval(),
    )
    vae = tiny_vae(seed + 3, **FLOW_VAE)
    scheduler = FlowMatchEulerDiscreteScheduler(
        base_image_seq_len=256,
        base_shift=0.5,
        max_image_seq_len=4096,
        max_shift=1.15,
        shift=3.0,
        use_dynamic_shifting=True,
    )
    return {
        "scheduler": scheduler,
        "vae": vae,
        "text_encoder": seeded(seed, lambda: CLIPTextModel(clip_text_config(tokenizer)).eval()),
        "tokenizer": tokenizer,
        "text_encoder_2": tiny_t5(tokenizer_2, seed + 1, d_model=32),
        "tokenizer_2": tokenizer_2,
        "transformer": transformer,
    }


def _true_cfg_cases(images_argument: str) -> tuple[tuple[str, dict[str, Any]], ...]:
    """True CFG runs only with a negative prompt and `true_cfg_scale > 1`: both sides of that, 1 and 2 prompts,
    several images per prompt, latent and decoded outputs, 2 and 3 steps."""
    return (
        ("default", {}),
        ("true_cfg", {"negative_prompt": "blurry", "true_cfg_scale": 4.0}),
        ("scale_without_negative", {"true_cfg_scale": 4.0}),
        ("negative_without_scale", {"negative_prompt": "blurry"}),
        ("two_prompts_true_cfg", {"prompt": _TWO_PROMPTS, "negative_prompt": _TWO_NEGATIVES, "true_cfg_scale": 3.0}),
        ("two_per_prompt_true_cfg", {images_argument: 2, "negative_prompt": "low quality", "true_cfg_scale": 2.0}),
        (
            "two_prompts_x2_latent_3_steps",
            {"prompt": _TWO_PROMPTS, images_argument: 2, "output_type": "latent", "num_inference_steps": 3},
        ),
        (
            "true_cfg_latent_3_steps",
            {"negative_prompt": "blurry", "true_cfg_scale": 5.0, "output_type": "latent", "num_inference_steps": 3},
        ),
    )


FLUX = TinySetup(
    components=flux_components,
    inputs=lambda: {
        "prompt": "a photo of a cat",
        "num_inference_steps": 2,
        "height": 32,
        "width": 32,
        "max_sequence_length": 48,
        "output_type": "np",
    },
    cases=(*_true_cfg_cases("num_images_per_prompt"), ("distilled_guidance_scale", {"guidance_scale": 7.0})),
)


def _flux_kontext_inputs() -> dict[str, Any]:
    return {
        "prompt": "a photo of a cat",
        "image": tiny_image(),
        "num_inference_steps": 2,
        "height": 32,
        "width": 32,
        "max_sequence_length": 48,
        "output_type": "np",
        "max_area": 32 * 32,  # Kontext resizes to `max_area` (1024 x 1024 by default)
        "_auto_resize": False,
    }


# Kontext slices the image tokens off each prediction right after its call: each guider batch does the same
FLUX_KONTEXT = TinySetup(
    components=flux_components,
    inputs=_flux_kontext_inputs,
    cases=(*_true_cfg_cases("num_images_per_prompt"), ("text_only", {"image": None})),
)


def qwen2_5_vl_text_encoder(tokenizer, seed: int, hidden_size: int = 32, layers: int = 1):
    """A Qwen2.5-VL model (`layers` text layers, one vision block) whose text width is `hidden_size`; the
    multimodal rotary sections add up to half the head size (16 / 2)."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": hidden_size,
            "intermediate_size": 64,
            "num_hidden_layers": layers,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 1000000.0},
        },
        vision_config={
            "depth": 1,
            "hidden_size": 16,
            "intermediate_size": 16,
            "num_heads": 2,
            "out_hidden_size": hidden_size,
            "fullatt_block_indexes": [0],
        },
    )
    return seeded(seed, lambda: Qwen2_5_VLForConditionalGeneration(config).eval())


def qwenimage_components(seed: int = 0) -> dict[str, Any]:
    """A Qwen2.5-VL text encoder (width 32 = the transformer's `joint_attention_dim`), a QwenImage transformer over
    2x2-packed latents (4 latent channels -> 16) and a QwenImage VAE with one spatial downsampling, 32x32 images."""
    from diffusers import AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, QwenImageTransformer2DModel

    tokenizer = tiny_qwen2_tokenizer()
    transformer = seeded(
        seed + 1,
        lambda: QwenImageTransformer2DModel(
            patch_size=2,
            in_channels=16,
            out_channels=4,
            num_layers=1,
            attention_head_dim=16,
            num_attention_heads=2,
            joint_attention_dim=32,
            axes_dims_rope=(4, 6, 6),
        ).eval(),
    )
    vae = seeded(
        seed + 2,
        lambda: AutoencoderKLQwenImage(
            base_dim=16,
            z_dim=4,
            dim_mult=[1, 2],
            num_res_blocks=1,
            temperal_downsample=[False],
            latents_mean=[0.1, -0.2, 0.3, 0.0],
            latents_std=[1.5, 2.0, 1.2, 0.8],
        ).eval(),
    )
    return {
        "scheduler": FlowMatchEulerDiscreteScheduler(
            base_image_seq_len=256,
            base_shift=0.5,
            max_image_seq_len=4096,
            max_shift=1.15,
            shift=1.0,
            use_dynamic_shifting=True,
        ),
        "vae": vae,
        "text_encoder": qwen2_5_vl_text_encoder(tokenizer, seed),
        "tokenizer": tokenizer,
        "transformer": transformer,
    }


QWENIMAGE = TinySetup(
    components=qwenimage_components,
    inputs=lambda: {
        "prompt": "a photo of a cat",
        "num_inference_steps": 2,
        "height": 32,
        "width": 32,
        "output_type": "np",
    },
    # QwenImage's `true_cfg_scale` defaults to 4.0: a negative prompt alone turns true CFG on
    cases=(
        *_true_cfg_cases("num_images_per_prompt"),
        ("negative_scale_1", {"negative_prompt": "x", "true_cfg_scale": 1.0}),
    ),
)


def wan_components(seed: int = 0) -> dict[str, Any]:
    """Wan 2.2's two-stage layout: a UMT5 text encoder (width 32 = the transformers' `text_dim`), two video
    transformers switched at `boundary_ratio` and a Wan VAE (2x spatial, 2x temporal), 16x16 videos of 5 frames.
    A case with `{"components": {"transformer_2": None, "boundary_ratio": None}}` is Wan 2.1's one-stage layout."""
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanTransformer3DModel

    tokenizer = tiny_t5_tokenizer()

    def transformer(offset: int):
        return seeded(
            seed + offset,
            lambda: WanTransformer3DModel(
                patch_size=(1, 2, 2),
                num_attention_heads=2,
                attention_head_dim=12,
                in_channels=4,
                out_channels=4,
                text_dim=32,
                freq_dim=32,
                ffn_dim=32,
                num_layers=1,
                rope_max_seq_len=32,
            ).eval(),
        )

    vae = seeded(
        seed + 1,
        lambda: AutoencoderKLWan(
            base_dim=8,
            z_dim=4,
            dim_mult=[1, 2],
            num_res_blocks=1,
            temperal_downsample=[True],
            latents_mean=[0.1, -0.2, 0.3, 0.0],
            latents_std=[1.5, 2.0, 1.2, 0.8],
            scale_factor_temporal=2,
            scale_factor_spatial=2,
        ).eval(),
    )
    return {
        "tokenizer": tokenizer,
        "text_encoder": tiny_t5(tokenizer, seed, umt5=True),
        "vae": vae,
        "scheduler": UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0),
        "transformer": transformer(2),
        "transformer_2": transformer(3),
        "boundary_ratio": 0.875,  # the first of 3 steps (t=999) on `transformer`, the rest on `transformer_2`
    }


_WAN_2_1 = {"components": {"transformer_2": None, "boundary_ratio": None}}

WAN = TinySetup(
    components=wan_components,
    inputs=lambda: {
        "prompt": "a photo of a cat",
        "num_inference_steps": 3,
        "height": 16,
        "width": 16,
        "num_frames": 5,
        "max_sequence_length": 32,
        "output_type": "np",
    },
    cases=(
        ("default", {}),
        ("cfg_off", {"guidance_scale": 1.0}),
        ("negative_prompt", {"negative_prompt": "blurry"}),
        ("second_stage_scale", {"guidance_scale_2": 2.0, "negative_prompt": "blurry"}),
        ("cfg_off_second_stage_scale", {"guidance_scale": 1.0, "guidance_scale_2": 3.0}),
        ("two_prompts_negatives", {"prompt": _TWO_PROMPTS, "negative_prompt": _TWO_NEGATIVES}),
        ("two_videos_per_prompt_2_steps", {"num_videos_per_prompt": 2, "num_inference_steps": 2}),
        ("two_prompts_x2_latent", {"prompt": _TWO_PROMPTS, "num_videos_per_prompt": 2, "output_type": "latent"}),
        ("wan_2_1", _WAN_2_1),
        ("wan_2_1_cfg_off_latent", {**_WAN_2_1, "guidance_scale": 1.0, "output_type": "latent"}),
    ),
)


def z_image_components(seed: int = 0) -> dict[str, Any]:
    """A Qwen3 text model (width 16 = the transformer's `cap_feat_dim`) with a chat template, a Z-Image
    transformer (rotary axes 4 + 6 + 6 = its head size) and a VAE, 32x32 images."""
    from diffusers import FlowMatchEulerDiscreteScheduler, ZImageTransformer2DModel
    from transformers import Qwen3Config, Qwen3Model

    tokenizer = tiny_qwen2_tokenizer()
    tokenizer.chat_template = (
        "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=1024,
    )
    transformer = seeded(
        seed + 1,
        lambda: ZImageTransformer2DModel(
            all_patch_size=(2,),
            all_f_patch_size=(1,),
            in_channels=4,
            dim=32,
            n_layers=1,
            n_refiner_layers=1,
            n_heads=2,
            n_kv_heads=2,
            cap_feat_dim=16,
            axes_dims=[4, 6, 6],
            axes_lens=[256, 32, 32],
        ).eval(),
    )
    vae = tiny_vae(seed + 2, **FLOW_VAE)
    return {
        "scheduler": FlowMatchEulerDiscreteScheduler(
            base_image_seq_len=256,
            base_shift=0.5,
            max_image_seq_len=4096,
            max_shift=1.15,
            shift=3.0,
            use_dynamic_shifting=True,
        ),
        "vae": vae,
        "text_encoder": seeded(seed, lambda: Qwen3Model(config).eval()),
        "tokenizer": tokenizer,
        "transformer": transformer,
    }


Z_IMAGE = TinySetup(
    components=z_image_components,
    inputs=lambda: {
        "prompt": "a photo of a cat",
        "num_inference_steps": 2,
        "height": 32,
        "width": 32,
        "max_sequence_length": 64,
        "output_type": "np",
    },
    # CFG is on for any scale above 0; `cfg_normalization` caps the guided norm, `cfg_truncation` turns CFG off
    # for the steps past it
    cases=(
        ("default", {}),
        ("cfg_off", {"guidance_scale": 0.0}),
        ("negative_prompt", {"negative_prompt": "blurry"}),
        ("two_prompts_negatives", {"prompt": _TWO_PROMPTS, "negative_prompt": _TWO_NEGATIVES}),
        ("two_images_per_prompt_3_steps", {"num_images_per_prompt": 2, "num_inference_steps": 3}),
        ("normalization", {"cfg_normalization": True, "guidance_scale": 7.0}),
        ("truncation_3_steps", {"cfg_truncation": 0.5, "num_inference_steps": 3, "negative_prompt": "x"}),
        ("two_prompts_x2_latent", {"prompt": _TWO_PROMPTS, "num_images_per_prompt": 2, "output_type": "latent"}),
        ("cfg_off_latent_3_steps", {"guidance_scale": 0.0, "output_type": "latent", "num_inference_steps": 3}),
    ),
)


def _z_image_with_image(mask: bool) -> TinySetup:
    """Z-Image image-to-image / inpainting: the text-to-image components, an input image (and mask), two strengths,
    CFG off and on, prompts and images per prompt, latent output."""

    def inputs() -> dict[str, Any]:
        image = {"image": tiny_image(), "strength": 0.6, "num_inference_steps": 3}
        return {**Z_IMAGE.inputs(), **image, **({"mask_image": tiny_mask()} if mask else {})}

    return TinySetup(
        components=lambda: z_image_components(seed=12 if mask else 11),
        inputs=inputs,
        cases=(
            ("default", {}),
            ("cfg_off", {"guidance_scale": 0.0}),
            ("strength_0.9_negative", {"strength": 0.9, "negative_prompt": "blurry"}),
            ("two_prompts_negatives", {"prompt": _TWO_PROMPTS, "negative_prompt": _TWO_NEGATIVES}),
            ("two_images_per_prompt_latent", {"num_images_per_prompt": 2, "output_type": "latent"}),
            ("truncation_normalization", {"cfg_truncation": 0.5, "cfg_normalization": True}),
            ("cfg_off_latent_strength_1", {"guidance_scale": 0.0, "output_type": "latent", "strength": 1.0}),
        ),
    )


def hunyuan_image_components(seed: int = 0) -> dict[str, Any]:
    """A pipeline that runs its own guiders (adaptive projected mix, one for prompts with quoted text): a Qwen2.5-VL
    text encoder and a ByT5 one (both width 32 = the transformer's text widths), a HunyuanImage transformer
    (rotary axes 4 + 4 = its head size) and its VAE (8x spatial compression), 16x16 images."""
    from diffusers import (
        AdaptiveProjectedMixGuidance,
        AutoencoderKLHunyuanImage,
        FlowMatchEulerDiscreteScheduler,
        HunyuanImageTransformer2DModel,
    )
    from transformers import ByT5Tokenizer

    tokenizer, tokenizer_2 = tiny_qwen2_tokenizer(), ByT5Tokenizer()
    transformer = seeded(
        seed + 1,
        lambda: HunyuanImageTransformer2DModel(
            in_channels=4,
            out_channels=4,
            num_attention_heads=4,
            attention_head_dim=8,
            num_layers=1,
            num_single_layers=1,
            num_refiner_layers=1,
            patch_size=(1, 1),
            text_embed_dim=32,
            text_embed_2_dim=32,
            rope_axes_dim=(4, 4),
        ).eval(),
    )
    vae = seeded(
        seed + 2,
        lambda: AutoencoderKLHunyuanImage(
            in_channels=3,
            out_channels=3,
            latent_channels=4,
            block_out_channels=(32, 64, 64, 64),
            layers_per_block=1,
            scaling_factor=0.5,
            spatial_compression_ratio=8,
            sample_size=64,
        ).eval(),
    )
    return {
        "scheduler": FlowMatchEulerDiscreteScheduler(shift=7.0),
        "vae": vae,
        # it reads the hidden states of the layer before the last: two layers
        "text_encoder": qwen2_5_vl_text_encoder(tokenizer, seed, layers=2),
        "tokenizer": tokenizer,
        "text_encoder_2": tiny_t5(tokenizer_2, seed + 3),
        "tokenizer_2": tokenizer_2,
        "transformer": transformer,
        # adaptive projection from the second step on (the third for the text guider)
        "guider": AdaptiveProjectedMixGuidance(adaptive_projected_guidance_start_step=1),
        "ocr_guider": AdaptiveProjectedMixGuidance(adaptive_projected_guidance_start_step=2),
    }


HUNYUAN_IMAGE = TinySetup(
    components=hunyuan_image_components,
    inputs=lambda: {
        "prompt": "a photo of a cat",
        "num_inference_steps": 2,
        "height": 16,
        "width": 16,
        "output_type": "np",
    },
    cases=(
        ("default", {}),
        ("negative_prompt_3_steps", {"negative_prompt": "blurry", "num_inference_steps": 3}),
        ("quoted_text_uses_the_ocr_guider", {"prompt": 'a sign that says "open"', "num_inference_steps": 3}),
        ("two_prompts_negatives", {"prompt": _TWO_PROMPTS, "negative_prompt": _TWO_NEGATIVES}),
        ("two_images_per_prompt_latent", {"num_images_per_prompt": 2, "output_type": "latent"}),
    ),
)


def cogvideox_components(seed: int = 0) -> dict[str, Any]:
    """A T5 encoder (width 32 = the transformer's `text_embed_dim`), a CogVideoX transformer (4 heads x 8, 2x2
    patches, 16 text tokens) and a CogVideoX VAE (8x spatial, 4x temporal compression): 9 frames of 16x16."""
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXTransformer3DModel

    tokenizer = tiny_t5_tokenizer()
    transformer = seeded(
        seed + 1,
        lambda: CogVideoXTransformer3DModel(
            num_attention_heads=4,
            attention_head_dim=8,
            in_channels=4,
            out_channels=4,
            time_embed_dim=2,
            text_embed_dim=32,
            num_layers=1,
            sample_width=2,
            sample_height=2,
            sample_frames=9,
            patch_size=2,
            temporal_compression_ratio=4,
            max_text_seq_length=16,
        ).eval(),
    )
    vae = seeded(
        seed + 2,
        lambda: AutoencoderKLCogVideoX(
            in_channels=3,
            out_channels=3,
            down_block_types=("CogVideoXDownBlock3D",) * 4,
            up_block_types=("CogVideoXUpBlock3D",) * 4,
            block_out_channels=(8, 8, 8, 8),
            latent_channels=4,
            layers_per_block=1,
            norm_num_groups=2,
            temporal_compression_ratio=4,
        ).eval(),
    )
    return {
        "tokenizer": tokenizer,
        "text_encoder": tiny_t5(tokenizer, seed, d_model=32),
        "vae": vae,
        "transformer": transformer,
        "scheduler": CogVideoXDDIMScheduler(),
    }


COGVIDEOX = TinySetup(
    components=cogvideox_components,
    inputs=lambda: {
        "prompt": "a photo of a cat",
        "num_inference_steps": 2,
        "height": 16,
        "width": 16,
        "num_frames": 9,
        "max_sequence_length": 16,
        "output_type": "np",
    },
    cases=(
        ("default", {}),
        ("cfg_off", {"guidance_scale": 1.0}),
        ("negative_prompt_3_steps", {"negative_prompt": "blurry", "num_inference_steps": 3}),
        # DPM-solver++ carries its previous prediction from step to step (`old_pred_original_sample`)
        ("dpm_3_steps", {"scheduler": "CogVideoXDPMScheduler", "num_inference_steps": 3}),
        (
            "two_prompts_negatives_latent",
            {"prompt": _TWO_PROMPTS, "negative_prompt": _TWO_NEGATIVES, "output_type": "latent"},
        ),
        # (`num_videos_per_prompt` is not in the matrix: `__call__` resets it to 1, the package refuses it instead)
        ("two_prompts_dpm", {"prompt": _TWO_PROMPTS, "scheduler": "CogVideoXDPMScheduler"}),
    ),
)


def aura_flow_components(seed: int = 0) -> dict[str, Any]:
    """A UMT5 encoder (width 32 = the transformer's `joint_attention_dim`), an AuraFlow transformer (one MMDiT and
    one single DiT layer, 4 heads x 8, 2x2 patches) and a 2-level VAE, 32x32 images."""
    from diffusers import AuraFlowTransformer2DModel, FlowMatchEulerDiscreteScheduler

    tokenizer = tiny_t5_tokenizer()
    transformer = seeded(
        seed + 1,
        lambda: AuraFlowTransformer2DModel(
            sample_size=16,
            patch_size=2,
            in_channels=4,
            num_mmdit_layers=1,
            num_single_dit_layers=1,
            attention_head_dim=8,
            num_attention_heads=4,
            caption_projection_dim=32,
            joint_attention_dim=32,
            out_channels=4,
            pos_embed_max_size=256,
        ).eval(),
    )
    return {
        "tokenizer": tokenizer,
        "text_encoder": tiny_t5(tokenizer, seed, d_model=32, umt5=True),
        "vae": tiny_vae(seed + 2),
        "transformer": transformer,
        "scheduler": FlowMatchEulerDiscreteScheduler(),
    }


AURA_FLOW = TinySetup(
    components=aura_flow_components,
    inputs=lambda: {
        "prompt": "a photo of a cat",
        "num_inference_steps": 2,
        "height": 32,
        "width": 32,
        "max_sequence_length": 32,
        "output_type": "np",
    },
    cases=(
        ("default", {}),
        ("cfg_off", {"guidance_scale": 1.0}),
        ("negative_prompt_3_steps", {"negative_prompt": "blurry", "num_inference_steps": 3}),
        (
            "two_prompts_negatives_x2",
            {"prompt": _TWO_PROMPTS, "negative_prompt": _TWO_NEGATIVES, "num_images_per_prompt": 2},
        ),
        ("cfg_off_latent", {"guidance_scale": 1.0, "output_type": "latent"}),
    ),
)


def _with_image(setup: TinySetup, mask: bool, seed: int) -> TinySetup:
    """A text-to-image setup's image-to-image (or inpainting) sibling: the same kind of components, an input image
    (and mask) at strength 0.6 over 3 steps, its matrix plus two more strengths."""

    def inputs() -> dict[str, Any]:
        image = {"image": tiny_image(), "strength": 0.6, "num_inference_steps": 3}
        return {**setup.inputs(), **image, **({"mask_image": tiny_mask()} if mask else {})}

    strengths = (
        ("strength_0.9", {"strength": 0.9}),
        ("strength_1.0_latent", {"strength": 1.0, "output_type": "latent"}),
    )
    return TinySetup(components=lambda: setup.components(seed=seed), inputs=inputs, cases=(*setup.cases, *strengths))


def _wan_video_to_video_components() -> dict[str, Any]:
    from diffusers import FlowMatchEulerDiscreteScheduler

    wan = wan_components(seed=18)
    kept = {name: wan[name] for name in ("tokenizer", "text_encoder", "transformer", "vae")}
    return {**kept, "scheduler": FlowMatchEulerDiscreteScheduler(shift=3.0)}


WAN_VIDEO_TO_VIDEO = TinySetup(
    components=_wan_video_to_video_components,
    inputs=lambda: {
        **{k: v for k, v in WAN.inputs().items() if k != "num_frames"},
        "video": [tiny_image(16)] * 5,
        "strength": 0.7,
    },
    cases=(
        ("default", {}),
        ("cfg_off", {"guidance_scale": 1.0}),
        ("strength_1.0_negative", {"strength": 1.0, "negative_prompt": "blurry"}),
        (
            "two_prompts_negatives_latent",
            {"prompt": _TWO_PROMPTS, "negative_prompt": _TWO_NEGATIVES, "output_type": "latent"},
        ),
    ),
)

FLOW_SETUPS: dict[str, TinySetup] = {
    "WanVideoToVideoPipeline": WAN_VIDEO_TO_VIDEO,
    "FluxImg2ImgPipeline": _with_image(FLUX, mask=False, seed=13),
    "FluxInpaintPipeline": _with_image(FLUX, mask=True, seed=14),
    "QwenImageImg2ImgPipeline": _with_image(QWENIMAGE, mask=False, seed=15),
    "QwenImageInpaintPipeline": _with_image(QWENIMAGE, mask=True, seed=16),
    "AuraFlowPipeline": AURA_FLOW,
    "CogVideoXPipeline": COGVIDEOX,
    "HunyuanImagePipeline": HUNYUAN_IMAGE,
    "ZImageImg2ImgPipeline": _z_image_with_image(mask=False),
    "ZImageInpaintPipeline": _z_image_with_image(mask=True),
    "FluxKontextPipeline": FLUX_KONTEXT,
    "ZImagePipeline": Z_IMAGE,
    "WanPipeline": WAN,
    "FluxPipeline": FLUX,
    "QwenImagePipeline": QWENIMAGE,
}
