"""Per-pipeline overrides, as data: what a constructor's type hints cannot say.

Keyed by standard pipeline class name. Each entry may hold:
- `classes`: component argument -> class name to build instead of the hinted one (or None to leave it out), for
  hints too generic to build (`PreTrainedModel`);
- `scheduler`: the scheduler class for a generic scheduler hint (`KarrasDiffusionSchedulers`, `SchedulerMixin`);
- `config`: component argument -> constructor keyword arguments merged over the factory's;
- `text_widths`: text encoder argument -> its width, where one differs from `dims.text_hidden`;
- `scalars`: constructor scalars other than their defaults;
- `dtypes`: component argument -> torch dtype name it is cast to (a pipeline that casts its inputs to one);
- `register`: component argument -> config entries registered on it after it is built (a pipeline reads a
  config entry the class does not define);
- `inputs`: call inputs merged over the ones derived from the `__call__` signature (`specs.Noise` / `specs.Mask`
  describe tensors and masks, made when the inputs are);
- `cases`: extra `(name, overrides)` cases for the matrix; `drop_cases`: names of matrix cases to leave out;
- `one_per_prompt`: inputs the pipeline takes one of per prompt (a case with N prompts gets N of them).
"""

from __future__ import annotations

from typing import Any

from .specs import Image, Mask, Noise

# Channel counts below are in units of the shared dims: latent channels 4 (packed 2x2: 16), the tiny Wan VAE's
# temporal compression 2, the image VAEs' spatial scale 2.
_FLUX_CONTROL = {"config": {"transformer": {"in_channels": 32, "out_channels": 16}}}  # packed latents + control
_TWICE_THE_LATENTS = {"config": {"transformer": {"in_channels": 8, "out_channels": 4}}}  # latents + condition
_WAN_IMAGE_TO_VIDEO = {  # latents + mask (one channel per temporally compressed frame) + image latents
    "config": {"transformer": {"in_channels": 10, "out_channels": 4, "image_dim": 32}},
}
# Wan VACE generates one video from one prompt (a list of prompts, or more videos per prompt, are refused upstream):
# the latent case with one prompt, and its own conditions instead: a mask over the (default) conditioning video (one
# mask frame per video frame: 2 latent frames after the first, temporal compression 2), a reference image, a second
# conditioning scale
_WAN_VACE = {
    "drop_cases": ("two_prompts_x2", "cfg_off_latent"),
    "cases": (
        ("cfg_off_latent", {"guidance_scale": 1.0, "output_type": "latent"}),
        ("mask", {"mask": [Mask(16)] * 5}),
        ("reference_image", {"reference_images": Image(16)}),
        ("conditioning_scale_0.5", {"conditioning_scale": 0.5}),
    ),
}
# InstructPix2Pix: latents + image latents; guidance over three batches (text and image, image, neither), on only
# while `image_guidance_scale >= 1`: a second image scale, one below 1 (guidance off), and two prompts with a
# negative one over 3 steps
_INSTRUCT_PIX2PIX = {
    "config": {"unet": {"in_channels": 8}},
    "cases": (
        ("image_guidance_scale_2", {"image_guidance_scale": 2.0}),
        ("image_guidance_scale_below_1", {"image_guidance_scale": 0.5}),
        (
            "two_prompts_negative_3_steps",
            {
                "prompt": ["a photo of a cat", "the dog and the moon"],
                "negative_prompt": ["blurry", "low quality"],
                "num_inference_steps": 3,
            },
        ),
    ),
}
# Marigold: latents + image latents; its defaults come from the checkpoint's config (none here): a tiny resolution
# and 2 steps. Two images in batches of one run its loop around the denoising loop twice (an ensemble of more than
# one prediction needs scipy, which is not installed). Its outputs are pixels only (no `latent` output type).
_MARIGOLD = {
    "config": {"unet": {"in_channels": 8}},
    "drop_cases": ("latent",),
    "scalars": {"default_denoising_steps": 2, "default_processing_resolution": 32},
    "cases": (("two_images_in_batches_of_1", {"image": [Image(32), Image(32)], "batch_size": 1}),),
}
# CogVideoX's `__call__` resets `num_videos_per_prompt` to 1, which the generated package refuses instead
_ONE_VIDEO_PER_PROMPT = {
    "drop_cases": ("two_prompts_x2",),
    "cases": (("two_prompts_negatives", {"prompt": ["a cat", "the dog and the moon"], "negative_prompt": "blurry"}),),
}

# aMUSEd's image-to-image and inpainting encode the images they are given, one per prompt (they repeat them per
# image of a prompt, not to the number of prompts): the matrix's two-prompt cases come with two images (and masks)
_TWO_PROMPTS = ["a photo of a cat", "the dog and the moon"]
_AMUSED_IMG2IMG = {
    "drop_cases": ("two_prompts_x2", "cfg_off_latent"),
    "cases": (
        (
            "two_prompts_x2",
            {
                "prompt": _TWO_PROMPTS,
                "negative_prompt": ["blurry", "low quality"],
                "num_images_per_prompt": 2,
                "image": [Image(32), Image(32)],
            },
        ),
        (
            "cfg_off_latent",
            {"prompt": _TWO_PROMPTS, "guidance_scale": 1.0, "output_type": "latent", "image": [Image(32), Image(32)]},
        ),
    ),
}
_AMUSED_INPAINT = {
    "drop_cases": _AMUSED_IMG2IMG["drop_cases"],
    "cases": tuple(
        (name, {**values, "mask_image": [Mask(32), Mask(32)]}) for name, values in _AMUSED_IMG2IMG["cases"]
    ),
}

# Z-Image's constructor hints `PreTrainedModel` / `AutoTokenizer`: the Qwen3 text model it is used with
_Z_IMAGE = {"classes": {"text_encoder": "Qwen3Model", "tokenizer": "Qwen2Tokenizer"}}
# SD3 adds a ControlNet's outputs only to blocks that update the text stream: its last block does not, so a
# one-block transformer would ignore the ControlNet; the ControlNet mirrors the 2 blocks
_SD3_CONTROLNET = {"text_widths": {"text_encoder_3": 64}, "config": {"transformer": {"num_layers": 2}}}
# ControlNet-Union takes one control image per control type it is told (`control_mode`: the type's index; its
# `None` default is refused): one image, of the first type
# Its guess mode fails with CFG on (diffusers 0.42: the control types are repeated to the doubled CFG batch, the
# ControlNet runs on the conditional half), so the standard pipeline has no guess-mode output to compare with
_CONTROLNET_UNION = {"inputs": {"control_mode": 0}, "drop_cases": ("guess_mode", "guess_mode_two_prompts_x2")}
# CogView4 shifts its schedule by the image's token count (`mu`), linearly: its scheduler config (the class's
# defaults shift nothing); the control pipeline joins the control image's latents to the latents (4 + 4 channels)
_COGVIEW4_SCHEDULER = {
    "use_dynamic_shifting": True,
    "time_shift_type": "linear",
    "base_shift": 0.25,
    "max_shift": 0.75,
    "base_image_seq_len": 256,
}
_COGVIEW4 = {"config": {"scheduler": _COGVIEW4_SCHEDULER}}
_COGVIEW4_CONTROL = {"config": {**_TWICE_THE_LATENTS["config"], "scheduler": _COGVIEW4_SCHEDULER}}
# HunyuanDiT's pipelines compute the rotary grid as `height // 8 // patch_size`: a 4-level VAE (scale 8) on 64-pixel
# images, so the grid is the latents' (8 x 8, 4 x 4 patches of 2)
_HUNYUAN_DIT = {"dims": {"vae_block_out": (8, 8, 8, 8), "vae_norm_groups": 4, "image_size": 64}}
# ControlNet-XS copies the UNet's down blocks two resnets at a time
_CONTROLNET_XS = {"config": {"unet": {"layers_per_block": 2}}}

# QwenImage-Edit encodes its input image resized to ~1 megapixel whatever the output size: a VAE that compresses
# 16x (attention over 64 x 64 latents, not 512 x 512) with narrow convolutions at full resolution
_QWENIMAGE_EDIT = {"config": {"vae": {"base_dim": 2, "dim_mult": [1, 2, 4, 4, 4], "temperal_downsample": [False] * 4}}}

# JoyImage-Edit renders at one of its 1024-pixel resolution buckets whatever size it is asked for (no side under
# 512): a Wan VAE that compresses 32x and says so (`scale_factor_spatial`, which the pipeline reads): it folds 8 x 8
# pixel patches into channels first (`patch_size`, as Wan 2.2's does with 2 x 2), so its convolutions run at 128 x 128
# at most, then downsamples twice (32 x 32 latents, 16 x 16 transformer patches); the image-free (text-to-image)
# path as one more case
_JOY_IMAGE_EDIT = {
    "config": {
        "vae": {
            "patch_size": 8,
            "in_channels": 3 * 8 * 8,
            "out_channels": 3 * 8 * 8,
            "base_dim": 4,
            "dim_mult": [1, 2, 2],
            "temperal_downsample": [False] * 2,
            "scale_factor_spatial": 8 * 4,
        }
    },
    "cases": (("text_to_image", {"image": None}),),
}

# GLM-Image normalizes latents with the VAE's per-channel `latents_mean` / `latents_std` (the tiny image VAE has
# none). Text-to-image only: with an `image` (editing) the standard pipeline fails with the installed transformers
# (diffusers 0.42 concatenates the per-image features `get_image_features` returns into one tensor, which
# transformers 5's `get_image_tokens` then iterates channel by channel)
_GLM_IMAGE = {
    "config": {"vae": {"latents_mean": [0.1, -0.2, 0.3, 0.0], "latents_std": [1.5, 2.0, 1.2, 0.8]}},
    "inputs": {"image": None},
}

# DeepFloyd IF denoises pixels (3 channels) and its UNet predicts a learned variance besides the noise (the
# scheduler's `learned_range`); the super-resolution stages take the upscaled image as 3 more input channels and
# embed the noise level they add to it as a class label
_VISUAL_CLOZE = {
    "scalars": {"resolution": 32},
    "config": {"transformer": {"in_channels": 48, "out_channels": 16}},
    "inputs": {
        "task_prompt": "make the second image from the first",
        "content_prompt": "a photo of a cat",
        "image": [[Image(32), Image(32)], [Image(32), None]],
    },
}
_IF = {"config": {"unet": {"in_channels": 3, "out_channels": 6}}}
_IF_SUPER_RESOLUTION = {"config": {"unet": {"in_channels": 6, "out_channels": 6, "class_embed_type": "timestep"}}}

# Kandinsky 2.2's decoder UNet is conditioned on image embeddings alone (projected into its cross-attention) and
# predicts a learned variance; the prior's embeddings are call inputs
_KANDINSKY_22 = {
    "config": {
        "unet": {
            "out_channels": 8,
            "addition_embed_type": "image",
            "encoder_hid_dim": 32,
            "encoder_hid_dim_type": "image_proj",
            "cross_attention_dim": 32,
            "down_block_types": ("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
            "up_block_types": ("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
            "mid_block_type": "UNetMidBlock2DSimpleCrossAttn",
            "resnet_time_scale_shift": "scale_shift",
        }
    },
    "inputs": {"image_embeds": Noise((1, 32)), "negative_image_embeds": Noise((1, 32), seed=1)},
    # two embeddings (the prior's two prompts) x 2 images each
    "cases": (
        (
            "two_embeddings_x2",
            {
                "image_embeds": Noise((2, 32)),
                "negative_image_embeds": Noise((2, 32), seed=1),
                "num_images_per_prompt": 2,
            },
        ),
    ),
}

_KANDINSKY_22_HINT = {
    **_KANDINSKY_22,
    # (the encoded hint joins the latents' channels: 4 + 4)
    "config": {"unet": {**_KANDINSKY_22["config"]["unet"], "addition_embed_type": "image_hint", "in_channels": 8}},
    "inputs": {**_KANDINSKY_22["inputs"], "hint": Noise((1, 3, 128, 128), seed=2)},
    "cases": (),
}

# Pipelines whose output types are decoded images (or embeddings) only: the matrix's latent case is a two-prompt
# case without CFG of their default output type instead
_NO_LATENT_OUTPUT = {
    "drop_cases": ("cfg_off_latent",),
    "cases": (("cfg_off_two_prompts", {"prompt": _TWO_PROMPTS, "guidance_scale": 1.0}),),
}

# Kandinsky 2.1's decoder UNet adds the prompt's projected embedding and the image embedding to the time embedding
# and prepends the projected image embedding to the text hidden states (both `clip_projection` wide, the hidden
# states `text_hidden` wide: all 32), and predicts a learned variance; the prior's embeddings are call inputs (one
# per prompt, from `inputs.EMBEDDINGS`)
_KANDINSKY_21 = {
    **_NO_LATENT_OUTPUT,
    "config": {
        "unet": {
            **_KANDINSKY_22["config"]["unet"],
            "addition_embed_type": "text_image",
            "encoder_hid_dim_type": "text_image_proj",
        }
    },
}
_PRIOR_STEPS = {"prior_num_inference_steps": 2}
# Stable Cascade / Würstchen priors: a 3 x 5 grid of image features (`resolution_multiple` 42.67)
_CASCADE_PRIOR_SIZE = {"height": 128, "width": 192}
_TWO_PROMPTS_X2 = {"prompt": _TWO_PROMPTS, "num_images_per_prompt": 2}
# ... and their decoders, from a prior's 3 x 6 grid of image features to latents 10.67 times as large (32 x 64:
# Würstchen's decoder halves them twice); their guidance is off by default (scale 0). A decoder makes one image per
# feature grid: Stable Cascade's as many per prompt as it has grids per prompt (two prompts with the grids of 2
# images each, as a prior makes them), Würstchen's takes one prompt for all its grids (it repeats each prompt's
# states per grid: two prompts fail upstream); `num_images_per_prompt` > 1 repeats the latents but not the features
# (upstream fails it)
_CASCADE_DECODER = {
    "inputs": {"image_embeddings": Noise((1, 16, 3, 6), seed=1)},
    "drop_cases": ("two_prompts_x2", "cfg_off_latent"),
    "cases": (
        ("cfg", {"guidance_scale": 4.0}),
        ("cfg_negative_prompt", {"guidance_scale": 4.0, "negative_prompt": "blurry"}),
        ("latent", {"output_type": "latent"}),
    ),
}
_STABLE_CASCADE_DECODER = {
    **_CASCADE_DECODER,
    "cases": (
        *_CASCADE_DECODER["cases"],
        ("two_prompts_x2", {"prompt": _TWO_PROMPTS, "guidance_scale": 4.0, "image_embeddings": Noise((4, 16, 3, 6))}),
    ),
}
_WUERSTCHEN_DECODER = {
    **_CASCADE_DECODER,
    "cases": (
        *_CASCADE_DECODER["cases"],
        ("two_images", {"guidance_scale": 4.0, "image_embeddings": Noise((2, 16, 3, 6))}),
    ),
}
# image-to-image encodes one image per prompt (its latents must already have the batch of the prompts)
_KANDINSKY_21_IMG2IMG = {**_KANDINSKY_21, "one_per_prompt": ("image",)}
# inpainting: latents + masked-image latents + the mask in (4 + 4 + 1), one image and mask per prompt
_INPAINT_UNET = {"in_channels": 9, "out_channels": 8}
_KANDINSKY_21_INPAINT = {
    **_KANDINSKY_21,
    "config": {"unet": {**_KANDINSKY_21["config"]["unet"], **_INPAINT_UNET}},
    "one_per_prompt": ("image", "mask_image"),
}
_KANDINSKY_22_INPAINT_UNET = {"unet": {**_KANDINSKY_22["config"]["unet"], **_INPAINT_UNET}}

_SHAP_E = {
    "config": {
        "scheduler": {
            "beta_schedule": "exp",
            "num_train_timesteps": 1024,
            "prediction_type": "sample",
            "use_karras_sigmas": True,
            "clip_sample": True,
            "clip_sample_range": 1.0,
        }
    }
}

# AudioLDM and MusicLDM generate `audio_length_in_s` seconds (their default is as long as the UNet's sample size): a
# 2-second clip is 8 spectrogram frames of the tiny vocoder (4 latent frames)
_SHORT_SPECTROGRAM = {"inputs": {"audio_length_in_s": 2.0}}

# BLIP-Diffusion generates a subject from a reference image (its category read by the Q-Former, another category
# named in the prompt); one of each per prompt (a list of prompts with one subject would be cut short by `zip`). Its
# image processor decodes to "pil" / "np" / "pt" only (no latents), and its negative prompt is `neg_prompt`. Its
# PNDM scheduler steps PLMS alone, as Stable Diffusion's does (its Runge-Kutta warm-up needs more than 2 steps)
_BLIP_SUBJECT = {
    "reference_image": Image(32),
    "source_subject_category": "cat",
    "target_subject_category": "cat",
}
_BLIP_TWO_SUBJECTS = {
    "prompt": _TWO_PROMPTS,
    "reference_image": [Image(32), Image(48)],
    "source_subject_category": ["cat", "dog"],
    "target_subject_category": ["cat", "dog"],
}
_BLIP_DIFFUSION = {
    "config": {"scheduler": {"skip_prk_steps": True, "set_alpha_to_one": False}},
    "inputs": _BLIP_SUBJECT,
    "drop_cases": ("cfg_off_latent",),
    "cases": (
        ("neg_prompt", {"neg_prompt": "blurry"}),
        ("prompt_strength", {"prompt_strength": 0.5, "prompt_reps": 3}),
        ("two_subjects", _BLIP_TWO_SUBJECTS),
        ("two_subjects_cfg_off_pt", {**_BLIP_TWO_SUBJECTS, "guidance_scale": 1.0, "output_type": "pt"}),
    ),
}
# (and the control image, `condtioning_image` as its signature spells it)
_BLIP_DIFFUSION_CONTROLNET = {**_BLIP_DIFFUSION, "inputs": {**_BLIP_SUBJECT, "condtioning_image": Image(32)}}

# SparseCtrl conditions a clip on a few of its frames (`conditioning_frames`, whose `None` default fails), placed at
# `controlnet_frame_indices` (default: the first frame alone); its ControlNet sees only them and the mask of which
# frames are given. The default (3 frames) conditions the first one; a case gives two different frames, the first and
# the last, so the mask and the frame placement are checked too.
# Its guess mode fails with CFG on (diffusers 0.42: the ControlNet runs on the conditional half, and its residuals,
# never padded for the unconditional half, are added to the whole CFG batch), so the standard pipeline has no
# guess-mode output to compare with but without CFG (where guess mode still scales the residuals layer by layer)
# FreeInit (`pipe.enable_free_init()`, on both pipelines): the denoising loop runs again from re-noised latents,
# twice, with and without CFG
_FREE_INIT = {
    "cases": (
        ("free_init", {"pipeline_calls": (("enable_free_init", {"num_iters": 2}),)}),
        ("free_init_cfg_off", {"pipeline_calls": (("enable_free_init", {"num_iters": 2}),), "guidance_scale": 1.0}),
    ),
}
_GUESS_MODE_CFG_OFF = {
    "drop_cases": ("guess_mode", "guess_mode_two_prompts_x2"),
    "cases": (("guess_mode_cfg_off", {"guess_mode": True, "guidance_scale": 1.0}),),
}
_SPARSECTRL = {
    **_GUESS_MODE_CFG_OFF,
    "inputs": {"conditioning_frames": [Image(16)]},
    "cases": (
        ("two_sparse_frames", {"conditioning_frames": [Image(16), Mask(16)], "controlnet_frame_indices": [0, 2]}),
        *_GUESS_MODE_CFG_OFF["cases"],
        *_FREE_INIT["cases"],
    ),
}

# Kandinsky 5's video pipelines: 32-pixel frames, so the tiny HunyuanVideo VAE (spatial compression 8) gives 4 x 4
# latents and the transformer a 2 x 2 patch grid (16 pixels would leave one patch a frame, its rotary positions all 0)
_KANDINSKY5_VIDEO_SIZE = {"height": 32, "width": 32}
# The image pipelines make latents of `height // 8` whatever the VAE (`vae_scale_factor_spatial = 8`) and render at one
# of their resolution buckets (1024 x 1024 for a square) whatever size they are asked for: a 4-level VAE (scale 8)
# with 4-channel convolutions and no attention in its middle block (it would attend over 128 x 128 latent pixels), so
# the 1024-pixel images it encodes and decodes stay cheap
_KANDINSKY5_IMAGE = {
    "dims": {"vae_block_out": (4, 4, 4, 4), "vae_norm_groups": 4},
    "config": {"vae": {"mid_block_add_attention": False}},
}
# image to video / image to image: the transformer reads [latents | condition latents | condition mask]
_KANDINSKY5_VISUAL_COND = {"visual_cond": True}
# More than one output per prompt fails upstream in text to video (diffusers 0.42: the prompt embeddings are not
# repeated per video, the latents are) and in image to image (the image latents are not repeated per image): two
# prompts, one output each
_KANDINSKY5_ONE_PER_PROMPT = {
    "drop_cases": ("two_prompts_x2",),
    "cases": (("two_prompts_negatives", {"prompt": _TWO_PROMPTS, "negative_prompt": ["blurry", "low quality"]}),),
}

# LongCat-Image makes 16-channel latents whatever the VAE (`num_channels_latents = 16`): a VAE with 16 latent channels.
# Text to image rewrites the prompt by default (`enable_prompt_rewrite`): the text encoder generates 512 new tokens
# after a system prompt of ~10,000 (byte-level) tokens, and the generated text replaces the prompt. That is the real
# model's job (a tiny random one never stops early), and it takes tens of seconds on CPU: the inputs turn it off. Its
# CFG renormalization (on by default) as one more case, turned off
_LONGCAT_IMAGE = {
    "dims": {"latent_channels": 16},
    "inputs": {"enable_prompt_rewrite": False},
    "cases": (("cfg_renorm_off", {"enable_cfg_renorm": False}),),
}
# The editing pipeline renders at ~1 megapixel (1024 x 1024 for a square image) whatever the input's size: a 6-level
# VAE (scale 32) with 4-channel convolutions and no attention in its middle block, so the 1024-pixel image it encodes
# and decodes stays cheap and the transformer sees 16 x 16 patches of latents and as many of the image's. It takes
# one prompt per call (a list of more is refused by `check_inputs`): the matrix's two-prompt cases are one-prompt ones
_LONGCAT_IMAGE_EDIT = {
    "dims": {"latent_channels": 16, "vae_block_out": (4,) * 6, "vae_norm_groups": 4},
    "config": {"vae": {"mid_block_add_attention": False}},
    "drop_cases": ("two_prompts_x2", "cfg_off_latent"),
    "cases": (
        ("x2_negative", {"negative_prompt": "blurry", "num_images_per_prompt": 2}),
        ("cfg_off_latent", {"guidance_scale": 1.0, "output_type": "latent"}),
    ),
}

# The latent upsamplers upsample a video's latents (from the video, encoded) and decode them: matched to the input's
# statistics (AdaIN), tone-mapped; the tiny VAEs condition their decoders on a timestep, noising the latents with the
# generator before they decode them
_LATENT_UPSAMPLE = {
    "config": {"vae": {"timestep_conditioning": True}},
    "cases": (
        ("adain", {"adain_factor": 0.5}),
        ("tone_map", {"tone_map_compression_ratio": 0.5}),
        ("decode_timestep", {"decode_timestep": 0.05, "decode_noise_scale": 0.025}),
    ),
}

OVERRIDES: dict[str, dict[str, Any]] = {
    # its PAG path never sets `noise_pred_text`, which its rescale reads: the standard call raises with a rescale
    # (a diffusers bug), so the rescale is checked with PAG off
    "StableDiffusionPAGInpaintPipeline": {
        "drop_cases": ("rescale",),
        "cases": (("rescale_pag_off", {"guidance_rescale": 0.7, "pag_scale": 0.0}),),
    },
    # it hands its PAG combine the timestep expanded to the batch, whose adaptive scale then fails to compare with 0
    # (a diffusers bug): the adaptive scale cannot run there
    "PixArtSigmaPAGPipeline": {"drop_cases": ("pag_adaptive",)},
    "AudioLDMPipeline": _SHORT_SPECTROGRAM,
    # MusicLDM calls `text_encoder.get_text_features`, which the hint's first class (CLAP's text model) does not
    # have: the whole CLAP model, and its feature extractor (it scores generated waveforms against their prompt)
    "MusicLDMPipeline": {
        **_SHORT_SPECTROGRAM,
        "classes": {"text_encoder": "ClapModel", "feature_extractor": "ClapFeatureExtractor"},
    },
    # a clip inside the DiT's 2-second window, so the start / end conditioning and the crop to the clip both see
    # seconds other than the whole window's
    "StableAudioPipeline": {"inputs": {"audio_start_in_s": 0.5, "audio_end_in_s": 1.5}},
    "KandinskyPipeline": _KANDINSKY_21,
    "KandinskyImg2ImgPipeline": _KANDINSKY_21_IMG2IMG,
    "KandinskyInpaintPipeline": _KANDINSKY_21_INPAINT,
    # (one image and mask per image embedding)
    "KandinskyV22InpaintPipeline": {
        **_KANDINSKY_22,
        "config": _KANDINSKY_22_INPAINT_UNET,
        "cases": tuple(
            (name, {**values, "image": [Image(32)] * 2, "mask_image": [Mask(32)] * 2})
            for name, values in _KANDINSKY_22["cases"]
        ),
    },
    # prior and decoder in one: the decoders' UNets, a 2-step prior
    "KandinskyCombinedPipeline": {**_KANDINSKY_21, "inputs": _PRIOR_STEPS},
    "KandinskyImg2ImgCombinedPipeline": {**_KANDINSKY_21_IMG2IMG, "inputs": _PRIOR_STEPS},
    "KandinskyInpaintCombinedPipeline": {**_KANDINSKY_21_INPAINT, "inputs": _PRIOR_STEPS},
    "KandinskyV22CombinedPipeline": {"config": _KANDINSKY_22["config"], "inputs": _PRIOR_STEPS},
    "KandinskyV22Img2ImgCombinedPipeline": {"config": _KANDINSKY_22["config"], "inputs": _PRIOR_STEPS},
    "KandinskyV22InpaintCombinedPipeline": {"config": _KANDINSKY_22_INPAINT_UNET, "inputs": _PRIOR_STEPS},
    # the priors output image embeddings (`pt` or `np`)
    "KandinskyPriorPipeline": _NO_LATENT_OUTPUT,
    "KandinskyV22PriorPipeline": _NO_LATENT_OUTPUT,
    "KandinskyV22PriorEmb2EmbPipeline": _NO_LATENT_OUTPUT,
    # Shap-E's prior predicts the clean latent under its own Heun schedule; from an image, it encodes one image
    # (the pipeline reads only the first of a list): 2 assets of it
    "ShapEPipeline": _SHAP_E,
    "ShapEImg2ImgPipeline": {**_SHAP_E, "cases": (("x2", {"num_images_per_prompt": 2}),)},
    # Stable unCLIP: the image embedding is noised by a DDPM schedule of its own (unCLIP's cosine betas), and a case
    # noises it; text to image, its prior (a DDPM schedule predicting the clean embedding) makes the embedding
    "StableUnCLIPPipeline": {
        "classes": {"image_noising_scheduler": "DDPMScheduler", "prior_scheduler": "DDPMScheduler"},
        "config": {
            "image_noising_scheduler": {"beta_schedule": "squaredcos_cap_v2"},
            "prior_scheduler": {
                "beta_schedule": "squaredcos_cap_v2",
                "prediction_type": "sample",
                "clip_sample": True,
                "clip_sample_range": 5.0,
            },
        },
        "inputs": _PRIOR_STEPS,
        "cases": (("noise_level", {"noise_level": 250}),),
    },
    "StableUnCLIPImg2ImgPipeline": {
        "classes": {"image_noising_scheduler": "DDPMScheduler"},
        "config": {"image_noising_scheduler": {"beta_schedule": "squaredcos_cap_v2"}},
        "cases": (("noise_level", {"noise_level": 250}),),
    },
    # latents + masked-image latents + the mask (4 + 4 + 1 channels); no prompt: the example image's embedding is
    # what it cross-attends to (its `negative_prompt` is unused); 2 images of one example
    "PaintByExamplePipeline": {
        "config": {"unet": {"in_channels": 9}},
        "cases": (("x2", {"num_images_per_prompt": 2}),),
    },
    "KandinskyV22Pipeline": _KANDINSKY_22,
    "KandinskyV22Img2ImgPipeline": _KANDINSKY_22,
    # the ControlNet variants add a depth hint to the image embeddings (its encoder downsamples 8x to the latents)
    "KandinskyV22ControlnetPipeline": _KANDINSKY_22_HINT,
    "KandinskyV22ControlnetImg2ImgPipeline": _KANDINSKY_22_HINT,
    "QwenImageEditPipeline": _QWENIMAGE_EDIT,
    "QwenImageEditInpaintPipeline": _QWENIMAGE_EDIT,
    "QwenImageEditPlusPipeline": _QWENIMAGE_EDIT,
    "JoyImageEditPipeline": _JOY_IMAGE_EDIT,
    "GlmImagePipeline": _GLM_IMAGE,
    "ZImagePipeline": _Z_IMAGE,
    "ZImageImg2ImgPipeline": _Z_IMAGE,
    "ZImageInpaintPipeline": _Z_IMAGE,
    # condition images of 64 px at least, which it encodes in bfloat16 (`image.bfloat16()`)
    "ZImageOmniPipeline": {**_Z_IMAGE, "inputs": {"image": Image(64)}, "dtypes": {"vae": "bfloat16"}},
    # VisualCloze takes a task and a content prompt and, per sample, a grid of images: in-context examples above,
    # the query below with `None` where the image to generate goes; the transformer reads the packed latents, the
    # packed mask and the packed condition latents (3 x 16 channels) at the tiny resolution
    "VisualClozeGenerationPipeline": _VISUAL_CLOZE,
    # ... and the pipeline built of it and of FluxFill, which upsamples what it generates with the same transformer
    "VisualClozePipeline": {**_VISUAL_CLOZE, "inputs": {**_VISUAL_CLOZE["inputs"], "upsampling_strength": 0.5}},
    "IFPipeline": _IF,
    "IFImg2ImgPipeline": _IF,
    "IFInpaintingPipeline": _IF,
    "IFSuperResolutionPipeline": _IF_SUPER_RESOLUTION,
    "IFImg2ImgSuperResolutionPipeline": {**_IF_SUPER_RESOLUTION, "inputs": {"original_image": Image(32)}},
    "IFInpaintingSuperResolutionPipeline": {**_IF_SUPER_RESOLUTION, "inputs": {"original_image": Image(32)}},
    "StableDiffusionControlNetXSPipeline": _CONTROLNET_XS,
    "StableDiffusionXLControlNetXSPipeline": _CONTROLNET_XS,
    # DiffEdit takes what its `generate_mask()` and `invert()` would give: a latent-sized mask and the inverted
    # latents of the one step `inpaint_strength=0.8` keeps of 2 (batch 1, steps 1, 4 channels, 16 x 16)
    "StableDiffusionDiffEditPipeline": {"inputs": {"mask_image": Mask(16), "image_latents": Noise((1, 1, 4, 16, 16))}},
    # SANA-Sprint's hint says DPM-solver, its pipelines step an SCM scheduler (2 steps with intermediate timesteps)
    # and a transformer that embeds the guidance scale
    "SanaSprintPipeline": {"scheduler": "SCMScheduler", "config": {"transformer": {"guidance_embeds": True}}},
    "SanaSprintImg2ImgPipeline": {
        "scheduler": "SCMScheduler",
        "config": {"transformer": {"guidance_embeds": True}},
        "inputs": {"num_inference_steps": 2},
    },
    # ConsisID's face identity: the embedding (`id_cond`) and one scale of ViT features (`id_vit_hidden`), as its
    # transformer's `LFE_id_dim` / `LFE_vit_dim` (2) and `LFE_num_scale` (1) expect
    "ConsisIDPipeline": {"inputs": {"id_cond": Noise((1, 2)), "id_vit_hidden": [Noise((1, 2, 2), seed=1)]}},
    # a 1-second stereo clip at the tiny VAE's 16 samples per second
    "StableAudio3AudioToAudioPipeline": {"inputs": {"duration": 1.0, "audio": Noise((1, 2, 16))}},
    "StableAudio3InpaintPipeline": {  # repaint the middle of the clip
        "inputs": {"duration": 1.0, "audio": Noise((1, 2, 16)), "mask_start_seconds": 0.25, "mask_end_seconds": 0.75}
    },
    # a flow-matching model behind a generic scheduler hint
    "MotifVideoPipeline": {"scheduler": "FlowMatchEulerDiscreteScheduler"},
    "MotifVideoImage2VideoPipeline": {"scheduler": "FlowMatchEulerDiscreteScheduler"},
    # a camera trajectory of one pose per frame (`w-4`: the anchor and 4 steps forward, the 5 frames of two latent
    # frames after the first) and pinhole intrinsics [fx, fy, cx, cy] in the pixels of the 16-pixel first frame
    "SanaWMPipeline": {"inputs": {"action": "w-4", "intrinsics": [16.0, 16.0, 8.0, 8.0]}},
    # Helios generates 2 latent frames a chunk (3 frames at the tiny Wan VAE's temporal compression 2), so the 5
    # frames take two chunks: the chunk loop runs twice, the second chunk attending to the first as history. Text to
    # video by default (an image and a video together are refused); image to video, and video to video as cases.
    # The tiny Wan VAE encodes the first frame, then 4 frames at a time into 2 latent frames each, so a video chunk
    # (`(num_latent_frames_per_chunk - 1) x 2 + 1` frames) encodes to as many latent frames as a chunk has only for
    # 3 of them: 5 frames a chunk, 9 frames in two chunks. Its scheduler in one stage (the default three are the
    # pyramid pipeline's: one stage's `set_timesteps` looks up stage `None`), with the dynamic shift the pipeline
    # computes `mu` for. Its batch is the number of prompts whatever `num_videos_per_prompt` (a diffusers bug: the
    # prompt embeddings are repeated, the latents are not): two prompts, one video each
    "HeliosPipeline": {
        "config": {"scheduler": {"stages": 1, "stage_range": [0, 1], "use_dynamic_shifting": True}},
        "inputs": {"image": None, "video": None, "num_latent_frames_per_chunk": 2},
        "drop_cases": ("two_prompts_x2",),
        "cases": (
            ("two_prompts_negatives", {"prompt": _TWO_PROMPTS, "negative_prompt": "blurry"}),
            ("image_to_video", {"image": Image(16)}),
            ("video_to_video", {"video": [Image(16)] * 5, "num_latent_frames_per_chunk": 3, "num_frames": 9}),
        ),
    },
    # Mochi's latent statistics are 12 numbers, whatever the VAE
    "MochiPipeline": {"dims": {"latent_channels": 12}},
    # the video VAE of the hint's three (the first, deep-compression one, is an image VAE); sizes divisible by 32
    "SanaVideoPipeline": {"classes": {"vae": "AutoencoderKLWan"}, "inputs": {"height": 32, "width": 32}},
    "SanaImageToVideoPipeline": {"classes": {"vae": "AutoencoderKLWan"}, "inputs": {"height": 32, "width": 32}},
    # the hidden states of layer 1 (the default picks layers 9, 18 and 27 of a large model)
    "Flux2KleinInpaintPipeline": {"inputs": {"text_encoder_out_layers": (1,)}},
    "Flux2KleinPipeline": {"inputs": {"text_encoder_out_layers": (1,), "image": None}},  # text to image
    "Flux2Pipeline": {"inputs": {"text_encoder_out_layers": (1,), "image": None}},  # text to image
    # its default `clip_skip=1` reads `text_encoder.text_model`, which transformers 5's CLIPTextModel no longer has
    "I2VGenXLPipeline": {"inputs": {"clip_skip": None}},
    # the inpainting pipeline reads `transformer.config.guidance_embeds`, which Chroma's transformer does not define
    "ChromaInpaintPipeline": {"register": {"transformer": {"guidance_embeds": False}}},
    "FluxControlPipeline": _FLUX_CONTROL,
    "FluxControlImg2ImgPipeline": _FLUX_CONTROL,
    "FluxControlInpaintPipeline": _FLUX_CONTROL,
    # packed latents (16) + packed masked-image latents (16) + the mask as scale^2 = 4 channels, packed (16)
    "FluxFillPipeline": {"config": {"transformer": {"in_channels": 48, "out_channels": 16}}},
    "CogVideoXFunControlPipeline": {**_TWICE_THE_LATENTS, **_ONE_VIDEO_PER_PROMPT},
    "CogVideoXImageToVideoPipeline": {**_TWICE_THE_LATENTS, **_ONE_VIDEO_PER_PROMPT},
    "CogVideoXVideoToVideoPipeline": _ONE_VIDEO_PER_PROMPT,
    "HunyuanSkyreelsImageToVideoPipeline": _TWICE_THE_LATENTS,
    "CogView4Pipeline": _COGVIEW4,
    "CogView4ControlPipeline": _COGVIEW4_CONTROL,
    # image to video: latents + image latents + mask in, a transformer without guidance embedding; the LLaVA
    # prompt template of the tiny model (its 16 image tokens expanded at position 5, nothing cropped)
    # Framepack generates 2 latent frames a section (5 frames at the tiny HunyuanVideo VAE's temporal compression 4),
    # so the 9 frames take two sections: the section loop runs twice, the second one attending to the first as
    # history. Sampled backwards from the end by default (inverted anti-drifting); forwards (vanilla), and towards a
    # last image, as cases. One image per prompt (its latents are the first frame of every video in the batch), and
    # one video per prompt: its batch is the number of prompts whatever `num_videos_per_prompt` (a diffusers bug:
    # the prompt embeddings are repeated, the latents are not)
    "HunyuanVideoFramepackPipeline": {
        "inputs": {"latent_window_size": 2},
        "one_per_prompt": ("image",),
        "drop_cases": ("two_prompts_x2",),
        "cases": (
            (
                "two_prompts_true_cfg",
                {"prompt": _TWO_PROMPTS, "negative_prompt": ["blurry", "low quality"], "true_cfg_scale": 3.0},
            ),
            ("vanilla_sampling", {"sampling_type": "vanilla"}),
            ("last_image", {"last_image": Image(16)}),
        ),
    },
    "HunyuanVideoImageToVideoPipeline": {
        "config": {
            "transformer": {"in_channels": 9, "image_condition_type": "latent_concat", "guidance_embeds": False}
        },
        "inputs": {
            "prompt_template": {
                "template": "{}",
                "crop_start": 0,
                "image_emb_len": 16,
                "image_emb_start": 5,
                "image_emb_end": 21,
            }
        },
    },
    # the refiner folds two latent frames into channels (4 -> 8): noise (8) + condition (8) in, 8 out
    # and its transformer patches in 3D (frame, height, width), with three rotary axes adding up to its head size
    "HunyuanImageRefinerPipeline": {
        "config": {
            "transformer": {"in_channels": 16, "out_channels": 8, "patch_size": (1, 1, 1), "rope_axes_dim": (2, 2, 4)}
        }
    },
    "HunyuanDiTPipeline": _HUNYUAN_DIT,
    # with PAG and without CFG it repeats its time ids three times for a batch of two (a diffusers bug): CFG off is
    # checked with PAG off
    # the PAG layer these perturb by default is their transformer's second block: two blocks
    "StableDiffusion3PAGPipeline": {"config": {"transformer": {"num_layers": 2}}},
    "StableDiffusion3PAGImg2ImgPipeline": {"config": {"transformer": {"num_layers": 2}}},
    "HunyuanDiTPAGPipeline": {
        **_HUNYUAN_DIT,
        "drop_cases": ("cfg_off", "cfg_off_latent"),
        "cases": (("cfg_and_pag_off", {"guidance_scale": 1.0, "pag_scale": 0.0}),),
    },
    # the transformer adds ControlNet outputs to its skip connections only, which need 4 blocks at least (block 0
    # feeds block 3); the ControlNet mirrors them
    "HunyuanDiTControlNetPipeline": {**_HUNYUAN_DIT, "config": {"transformer": {"num_layers": 4}}},
    # SANA adds the ControlNet's outputs after every block but the first: a transformer of 2 blocks
    "SanaControlNetPipeline": {"config": {"transformer": {"num_layers": 2}}},
    # LTX asks for sizes divisible by 32 (8 x 8 latents with the tiny VAE's spatial compression 4)
    "LTXPipeline": {"inputs": {"height": 32, "width": 32}},
    "LTXImageToVideoPipeline": {"inputs": {"height": 32, "width": 32}},
    "LTXConditionPipeline": {"inputs": {"height": 32, "width": 32}},
    # GLIGEN grounds phrases in boxes: a UNet with gated self-attention (and the position net embedding each
    # phrase's pooled text with its box), one phrase and its box [x0, y0, x1, y1] in fractions of the image;
    # grounded for the first of the 2 steps only (beta 0.5), so both the grounded and the plain steps run
    "StableDiffusionGLIGENPipeline": {
        "config": {"unet": {"attention_type": "gated"}},
        "inputs": {
            "gligen_phrases": ["a cat"],
            "gligen_boxes": [[0.1, 0.2, 0.6, 0.8]],
            "gligen_scheduled_sampling_beta": 0.5,
        },
    },
    # the prompt embedding is the hidden state 8 layers from the top (`return_index=-8`)
    "NucleusMoEImagePipeline": {"dims": {"text_layers": 8}},
    # its default taps 12 hidden states of a 36-layer Qwen3-VL (indices 2 ... 35): the tiny one has 2 layers, tap
    # both (index 0 is the embeddings); the transformer stacks `text_layers` of them per token
    "Krea2Pipeline": {"scalars": {"text_encoder_select_layers": (1, 2)}},
    # SANA-WM's refiner requires a stage-1 latent (4 channels, 8 frames of 8 x 8: the sink frame, then blocks of 3,
    # 3 and 1 frames) and a frame rate, which no signature default gives; the default window (11 frames) never
    # trims the refined history, a 4-frame window does (after the second block). It refines for one prompt (a
    # `str`): the latent output with one prompt instead of two
    "SanaWMLTX2Refiner": {
        "inputs": {"sana_latent": Noise((1, 4, 8, 8, 8), seed=3), "fps": 24.0},
        "drop_cases": ("latent",),
        "cases": (("short_window", {"kv_max_frames": 4}), ("latent_one_prompt", {"output_type": "latent"})),
    },
    # text to image: its reference images are resized for the processor to thousands of vision tokens
    "QwenImage21Pipeline": {"inputs": {"image": None}},
    # it works at a resolution of 640 or 1024 whatever the image: with the shared VAE (scale 2) that is 25,600
    # tokens per layer; a VAE compressing 16x and one layer leave 400 each
    "QwenImageLayeredPipeline": {
        "config": {"vae": {"base_dim": 4, "dim_mult": [1, 1, 2, 2, 2], "temperal_downsample": [False] * 4}},
        "inputs": {"layers": 1},
    },
    "LucyEditPipeline": _TWICE_THE_LATENTS,
    "SkyReelsV2ImageToVideoPipeline": _WAN_IMAGE_TO_VIDEO,
    # the x4 upscaler's UNet takes the latents and the low-resolution image (3 channels) and a noise-level class;
    # its decode casts to the dtype of the VAE's `post_quant_conv`, which the VAE must have
    "StableDiffusionUpscalePipeline": {
        "config": {"unet": {"in_channels": 7, "num_class_embeds": 1000}, "vae": {"use_post_quant_conv": True}}
    },
    # Wan 2.1 image to video: its transformer cross-attends to the image's CLIP features too (`image_dim`), and the
    # constructor leaves the CLIP vision encoder optional (None): build it
    # It repeats the image features to the number of prompts, not of videos (diffusers 0.42): more than one video per
    # prompt fails upstream, so two prompts are checked with one video each
    "WanImageToVideoPipeline": {
        **_WAN_IMAGE_TO_VIDEO,
        "classes": {"image_encoder": "CLIPVisionModel"},
        "drop_cases": ("two_prompts_x2",),
        "cases": (("two_prompts", {"prompt": _TWO_PROMPTS, "negative_prompt": ["blurry", "low quality"]}),),
    },
    "WanVACEPipeline": _WAN_VACE,
    "ChronoEditPipeline": _WAN_IMAGE_TO_VIDEO,
    # latents + condition mask; text to world (an image or video input needs torchvision to be read)
    # its text embedding joins the hidden states of every text layer: 2 x 32
    "Cosmos2_5_PredictBasePipeline": {
        "config": {"transformer": {"in_channels": 5, "text_embed_dim": 64}},
        "inputs": {"image": None},
    },
    "StableDiffusionDepth2ImgPipeline": {"config": {"unet": {"in_channels": 5}}},  # latents + depth
    "StableDiffusionInstructPix2PixPipeline": _INSTRUCT_PIX2PIX,
    "MarigoldDepthPipeline": _MARIGOLD,
    "MarigoldNormalsPipeline": _MARIGOLD,
    "MarigoldIntrinsicsPipeline": _MARIGOLD,
    "StableDiffusionXLInstructPix2PixPipeline": _INSTRUCT_PIX2PIX,
    # the UNet embeds the guidance scale (latent consistency distillation)
    "LatentConsistencyModelImg2ImgPipeline": {"config": {"unet": {"time_cond_proj_dim": 32}}},
    "LatentConsistencyModelPipeline": {"config": {"unet": {"time_cond_proj_dim": 32}}, "scheduler": "LCMScheduler"},
    "AmusedImg2ImgPipeline": _AMUSED_IMG2IMG,
    "AmusedInpaintPipeline": _AMUSED_INPAINT,
    # its constructor hints `PreTrainedModel` / `PreTrainedTokenizer` and `UNet2DModel | UNet2DConditionModel`: the
    # LDMBert its own file defines, a BERT tokenizer, the text-conditioned UNet; guidance is off by default (scale 1)
    "LDMTextToImagePipeline": {
        "classes": {"bert": "LDMBertModel", "tokenizer": "BertTokenizer", "unet": "UNet2DConditionModel"},
        "cases": (("cfg", {"guidance_scale": 5.0}),),
    },
    # pixels (3 channels) concatenated to latents of the same width: a 3-channel VQ model, a 6-channel UNet
    "LDMSuperResolutionPipeline": {"dims": {"latent_channels": 3}, "config": {"unet": {"in_channels": 6}}},
    # SD3 pads the two CLIP encoders' joined widths (32 + 32) to T5's: T5 is twice as wide
    "StableDiffusion3Pipeline": {"text_widths": {"text_encoder_3": 64}},
    "StableDiffusion3Img2ImgPipeline": {"text_widths": {"text_encoder_3": 64}},
    "StableDiffusion3InpaintPipeline": {"text_widths": {"text_encoder_3": 64}},
    "StableDiffusion3ControlNetPipeline": _SD3_CONTROLNET,
    # the inpainting ControlNet embeds the control image's latents joined with the mask (one more channel)
    "StableDiffusion3ControlNetInpaintingPipeline": {
        **_SD3_CONTROLNET,
        "config": {**_SD3_CONTROLNET["config"], "controlnet": {"extra_conditioning_channels": 1}},
    },
    # the inpainting ControlNet embeds the control image's packed latents joined with the mask, packed 2 x 2 as the
    # latents are: 4 more channels
    "QwenImageControlNetInpaintPipeline": {"config": {"controlnet": {"extra_condition_channels": 4}}},
    # guess mode with PAG on fails upstream (diffusers 0.42: the ControlNet runs on the whole CFG + PAG batch, the
    # control image is prepared for the conditional part alone); the SDXL PAG ControlNet pipelines run it
    "StableDiffusionControlNetPAGPipeline": {"drop_cases": ("guess_mode", "guess_mode_two_prompts_x2")},
    "BlipDiffusionPipeline": _BLIP_DIFFUSION,
    "BlipDiffusionControlNetPipeline": _BLIP_DIFFUSION_CONTROLNET,
    "StableDiffusionXLControlNetUnionPipeline": _CONTROLNET_UNION,
    "StableDiffusionXLControlNetUnionImg2ImgPipeline": _CONTROLNET_UNION,
    "StableDiffusionXLControlNetUnionInpaintPipeline": _CONTROLNET_UNION,
    "AnimateDiffSparseControlNetPipeline": _SPARSECTRL,
    # the AnimateDiff ControlNet pipelines' guess mode fails with CFG on as SparseCtrl's does (diffusers 0.42)
    "AnimateDiffControlNetPipeline": {
        **_GUESS_MODE_CFG_OFF,
        "cases": (*_GUESS_MODE_CFG_OFF["cases"], *_FREE_INIT["cases"]),
    },
    "AnimateDiffVideoToVideoControlNetPipeline": _GUESS_MODE_CFG_OFF,
    "AnimateDiffPipeline": _FREE_INIT,
    "AnimateDiffVideoToVideoPipeline": _FREE_INIT,
    "AnimateDiffPAGPipeline": _FREE_INIT,
    "Kandinsky5T2VPipeline": {**_KANDINSKY5_ONE_PER_PROMPT, "inputs": _KANDINSKY5_VIDEO_SIZE},
    # image to video renormalizes the first 4 latent frames to the statistics of the frames after them (NaN without
    # any): 17 frames, 5 latent frames at the tiny HunyuanVideo VAE's temporal compression 4
    "Kandinsky5I2VPipeline": {
        "config": {"transformer": _KANDINSKY5_VISUAL_COND},
        "inputs": {**_KANDINSKY5_VIDEO_SIZE, "num_frames": 17},
    },
    "Kandinsky5T2IPipeline": _KANDINSKY5_IMAGE,
    # its Qwen prompt holds the image: one image per prompt
    "Kandinsky5I2IPipeline": {
        **_KANDINSKY5_IMAGE,
        **_KANDINSKY5_ONE_PER_PROMPT,
        "config": {**_KANDINSKY5_IMAGE["config"], "transformer": _KANDINSKY5_VISUAL_COND},
        "one_per_prompt": ("image",),
    },
    # the Allegro VAE decodes whole tiles of 24 frames (fixed upstream) and decodes a shorter latent video to zeros:
    # 24 frames, 6 latent frames at the tiny VAE's temporal compression 4 (`factories.allegro`); 32-pixel frames in
    # one 32-pixel tile, so the transformer's rotary tables (8 positions a side) are not as long as a batch of 2 or
    # 4 (exact mode splits what has the batch's length)
    "AllegroPipeline": {
        "inputs": {"num_frames": 24, "height": 32, "width": 32},
        "config": {"vae": {"sample_size": 32}},
    },
    "LongCatImagePipeline": _LONGCAT_IMAGE,
    "LongCatImageEditPipeline": _LONGCAT_IMAGE_EDIT,
    # Flux Redux returns the prompt's T5 states with the image's tokens appended, scaled per image and summed over
    # the images: two images with a scale each
    "FluxPriorReduxPipeline": {
        "cases": (
            (
                "two_images_scaled",
                {
                    "image": [Image(32), Image(32)],
                    "prompt_embeds_scale": [1.0, 0.5],
                    "pooled_prompt_embeds_scale": [0.5, 1.0],
                },
            ),
        ),
    },
    # ... and from given latents instead of a video (a batch of two): LTX's 3 latent frames of 4 x 4 (9 frames of
    # 16 x 16 at its tiny VAE's compression 4, 4); LTX-2's 3 latent frames of 8 x 8 (5 frames of 16 x 16 at its tiny
    # VAE's compression 2, 2), given normalized, or packed as tokens (batch, frames x height x width, channels),
    # unpacked to the `num_frames` / `height` / `width` asked
    "LTXLatentUpsamplePipeline": {
        **_LATENT_UPSAMPLE,
        "cases": (
            *_LATENT_UPSAMPLE["cases"],
            ("two_latents", {"video": None, "latents": Noise((2, 4, 3, 4, 4), seed=1)}),
        ),
    },
    "LTX2LatentUpsamplePipeline": {
        **_LATENT_UPSAMPLE,
        "cases": (
            *_LATENT_UPSAMPLE["cases"],
            ("two_latents_normalized", {"video": None, "latents": Noise((2, 4, 3, 8, 8)), "latents_normalized": True}),
            ("packed_latents", {"video": None, "latents": Noise((1, 3 * 8 * 8, 4), seed=2)}),
        ),
    },
    # LTX-2's diffusion decoder decodes given latents (3 latent frames of 8 x 8: 5 frames of 16 x 16 pixels); its
    # constructor's `scheduler` has no hint (the decoder steps its own loop: any scheduler is only registered); a
    # latent output is refused upstream (its video processor knows `np`, `pt` and `pil`)
    "LTX2VideoDiffusionDecodePipeline": {
        "classes": {"scheduler": "FlowMatchEulerDiscreteScheduler"},
        "inputs": {"latents": Noise((1, 4, 3, 8, 8), seed=1)},
        "drop_cases": ("latent",),
        "cases": (
            ("two_latents", {"latents": Noise((2, 4, 3, 8, 8), seed=2)}),
            ("denormalized", {"denormalize": False}),
            ("pt", {"output_type": "pt"}),
        ),
    },
    # the priors' image features are `ceil(size / 42.67)` a side (`factories.cascade`): 128 x 192 pixels make a
    # 3 x 5 grid (a square one of 1 x 1 would hide a transposed or flattened grid); Stable Cascade's prior also
    # takes a given CLIP image embedding (one per image, repeated to the batch; zeros for the unconditional half)
    "StableCascadePriorPipeline": {
        "inputs": _CASCADE_PRIOR_SIZE,
        "cases": (
            ("image_embeds", {"image_embeds": Noise((1, 1, 32), seed=1)}),
            ("image_embeds_two_prompts_x2", {**_TWO_PROMPTS_X2, "image_embeds": Noise((1, 1, 32), seed=1)}),
        ),
    },
    "WuerstchenPriorPipeline": {"inputs": _CASCADE_PRIOR_SIZE},
    "StableCascadeDecoderPipeline": _STABLE_CASCADE_DECODER,
    "WuerstchenDecoderPipeline": _WUERSTCHEN_DECODER,
    # ... and the pipeline made of both: a 3 x 6 grid of features from the prior (128 x 256 pixels), which the
    # decoder's latents (10.67 times as large, halved twice) take whole; two prompts fail upstream (see above)
    "WuerstchenCombinedPipeline": {
        "inputs": {"height": 128, "width": 256, **_PRIOR_STEPS},
        "drop_cases": ("two_prompts_x2", "latent"),  # (its prior's latent output does not reach the decoder)
    },
}


def overrides_for(pipeline: type) -> dict[str, Any]:
    return OVERRIDES.get(pipeline.__name__, {})
