"""Tiny offline components and default inputs for the pipelines modularize knows how to verify.

Every factory seeds its own RNG (the caller's global RNG is left alone) and builds models small enough that a
2-step generation takes a fraction of a second on one CPU thread. Dimension couplings that matter: the text
encoder's `vocab_size` equals `len(tokenizer)`, CLIP's `model_max_length` is 77, and the text hidden size equals
the UNet's `cross_attention_dim`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .tiny_flow import FLOW_SETUPS
from .tiny_parts import FLOW_VAE, TinySetup, clip_text_config, seeded, tiny_image, tiny_mask, tiny_t5, tiny_vae
from .tiny_unconditional import UNCONDITIONAL_SETUPS
from .tokenizers import tiny_clip_tokenizer, tiny_gemma_tokenizer, tiny_t5_tokenizer


def stable_diffusion_components(
    seed: int = 0, in_channels: int = 4, time_cond_proj_dim: int | None = None
) -> dict[str, Any]:
    """UNet, VAE, CLIP text encoder and tokenizer for StableDiffusionPipeline, 32x32 images.

    `in_channels=9` gives the inpainting UNet (latents + mask + masked-image latents); `time_cond_proj_dim` a UNet
    that embeds the guidance scale (latent consistency models).
    """
    from diffusers import PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel

    tokenizer = tiny_clip_tokenizer()
    text_encoder = seeded(seed, lambda: CLIPTextModel(clip_text_config(tokenizer)).eval())
    unet = seeded(
        seed + 1,
        lambda: UNet2DConditionModel(
            sample_size=16,
            in_channels=in_channels,
            out_channels=4,
            block_out_channels=(32, 64),
            layers_per_block=1,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32,
            norm_num_groups=32,
            time_cond_proj_dim=time_cond_proj_dim,
        ).eval(),
    )
    vae = tiny_vae(seed + 2)
    # Stable Diffusion v1's scheduler settings, but `steps_offset=0`: an outdated config that the standard
    # pipeline's constructor fixes in place, which the generated pipeline has to reproduce.
    scheduler = PNDMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        skip_prk_steps=True,
        set_alpha_to_one=False,
        steps_offset=0,
    )
    return {
        "vae": vae,
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
        "unet": unet,
        "scheduler": scheduler,
        "safety_checker": None,
        "feature_extractor": None,
        "requires_safety_checker": False,
    }


def stable_diffusion_xl_components(seed: int = 0, in_channels: int = 4) -> dict[str, Any]:
    """Two CLIP text encoders (the second with projection), a text-time UNet and a VAE for SDXL, 32x32 images.

    The UNet's `cross_attention_dim` is both encoders' hidden sizes together (32 + 32), and its
    `projection_class_embeddings_input_dim` is 6 time ids x `addition_time_embed_dim` (8) + the pooled
    projection (32).
    """
    from diffusers import EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    tokenizer, tokenizer_2 = tiny_clip_tokenizer(), tiny_clip_tokenizer()
    text_encoder = seeded(seed, lambda: CLIPTextModel(clip_text_config(tokenizer)).eval())
    text_encoder_2 = seeded(seed + 1, lambda: CLIPTextModelWithProjection(clip_text_config(tokenizer_2)).eval())
    unet = seeded(
        seed + 2,
        lambda: UNet2DConditionModel(
            sample_size=16,
            in_channels=in_channels,
            out_channels=4,
            block_out_channels=(32, 64),
            layers_per_block=1,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            attention_head_dim=(2, 4),
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=8,
            transformer_layers_per_block=(1, 2),
            projection_class_embeddings_input_dim=6 * 8 + 32,
            cross_attention_dim=64,
            norm_num_groups=32,
        ).eval(),
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1, timestep_spacing="leading"
    )
    return {
        "vae": tiny_vae(seed + 3),
        "text_encoder": text_encoder,
        "text_encoder_2": text_encoder_2,
        "tokenizer": tokenizer,
        "tokenizer_2": tokenizer_2,
        "unet": unet,
        "scheduler": scheduler,
    }


def stable_diffusion_3_components(seed: int = 0, latent_channels: int = 4) -> dict[str, Any]:
    """Two projecting CLIP text encoders, a T5 encoder, an SD3 transformer and a VAE, 32x32 images.

    SD3 inpainting insists on SD3's real latent width: `latent_channels=16`.

    SD3 joins both CLIP hidden states (32 + 32), pads them to T5's width and stacks them on T5's sequence, so
    T5's `d_model` is the transformer's `joint_attention_dim` (64); the pooled projections join to 64 as well.
    """
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel
    from transformers import CLIPTextModelWithProjection

    tokenizer, tokenizer_2, tokenizer_3 = tiny_clip_tokenizer(), tiny_clip_tokenizer(), tiny_t5_tokenizer()
    text_encoder = seeded(seed, lambda: CLIPTextModelWithProjection(clip_text_config(tokenizer)).eval())
    text_encoder_2 = seeded(seed + 1, lambda: CLIPTextModelWithProjection(clip_text_config(tokenizer_2)).eval())
    transformer = seeded(
        seed + 2,
        lambda: SD3Transformer2DModel(
            sample_size=16,
            patch_size=1,
            in_channels=latent_channels,
            num_layers=1,
            attention_head_dim=8,
            num_attention_heads=4,
            joint_attention_dim=64,
            caption_projection_dim=32,
            pooled_projection_dim=64,
            out_channels=latent_channels,
        ).eval(),
    )
    vae = tiny_vae(seed + 3, latent_channels=latent_channels, **FLOW_VAE)
    return {
        "transformer": transformer,
        "scheduler": FlowMatchEulerDiscreteScheduler(),
        "vae": vae,
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
        "text_encoder_2": text_encoder_2,
        "tokenizer_2": tokenizer_2,
        "text_encoder_3": tiny_t5(tokenizer_3, seed + 4, d_model=64),
        "tokenizer_3": tokenizer_3,
    }


def pixart_sigma_components(seed: int = 0) -> dict[str, Any]:
    """A T5 encoder (width 32 = the transformer's `caption_channels`), a PixArt transformer with learned sigma
    (8 output channels for 4 latent ones) and a VAE, 32x32 images."""
    from diffusers import DPMSolverMultistepScheduler, PixArtTransformer2DModel

    tokenizer = tiny_t5_tokenizer()
    transformer = seeded(
        seed + 1,
        lambda: PixArtTransformer2DModel(
            sample_size=32,  # the smallest size with resolution bins (256 px)
            num_layers=2,
            patch_size=2,
            attention_head_dim=8,
            num_attention_heads=3,
            caption_channels=32,
            in_channels=4,
            cross_attention_dim=24,
            out_channels=8,
            attention_bias=True,
            activation_fn="gelu-approximate",
            num_embeds_ada_norm=1000,
            norm_type="ada_norm_single",
            norm_elementwise_affine=False,
            norm_eps=1e-6,
        ).eval(),
    )
    return {
        "tokenizer": tokenizer,
        "text_encoder": tiny_t5(tokenizer, seed),
        "vae": tiny_vae(seed + 2),
        "transformer": transformer,
        "scheduler": DPMSolverMultistepScheduler(),
    }


def sana_components(seed: int = 0) -> dict[str, Any]:
    """A Gemma 2 text model (hidden 8 = the transformer's `caption_channels`), a Sana transformer, a deep-compression
    autoencoder and a flow-matching scheduler, 32x32 images."""
    from diffusers import AutoencoderDC, FlowMatchEulerDiscreteScheduler, SanaTransformer2DModel
    from transformers import Gemma2Config, Gemma2Model

    tokenizer = tiny_gemma_tokenizer()
    config = Gemma2Config(
        head_dim=16,
        hidden_size=8,
        intermediate_size=64,
        max_position_embeddings=8192,
        num_attention_heads=2,
        num_hidden_layers=1,
        num_key_value_heads=2,
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        attn_implementation="eager",
    )
    transformer = seeded(
        seed + 1,
        lambda: SanaTransformer2DModel(
            patch_size=1,
            in_channels=4,
            out_channels=4,
            num_layers=1,
            num_attention_heads=2,
            attention_head_dim=4,
            num_cross_attention_heads=2,
            cross_attention_head_dim=4,
            cross_attention_dim=8,
            caption_channels=8,
            sample_size=16,  # the smallest size with resolution bins (512 px)
        ).eval(),
    )
    vae = seeded(
        seed + 2,
        lambda: AutoencoderDC(
            in_channels=3,
            latent_channels=4,
            attention_head_dim=2,
            encoder_block_types=("ResBlock", "EfficientViTBlock"),
            decoder_block_types=("ResBlock", "EfficientViTBlock"),
            encoder_block_out_channels=(8, 8),
            decoder_block_out_channels=(8, 8),
            encoder_qkv_multiscales=((), (5,)),
            decoder_qkv_multiscales=((), (5,)),
            encoder_layers_per_block=(1, 1),
            decoder_layers_per_block=(1, 1),
            downsample_block_type="conv",
            upsample_block_type="interpolate",
            decoder_norm_types="rms_norm",
            decoder_act_fns="silu",
            scaling_factor=0.41407,
        ).eval(),
    )
    return {
        "tokenizer": tokenizer,
        "text_encoder": seeded(seed, lambda: Gemma2Model(config).eval()),
        "vae": vae,
        "transformer": transformer,
        "scheduler": FlowMatchEulerDiscreteScheduler(shift=7.0),
    }


def _sdxl_pipeline_components() -> dict[str, Any]:
    """Constructor arguments of StableDiffusionXLPipeline (no watermark, whatever is installed)."""
    return {**stable_diffusion_xl_components(seed=6), "add_watermarker": False}


_TWO_PROMPTS = ["a photo of a cat", "the dog and the moon"]
_TWO_NEGATIVES = ["blurry", "low quality"]

STABLE_DIFFUSION = TinySetup(
    components=stable_diffusion_components,
    inputs=lambda: {"prompt": "a photo of a cat", "num_inference_steps": 2, "output_type": "np"},
    cases=(
        ("default", {}),
        ("cfg_off", {"guidance_scale": 1.0}),
        ("rescale", {"guidance_rescale": 0.7}),
        ("scale_and_rescale", {"guidance_scale": 5.0, "guidance_rescale": 0.5}),
        ("negative_prompt", {"negative_prompt": "blurry"}),
        ("two_prompts", {"prompt": _TWO_PROMPTS}),
        ("two_images_per_prompt", {"num_images_per_prompt": 2}),
        (
            "two_prompts_x2_negatives_rescale_3_steps",
            {
                "prompt": _TWO_PROMPTS,
                "negative_prompt": _TWO_NEGATIVES,
                "num_images_per_prompt": 2,
                "guidance_rescale": 0.7,
                "num_inference_steps": 3,
            },
        ),
        ("latent", {"output_type": "latent", "prompt": _TWO_PROMPTS, "num_images_per_prompt": 2}),
        (
            "cfg_off_two_prompts_x2_latent",
            {"guidance_scale": 1.0, "prompt": _TWO_PROMPTS, "num_images_per_prompt": 2, "output_type": "latent"},
        ),
        ("cfg_off_rescale", {"guidance_scale": 1.0, "guidance_rescale": 0.7}),
        ("ddim_eta", {"scheduler": "DDIMScheduler", "eta": 0.5, "num_inference_steps": 3}),
        (
            "ddim_eta_rescale_two_prompts_x2",
            {
                "scheduler": "DDIMScheduler",
                "eta": 1.0,
                "guidance_rescale": 0.7,
                "prompt": _TWO_PROMPTS,
                "negative_prompt": _TWO_NEGATIVES,
                "num_images_per_prompt": 2,
            },
        ),
        (
            "ddim_cfg_off_latent",
            {"scheduler": "DDIMScheduler", "eta": 0.5, "guidance_scale": 1.0, "output_type": "latent"},
        ),
        # Euler scales the model input by its sigma: a lost `scale_model_input` shows here
        ("euler", {"scheduler": "EulerDiscreteScheduler", "num_inference_steps": 3}),
    ),
)


def _image_cases(strengths: tuple[float, float]) -> tuple[tuple[str, dict[str, Any]], ...]:
    """The matrix of the Stable Diffusion image pipelines: CFG off and on, prompts and images per prompt, outputs,
    two strengths, the DDIM scheduler with `eta`."""
    low, high = strengths
    return (
        ("default", {}),
        ("cfg_off", {"guidance_scale": 1.0}),
        ("negative_prompt", {"negative_prompt": "blurry"}),
        (f"strength_{low}", {"strength": low}),
        (f"strength_{high}_two_prompts_x2", {"strength": high, "prompt": _TWO_PROMPTS, "num_images_per_prompt": 2}),
        (
            "two_prompts_negatives_latent",
            {"prompt": _TWO_PROMPTS, "negative_prompt": _TWO_NEGATIVES, "output_type": "latent"},
        ),
        ("cfg_off_x2_latent", {"guidance_scale": 1.0, "num_images_per_prompt": 2, "output_type": "latent"}),
        ("ddim_eta", {"scheduler": "DDIMScheduler", "eta": 0.5}),
        ("euler", {"scheduler": "EulerDiscreteScheduler", "strength": low}),
    )


def _image_to_image_components() -> dict[str, Any]:
    return stable_diffusion_components(seed=4)


def _inpainting_components() -> dict[str, Any]:
    return stable_diffusion_components(seed=5, in_channels=9)


STABLE_DIFFUSION_IMG2IMG = TinySetup(
    components=_image_to_image_components,
    inputs=(
        lambda: {"prompt": "a photo of a cat", "image": tiny_image(), "num_inference_steps": 3, "output_type": "np"}
    ),
    cases=_image_cases((0.5, 0.9)),
)

STABLE_DIFFUSION_INPAINT = TinySetup(
    components=_inpainting_components,
    inputs=(
        lambda: {
            "prompt": "a photo of a cat",
            "image": tiny_image(),
            "mask_image": tiny_mask(),
            "num_inference_steps": 3,
            "output_type": "np",
        }
    ),
    cases=_image_cases((0.75, 1.0)),
)

STABLE_DIFFUSION_XL = TinySetup(
    components=_sdxl_pipeline_components,
    inputs=lambda: {"prompt": "a photo of a cat", "num_inference_steps": 2, "output_type": "np"},
    cases=(
        ("default", {}),
        ("cfg_off", {"guidance_scale": 1.0}),
        ("rescale", {"guidance_rescale": 0.7}),
        ("negative_prompt", {"negative_prompt": "blurry"}),
        ("two_prompts", {"prompt": _TWO_PROMPTS}),
        ("two_images_per_prompt", {"num_images_per_prompt": 2}),
        (
            "two_prompts_x2_negatives_rescale_3_steps",
            {
                "prompt": _TWO_PROMPTS,
                "negative_prompt": _TWO_NEGATIVES,
                "num_images_per_prompt": 2,
                "guidance_rescale": 0.7,
                "num_inference_steps": 3,
            },
        ),
        ("latent", {"output_type": "latent", "prompt": _TWO_PROMPTS, "num_images_per_prompt": 2}),
        ("cfg_off_x2_latent", {"guidance_scale": 1.0, "num_images_per_prompt": 2, "output_type": "latent"}),
        ("negative_sizes_one_image", {"negative_original_size": (24, 24), "negative_target_size": (32, 32)}),
        ("second_prompts", {"prompt_2": "a dog", "negative_prompt_2": "blurry"}),
        ("ddim_eta", {"scheduler": "DDIMScheduler", "eta": 0.5}),
    ),
)


def _text_to_image_cases(rescale: bool, extra: tuple = ()) -> tuple[tuple[str, dict[str, Any]], ...]:
    """CFG off and on, a negative prompt, 1 and 2 prompts, 2 images per prompt, latent and decoded outputs."""
    cases = [
        ("default", {}),
        ("cfg_off", {"guidance_scale": 1.0}),
        ("negative_prompt", {"negative_prompt": "blurry"}),
        ("two_prompts_negatives", {"prompt": _TWO_PROMPTS, "negative_prompt": _TWO_NEGATIVES}),
        ("two_images_per_prompt", {"num_images_per_prompt": 2}),
        ("two_prompts_x2_3_steps", {"prompt": _TWO_PROMPTS, "num_images_per_prompt": 2, "num_inference_steps": 3}),
        ("latent", {"output_type": "latent", "prompt": _TWO_PROMPTS}),
        ("cfg_off_x2_latent", {"guidance_scale": 1.0, "num_images_per_prompt": 2, "output_type": "latent"}),
    ]
    if rescale:
        cases.append(("rescale", {"guidance_rescale": 0.7, "num_images_per_prompt": 2}))
    return (*cases, *extra)


STABLE_DIFFUSION_3 = TinySetup(
    components=stable_diffusion_3_components,
    inputs=lambda: {"prompt": "a photo of a cat", "num_inference_steps": 2, "output_type": "np"},
    cases=_text_to_image_cases(rescale=False, extra=(("prompt_3", {"prompt_3": "a dog", "negative_prompt_3": "x"}),)),
)

# Resolution binning generates at the closest real size (256 or 512 px) and resizes back: one case has it on
_BINNING = ("resolution_binning_24x40", {"use_resolution_binning": True, "height": 24, "width": 40})

PIXART_SIGMA = TinySetup(
    components=pixart_sigma_components,
    inputs=lambda: {
        "prompt": "a photo of a cat",
        "num_inference_steps": 2,
        "output_type": "np",
        "height": 32,
        "width": 32,
        "use_resolution_binning": False,
    },
    cases=_text_to_image_cases(rescale=False, extra=(_BINNING,)),
)

SANA = TinySetup(
    components=sana_components,
    inputs=lambda: {
        "prompt": "a photo of a cat",
        "num_inference_steps": 2,
        "output_type": "np",
        "height": 32,
        "width": 32,
        "max_sequence_length": 48,
        "use_resolution_binning": False,
    },
    cases=_text_to_image_cases(
        rescale=False, extra=(("no_complex_human_instruction", {"complex_human_instruction": None}), _BINNING)
    ),
)


def _image_inputs(mask: bool = False, **extra: Any) -> Callable[[], dict[str, Any]]:
    def inputs() -> dict[str, Any]:
        base = {"prompt": "a photo of a cat", "image": tiny_image(), "num_inference_steps": 3, "output_type": "np"}
        return {**base, **({"mask_image": tiny_mask()} if mask else {}), **extra}

    return inputs


def _sdxl_image_cases(strengths: tuple[float, float]) -> tuple[tuple[str, dict[str, Any]], ...]:
    """The image matrix without DDIM's `eta` (SDXL's scheduler is Euler; `eta` is only a DDIM argument)."""
    return tuple(case for case in _image_cases(strengths) if case[0] != "ddim_eta")


STABLE_DIFFUSION_XL_IMG2IMG = TinySetup(
    components=lambda: {**stable_diffusion_xl_components(seed=7), "add_watermarker": False},
    inputs=_image_inputs(strength=0.6),  # SDXL's default 0.3 leaves no step of 3
    cases=_sdxl_image_cases((0.5, 0.9)),
)

# a 4-channel UNet: the inpainting branch that blends the image latents back in after every step
STABLE_DIFFUSION_XL_INPAINT = TinySetup(
    components=lambda: {**stable_diffusion_xl_components(seed=8), "add_watermarker": False},
    inputs=_image_inputs(mask=True),
    cases=_sdxl_image_cases((0.75, 1.0)),
)

STABLE_DIFFUSION_3_IMG2IMG = TinySetup(
    components=lambda: stable_diffusion_3_components(seed=9),
    inputs=_image_inputs(),
    cases=tuple(case for case in _image_cases((0.6, 0.9)) if case[0] not in ("ddim_eta", "euler")),
)

STABLE_DIFFUSION_3_INPAINT = TinySetup(
    components=lambda: stable_diffusion_3_components(seed=10, latent_channels=16),
    inputs=_image_inputs(mask=True),
    cases=tuple(case for case in _image_cases((0.75, 1.0)) if case[0] not in ("ddim_eta", "euler")),
)


def _latent_consistency_components() -> dict[str, Any]:
    from diffusers import LCMScheduler

    components = stable_diffusion_components(seed=17, time_cond_proj_dim=32)
    return {**components, "scheduler": LCMScheduler.from_config(components["scheduler"].config)}


# guidance-distilled: the UNet embeds `guidance_scale` (`w`), there is no CFG and no guider
LATENT_CONSISTENCY = TinySetup(
    components=_latent_consistency_components,
    inputs=lambda: {"prompt": "a photo of a cat", "num_inference_steps": 2, "output_type": "np"},
    cases=(
        ("default", {}),
        ("guidance_2_3_steps", {"guidance_scale": 2.0, "num_inference_steps": 3}),
        ("two_prompts_x2_latent", {"prompt": _TWO_PROMPTS, "num_images_per_prompt": 2, "output_type": "latent"}),
        ("original_steps", {"original_inference_steps": 20, "num_inference_steps": 4}),
    ),
)

SETUPS: dict[str, TinySetup] = {
    "LatentConsistencyModelPipeline": LATENT_CONSISTENCY,
    **FLOW_SETUPS,
    **UNCONDITIONAL_SETUPS,
    "StableDiffusionXLImg2ImgPipeline": STABLE_DIFFUSION_XL_IMG2IMG,
    "StableDiffusionXLInpaintPipeline": STABLE_DIFFUSION_XL_INPAINT,
    "StableDiffusion3Img2ImgPipeline": STABLE_DIFFUSION_3_IMG2IMG,
    "StableDiffusion3InpaintPipeline": STABLE_DIFFUSION_3_INPAINT,
    "SanaPipeline": SANA,
    "StableDiffusion3Pipeline": STABLE_DIFFUSION_3,
    "PixArtSigmaPipeline": PIXART_SIGMA,
    "StableDiffusionXLPipeline": STABLE_DIFFUSION_XL,
    "StableDiffusionPipeline": STABLE_DIFFUSION,
    "StableDiffusionImg2ImgPipeline": STABLE_DIFFUSION_IMG2IMG,
    "StableDiffusionInpaintPipeline": STABLE_DIFFUSION_INPAINT,
}


def setup_for(class_name: str) -> TinySetup | None:
    return SETUPS.get(class_name)
