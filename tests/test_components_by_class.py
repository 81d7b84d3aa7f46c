"""Tiny components built by component class: couplings computed from the shared dims, components resolved from the
constructor's type hints, inputs and cases from the `__call__` signature, verification of pipelines that have no
hand-written setup, and a clear report of a component class no factory builds."""

from __future__ import annotations

import inspect

import pytest
import torch

from modularize.cli import main
from modularize.commands.survey import describe, verify_entry
from modularize.commands.verify import verify_package
from modularize.testing.components import DIMS, MissingComponentClass, build_components, setup_by_class
from modularize.testing.components.inputs import PER_PROMPT
from modularize.testing.components.resolve import resolve
from modularize.testing.equivalence import NoComponents, builtin_setup
from modularize.testing.tiny import setup_for

from .test_verify import converted_and_bitwise


def _text_encoders(components):
    return [components[name] for name in sorted(components) if name.startswith("text_encoder") and components[name]]


def test_sdxl_couplings_are_computed_from_the_shared_dims():
    from diffusers import StableDiffusionXLPipeline

    components = build_components(StableDiffusionXLPipeline)
    unet, vae = components["unet"], components["vae"]
    encoders = _text_encoders(components)
    assert [type(e).__name__ for e in encoders] == ["CLIPTextModel", "CLIPTextModelWithProjection"]
    # both encoders' hidden states are joined along the feature axis for cross-attention
    assert unet.config.cross_attention_dim == sum(e.config.hidden_size for e in encoders)
    # 6 time ids x `addition_time_embed_dim` + the pooled (projected) text embedding
    pooled = components["text_encoder_2"].config.projection_dim
    assert unet.config.addition_embed_type == "text_time"
    assert unet.config.projection_class_embeddings_input_dim == 6 * unet.config.addition_time_embed_dim + pooled
    assert vae.config.latent_channels == unet.config.in_channels == unet.config.out_channels == DIMS.latent_channels
    for suffix in ("", "_2"):
        tokenizer, encoder = components["tokenizer" + suffix], components["text_encoder" + suffix]
        assert len(tokenizer) == encoder.config.vocab_size
        assert tokenizer.model_max_length == encoder.config.max_position_embeddings == 77
    # optional extras are left out; flags keep their defaults
    assert components["image_encoder"] is None and components["feature_extractor"] is None
    assert components["force_zeros_for_empty_prompt"] is True


def test_flux_and_sd3_couplings():
    from diffusers import FluxPipeline, StableDiffusion3Pipeline

    flux = build_components(FluxPipeline)
    transformer = flux["transformer"]
    assert transformer.config.in_channels == 4 * flux["vae"].config.latent_channels  # 2 x 2 packed latents
    assert transformer.config.joint_attention_dim == flux["text_encoder_2"].config.d_model
    assert transformer.config.pooled_projection_dim == flux["text_encoder"].config.hidden_size
    assert sum(transformer.config.axes_dims_rope) == transformer.config.attention_head_dim
    assert len(flux["tokenizer_2"]) == flux["text_encoder_2"].config.vocab_size
    sd3 = build_components(StableDiffusion3Pipeline)
    clip_width = sd3["text_encoder"].config.hidden_size + sd3["text_encoder_2"].config.hidden_size
    # SD3 pads the joined CLIP states to T5's width (the one per-pipeline width, given as data)
    assert sd3["text_encoder_3"].config.d_model == sd3["transformer"].config.joint_attention_dim == clip_width
    assert sd3["transformer"].config.pooled_projection_dim == clip_width


def test_factories_are_seeded_and_do_not_touch_the_global_rng():
    from diffusers import ChromaPipeline

    torch.manual_seed(123)
    before = torch.get_rng_state()
    first, second = build_components(ChromaPipeline), build_components(ChromaPipeline)
    assert torch.equal(before, torch.get_rng_state())
    for name in ("transformer", "text_encoder", "vae"):
        a, b = first[name].state_dict(), second[name].state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # different components get different weights (seeded by position), not copies of one another
    assert not torch.equal(first["vae"].encoder.conv_in.weight, first["transformer"].x_embedder.weight[:1])


def test_components_come_from_the_constructor_type_hints():
    from diffusers import StableDiffusionPipeline, WanPipeline

    resolved = resolve(StableDiffusionPipeline)
    assert resolved.classes["safety_checker"] is None  # left out where the pipeline allows it
    assert resolved.classes["image_encoder"] is None  # Optional: left out
    assert resolved.classes["feature_extractor"] is not None  # a plain hint: built
    assert resolved.classes["scheduler"].__name__ == "EulerDiscreteScheduler"  # the Karras family's default
    assert resolved.scalars == {"requires_safety_checker": True}
    wan = resolve(WanPipeline)
    assert wan.classes["tokenizer"].__name__ == "T5Tokenizer"  # `AutoTokenizer`: the text encoder's own
    assert wan.scalars == {"boundary_ratio": None, "expand_timesteps": False}
    assert not resolved.missing and not wan.missing


class _PriorPipeline:
    """A user's pipeline with a component class no factory builds."""

    def __init__(self, prior: T5FilmDecoder, scheduler: DDPMScheduler, resolution_multiple: float = 42.67):  # noqa: F821
        pass

    def __call__(self, prompt: str = "", num_inference_steps: int = 60, output_type: str = "pil"):
        pass


def test_a_component_class_without_a_factory_is_named():
    from diffusers import DDPMScheduler, T5FilmDecoder

    _PriorPipeline.__init__.__annotations__.update(prior=T5FilmDecoder, scheduler=DDPMScheduler)
    with pytest.raises(MissingComponentClass, match=r"missing component class: T5FilmDecoder \(fix") as raised:
        build_components(_PriorPipeline)
    assert raised.value.classes == ("T5FilmDecoder",)
    # inputs and cases still come from the signature; only building the components fails
    setup = setup_by_class(_PriorPipeline)
    assert setup.inputs() == {"prompt": "a photo of a cat", "num_inference_steps": 2, "output_type": "np"}
    with pytest.raises(MissingComponentClass):
        setup.components()


def test_inputs_and_cases_follow_the_call_signature():
    from diffusers import ChromaInpaintPipeline, DDIMPipeline, FluxKontextInpaintPipeline

    setup = setup_by_class(ChromaInpaintPipeline)
    inputs = setup.inputs()
    assert inputs["image"].size == inputs["mask_image"].size == (32, 32)
    assert (inputs["height"], inputs["width"], inputs["num_inference_steps"], inputs["strength"]) == (32, 32, 3, 0.7)
    names = [name for name, _ in setup.cases]
    assert {"default", "cfg_off", "negative_prompt", "true_cfg", "two_prompts_x2", "strength_1.0"} <= set(names)
    two = dict(setup.cases)["two_prompts_x2"]
    assert len(two["prompt"]) == len(two["negative_prompt"]) == two["num_images_per_prompt"] == 2
    assert dict(setup.cases)["cfg_off_latent"]["output_type"] == "latent"
    # a package that does not serve an argument: the cases setting it leave the matrix, and a note says so
    served = setup_by_class(ChromaInpaintPipeline, unserved={"true_cfg_scale": 1.0})
    assert "true_cfg" not in dict(served.cases) and "two_prompts_x2" not in dict(served.cases)
    assert any("true_cfg_scale" in note for note in served.notes)
    # the area-resizing pipelines stay at the tiny size
    assert setup_by_class(FluxKontextInpaintPipeline).inputs()["max_area"] == 32 * 32
    unconditional = setup_by_class(DDIMPipeline)
    assert unconditional.inputs() == {"num_inference_steps": 2, "output_type": "np"}
    assert ("two_samples", {"batch_size": 2}) in unconditional.cases


def test_hand_written_setups_come_first_then_the_by_class_one():
    from diffusers import ChromaPipeline, StableDiffusionPipeline

    assert builtin_setup(StableDiffusionPipeline) is setup_for("StableDiffusionPipeline")
    by_class = builtin_setup(ChromaPipeline)
    assert by_class is not None and by_class.pipeline is ChromaPipeline
    assert issubclass(MissingComponentClass, NoComponents)  # `survey --verify`: reported, not failed


def test_video_family_couplings():
    from diffusers import CogVideoXImageToVideoPipeline, WanPipeline

    wan = build_components(WanPipeline)
    assert wan["transformer"].config.text_dim == wan["text_encoder"].config.d_model
    assert wan["transformer"].config.in_channels == wan["vae"].config.z_dim
    frames = setup_by_class(WanPipeline).inputs()["num_frames"]
    assert (frames - 1) % wan["vae"].config.scale_factor_temporal == 0
    cog = build_components(CogVideoXImageToVideoPipeline)
    # image-to-video: latents and image latents side by side (given as data: `in_channels` 2 x latent channels)
    assert cog["transformer"].config.in_channels == 2 * cog["vae"].config.latent_channels
    assert (
        cog["transformer"].config.max_text_seq_length
        == setup_by_class(CogVideoXImageToVideoPipeline).inputs()["max_sequence_length"]
    )


def test_chatglm_couplings_without_sentencepiece():
    """Kolors: ChatGLM's tokenizer runs on an in-memory Unigram model in place of a sentencepiece file."""
    import copy
    import importlib.util

    from diffusers.pipelines.kolors.pipeline_kolors import KolorsPipeline  # (the top-level name needs sentencepiece)

    kolors = build_components(KolorsPipeline)
    tokenizer, encoder, unet = kolors["tokenizer"], kolors["text_encoder"], kolors["unet"]
    assert type(tokenizer).__name__ == "ChatGLMTokenizer" and type(encoder).__name__ == "ChatGLMModel"
    assert importlib.util.find_spec("sentencepiece") is None or "sentencepiece" in __import__("sys").modules
    assert len(tokenizer) == encoder.config.padded_vocab_size
    # its hidden states feed cross-attention, its last token's (pooled) joins the 6 time ids
    assert unet.config.cross_attention_dim == encoder.config.hidden_size == DIMS.text_hidden
    assert unet.config.projection_class_embeddings_input_dim == 6 * unet.config.addition_time_embed_dim + 32
    assert encoder.config.kv_channels * encoder.config.num_attention_heads == encoder.config.hidden_size
    # left padding with the positions ChatGLM reads, the same ids every time and in every copy
    encoded = tokenizer("a photo of a cat", padding="max_length", max_length=12)
    assert encoded["attention_mask"][0] == 0 and encoded["attention_mask"][-1] == 1
    assert encoded["position_ids"][-1] == sum(encoded["attention_mask"]) - 1
    assert copy.deepcopy(tokenizer)("a photo of a cat", padding="max_length", max_length=12) == encoded
    assert encoded == build_components(KolorsPipeline)["tokenizer"](
        "a photo of a cat", padding="max_length", max_length=12
    )
    # its weights are initialized from the seed (its own default leaves them as uninitialized memory)
    again = build_components(KolorsPipeline)["text_encoder"].state_dict()
    assert all(torch.equal(value, again[key]) for key, value in encoder.state_dict().items())


def test_sana_wm_couplings():
    from diffusers import SanaWMPipeline

    from modularize.testing.components.factories.vaes import VIDEO_COMPRESSION

    sana = build_components(SanaWMPipeline)
    vae, transformer = sana["vae"], sana["transformer"]
    assert (vae.spatial_compression_ratio, vae.temporal_compression_ratio) == VIDEO_COMPRESSION[type(vae).__name__]
    assert transformer.config.in_channels == vae.config.latent_channels == DIMS.latent_channels
    assert transformer.config.caption_channels == sana["text_encoder"].config.hidden_size
    # Plücker rays: 6 numbers per pixel frame, packed per latent frame
    assert transformer.config.chunk_plucker_channels == 6 * vae.temporal_compression_ratio
    assert transformer.config.chunk_plucker_post_attn_blocks == transformer.config.num_layers
    # latent statistics that differ per channel (not the buffers' 0 / 1, under which a misuse would not show)
    assert len(set(vae.latents_mean.tolist())) == len(set(vae.latents_std.tolist())) == DIMS.latent_channels
    # the camera inputs are data: a pose per frame of the frames the inputs ask for
    inputs = setup_by_class(SanaWMPipeline).inputs()
    assert inputs["num_frames"] == 2 * vae.temporal_compression_ratio + 1
    assert len(inputs["action"].split("-")) == 2 and int(inputs["action"].split("-")[1]) + 1 == inputs["num_frames"]


def test_hunyuan_dit_couplings():
    from diffusers import HunyuanDiTPipeline

    from modularize.testing.components.factories.denoisers import HUNYUAN_DIT_TEXT_LENGTHS

    hunyuan = build_components(HunyuanDiTPipeline)
    transformer, vae = hunyuan["transformer"], hunyuan["vae"]
    bert, t5 = hunyuan["text_encoder"], hunyuan["text_encoder_2"]
    assert type(hunyuan["tokenizer"]).__name__ == "BertTokenizer" and type(bert).__name__ == "BertModel"
    assert transformer.config.cross_attention_dim == bert.config.hidden_size
    assert transformer.config.cross_attention_dim_t5 == t5.config.d_model
    assert len(hunyuan["tokenizer"]) == bert.config.vocab_size and len(hunyuan["tokenizer_2"]) == t5.config.vocab_size
    # the prompt lengths its pipeline pads to: BERT's fit its position embeddings, both are the transformer's
    bert_length, t5_length = HUNYUAN_DIT_TEXT_LENGTHS
    assert (transformer.config.text_len, transformer.config.text_len_t5) == (bert_length, t5_length)
    assert bert.config.max_position_embeddings >= bert_length
    encoded = hunyuan["tokenizer"]("a photo of a cat", padding="max_length", max_length=bert_length)
    assert len(encoded["input_ids"]) == bert_length and hunyuan["tokenizer"].unk_token_id not in encoded["input_ids"]
    # its pipeline's rotary grid is `height // 8 // patch_size`: the VAE scales by 8, so it is the latents' grid
    size = setup_by_class(HunyuanDiTPipeline).inputs()["height"]
    assert 2 ** (len(vae.config.block_out_channels) - 1) == 8
    assert size // 8 == transformer.config.sample_size and size // 8 // transformer.config.patch_size > 1
    assert vae.config.latent_channels == transformer.config.in_channels == DIMS.latent_channels


def test_ltx_and_cogview3plus_couplings():
    from diffusers import CogView3PlusPipeline, LTXPipeline

    from modularize.testing.components.factories.vaes import VIDEO_COMPRESSION

    ltx = build_components(LTXPipeline)
    vae, transformer = ltx["vae"], ltx["transformer"]
    assert (vae.spatial_compression_ratio, vae.temporal_compression_ratio) == VIDEO_COMPRESSION[type(vae).__name__]
    assert transformer.config.in_channels == transformer.config.out_channels == vae.config.latent_channels
    assert transformer.config.caption_channels == ltx["text_encoder"].config.d_model
    # the caption is projected to the transformer's width, which cross-attention then reads
    width = transformer.config.num_attention_heads * transformer.config.attention_head_dim
    assert transformer.config.cross_attention_dim == width
    assert len(set(vae.latents_mean.tolist())) == len(set(vae.latents_std.tolist())) == DIMS.latent_channels
    frames = setup_by_class(LTXPipeline).inputs()["num_frames"]
    assert frames == 2 * vae.temporal_compression_ratio + 1
    cog = build_components(CogView3PlusPipeline)
    transformer = cog["transformer"]
    assert transformer.config.text_embed_dim == cog["text_encoder"].config.d_model
    assert transformer.config.in_channels == cog["vae"].config.latent_channels == DIMS.latent_channels
    # the positional embedding covers the latents' patches
    latent = DIMS.image_size // DIMS.vae_scale_factor
    assert transformer.config.pos_embed_max_size >= latent // transformer.config.patch_size


def test_cogview4_couplings():
    """CogView4: GLM's hidden states feed the transformer's text projection; GLM-4's tokenizer starts every prompt
    with `[gMASK]<sop>` (an empty negative prompt is not empty) and pads on the left; the control pipeline joins
    the control latents to the latents."""
    from diffusers import CogView4ControlPipeline, CogView4Pipeline

    cog = build_components(CogView4Pipeline)
    tokenizer, encoder, transformer = cog["tokenizer"], cog["text_encoder"], cog["transformer"]
    assert type(encoder).__name__ == "GlmModel"
    assert transformer.config.text_embed_dim == encoder.config.hidden_size
    assert transformer.config.in_channels == transformer.config.out_channels == cog["vae"].config.latent_channels
    assert transformer.config.sample_size * DIMS.vae_scale_factor == DIMS.image_size
    assert len(tokenizer) == encoder.config.vocab_size and tokenizer.pad_token_id == encoder.config.pad_token_id
    assert tokenizer.convert_ids_to_tokens(tokenizer("").input_ids) == ["[gMASK]", "<sop>"]
    batch = tokenizer(["a photo of a cat", "a cat"], padding="longest").input_ids
    assert batch[1][0] == tokenizer.pad_token_id and batch[0][0] != tokenizer.pad_token_id
    assert cog["scheduler"].config.use_dynamic_shifting  # the pipeline shifts the schedule by `mu`
    control = build_components(CogView4ControlPipeline)
    assert control["transformer"].config.in_channels == 2 * control["vae"].config.latent_channels
    assert control["transformer"].config.out_channels == control["vae"].config.latent_channels


def test_joy_image_edit_couplings():
    """JoyImage-Edit: the transformer's rotary axes add up to its head size and its text is Qwen3-VL's width; the
    VAE compresses 32x (8 x 8 pixel patches, then two downsamplings) and says so, since the pipeline renders at
    1024-pixel buckets whatever size it is asked for."""
    from diffusers import JoyImageEditPipeline

    joy = build_components(JoyImageEditPipeline)
    transformer, vae, encoder = joy["transformer"], joy["vae"], joy["text_encoder"]
    assert sum(transformer.config.rope_dim_list) == transformer.config.hidden_size // DIMS.heads
    assert transformer.config.text_dim == encoder.config.text_config.hidden_size
    assert transformer.config.in_channels == vae.config.z_dim and transformer.config.patch_size[0] == 1
    assert vae.config.scale_factor_spatial == 32
    with torch.no_grad():
        latents = vae.encode(torch.zeros(1, 3, 1, 64, 64)).latent_dist.mode()
    assert latents.shape[-2:] == (2, 2)
    assert "text_to_image" in dict(setup_by_class(JoyImageEditPipeline).cases)


def test_glm_image_couplings_and_the_ar_model_generates_whole_grids():
    """GLM-Image: the AR model's image tokens are the transformer's prior codebook and its VQ codebook; one AR token
    per 32 pixels, upsampled 2x, is one transformer patch; the end-of-image marker lies outside what the AR head can
    sample, so generation always yields the whole grid (text-to-image: the 1 x 1 target after a 16 x 16 preview)."""
    from diffusers import GlmImagePipeline

    glm = build_components(GlmImagePipeline)
    ar, transformer, processor = glm["vision_language_encoder"], glm["transformer"], glm["processor"]
    codebook = transformer.config.prior_vq_quantizer_codebook_size
    assert ar.config.text_config.vision_vocab_size == ar.config.vq_config.num_embeddings == codebook
    assert DIMS.vae_scale_factor * transformer.config.patch_size == 16
    assert transformer.config.text_embed_dim == glm["text_encoder"].config.d_model
    assert (
        min(ar.config.image_start_token_id, ar.config.image_end_token_id, ar.config.text_config.eos_token_id)
        >= codebook
    )
    assert ar.config.text_config.vocab_size == len(processor.tokenizer)
    messages = [[{"role": "user", "content": [{"type": "text", "text": "a photo of a cat"}]}]]
    inputs = processor.apply_chat_template(
        messages, tokenize=True, target_h=32, target_w=32, return_dict=True, return_tensors="pt"
    )
    assert inputs["image_grid_thw"].tolist() == [[1, 1, 1], [1, 16, 16]]
    assert inputs["input_ids"][0, -1].item() == ar.config.image_start_token_id
    torch.manual_seed(0)
    out = ar.generate(**inputs, max_new_tokens=8, do_sample=True)
    generated = out[0, inputs["input_ids"].shape[-1] :]
    assert len(generated) == 8 and int(generated.max()) < codebook


def test_gligen_grounding_inputs_are_data():
    from diffusers import StableDiffusionGLIGENPipeline

    setup = setup_by_class(StableDiffusionGLIGENPipeline)
    unet, encoder = setup.components()["unet"], setup.components()["text_encoder"]
    # gated self-attention, its position net embedding each phrase's pooled text (as wide as the text encoder)
    assert unet.config.attention_type == "gated" and unet.position_net is not None
    assert unet.config.cross_attention_dim == encoder.config.hidden_size
    inputs = setup.inputs()
    assert len(inputs["gligen_phrases"]) == len(inputs["gligen_boxes"]) == 1
    assert all(0 <= x <= 1 for x in inputs["gligen_boxes"][0])
    # grounded for some steps, not all: both kinds of step run
    assert (
        0
        < int(inputs["gligen_scheduled_sampling_beta"] * inputs["num_inference_steps"])
        < inputs["num_inference_steps"]
    )


def test_amused_couplings_and_components_run():
    """aMUSEd's UVit predicts codebook entries of masked image tokens: its vocabulary is the VQ codebook plus the
    scheduler's mask token, its conditioning the CLIP pooled projection joined with 5 micro-conditions, and the VQ
    model decodes the token ids it predicts by looking them up in its codebook."""
    from diffusers import AmusedPipeline

    from modularize.testing.components.factories.denoisers import MICRO_CONDITIONS

    amused = build_components(AmusedPipeline)
    uvit, vq, clip, scheduler = amused["transformer"], amused["vqvae"], amused["text_encoder"], amused["scheduler"]
    assert type(uvit).__name__ == "UVit2DModel" and type(scheduler).__name__ == "AmusedScheduler"
    assert uvit.config.codebook_size == vq.config.num_vq_embeddings == DIMS.codebook_size
    assert scheduler.config.mask_token_id == uvit.config.vocab_size - 1 == DIMS.codebook_size
    assert vq.config.lookup_from_codebook
    assert uvit.config.cond_embed_dim == clip.config.projection_dim
    assert uvit.config.encoder_hidden_size == clip.config.hidden_size
    assert uvit.config.micro_cond_embed_dim == MICRO_CONDITIONS * uvit.config.micro_cond_encode_dim
    assert len(amused["tokenizer"]) == clip.config.vocab_size
    # the components run together: text -> UVit logits over the codebook -> token ids -> pixels
    tokens = amused["tokenizer"](["a photo of a cat"], padding="max_length", return_tensors="pt").input_ids
    with torch.no_grad():
        text = clip(tokens, output_hidden_states=True)
        grid = DIMS.image_size // DIMS.vae_scale_factor
        ids = torch.full((1, grid, grid), scheduler.config.mask_token_id)
        micro = torch.tensor([[DIMS.image_size, DIMS.image_size, 0, 0, 6]], dtype=torch.float32)
        logits = uvit(ids, text.hidden_states[-2], text.text_embeds, micro)
        assert logits.shape == (1, DIMS.codebook_size, grid, grid) and torch.isfinite(logits).all()
        predicted = logits.argmax(1)
        shape = (1, grid, grid, vq.config.latent_channels)
        image = vq.decode(predicted, force_not_quantize=True, shape=shape).sample
    assert image.shape == (1, 3, DIMS.image_size, DIMS.image_size) and image.std() > 0
    # seeded: built again, the same weights
    again = build_components(AmusedPipeline)["transformer"].state_dict()
    assert all(torch.equal(value, again[key]) for key, value in uvit.state_dict().items())


def test_a_vq_model_decodes_latents_unless_its_denoiser_predicts_tokens():
    from diffusers import LDMSuperResolutionPipeline

    assert not build_components(LDMSuperResolutionPipeline)["vqvae"].config.lookup_from_codebook


def test_amused_image_inputs_give_one_image_per_prompt():
    """Image-to-image and inpainting encode one image per prompt: every case of the matrix runs on the standard
    pipelines, the two-prompt cases with two images (and masks)."""
    from diffusers import AmusedImg2ImgPipeline, AmusedInpaintPipeline

    torch.set_num_threads(1)
    for pipeline_cls in (AmusedImg2ImgPipeline, AmusedInpaintPipeline):
        setup = setup_by_class(pipeline_cls)
        names = [name for name, _ in setup.cases]
        assert {"default", "cfg_off", "two_prompts_x2", "strength_1.0", "cfg_off_latent"} <= set(names)
        pipe = pipeline_cls(**setup.components())
        pipe.set_progress_bar_config(disable=True)
        for name, overrides in setup.cases:
            inputs = {**setup.inputs(), **overrides}
            prompts = inputs["prompt"] if isinstance(inputs["prompt"], list) else [inputs["prompt"]]
            images = inputs["image"] if isinstance(inputs["image"], list) else [inputs["image"]]
            assert len(images) == len(prompts), name
            if "mask_image" in inputs:
                masks = inputs["mask_image"] if isinstance(inputs["mask_image"], list) else [inputs["mask_image"]]
                assert len(masks) == len(prompts), name
            output = pipe(**inputs, generator=torch.Generator("cpu").manual_seed(0)).images
            assert len(output) == len(prompts) * inputs.get("num_images_per_prompt", 1), name


def test_ldm_text_to_image_components_from_its_own_module():
    """LDM's constructor hints `PreTrainedModel` / `PreTrainedTokenizer`: the override names `LDMBertModel`, which
    diffusers does not export; it is found in the pipeline's own module and paired with the BERT tokenizer."""
    from diffusers import LDMTextToImagePipeline
    from diffusers.pipelines.latent_diffusion import pipeline_latent_diffusion

    resolved = resolve(LDMTextToImagePipeline)
    assert not resolved.missing
    assert resolved.classes["bert"] is pipeline_latent_diffusion.LDMBertModel
    ldm = build_components(LDMTextToImagePipeline)
    bert, tokenizer, unet, vq = ldm["bert"], ldm["tokenizer"], ldm["unet"], ldm["vqvae"]
    assert type(tokenizer).__name__ == "BertTokenizer" and type(unet).__name__ == "UNet2DConditionModel"
    assert len(tokenizer) == bert.config.vocab_size and bert.config.max_position_embeddings >= 77
    assert unet.config.cross_attention_dim == bert.config.d_model
    assert unet.config.in_channels == vq.config.latent_channels == DIMS.latent_channels
    # the pipeline pads prompts to 77 tokens; the embedding it reads is the encoder's first output
    tokens = tokenizer(["a photo of a cat"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    assert tokenizer.unk_token_id not in tokens[0].tolist()
    with torch.no_grad():
        embeds = bert(tokens)[0]
        assert embeds.shape == (1, 77, bert.config.d_model)
        latents = torch.randn(1, DIMS.latent_channels, 4, 4, generator=torch.Generator().manual_seed(0))
        noise = unet(latents, 10, encoder_hidden_states=embeds).sample
    assert noise.shape == latents.shape and torch.isfinite(noise).all()
    again = build_components(LDMTextToImagePipeline)["bert"].state_dict()
    assert all(torch.equal(value, again[key]) for key, value in bert.state_dict().items())
    # guidance is off by default (scale 1): the matrix adds a case with it on
    assert ("cfg", {"guidance_scale": 5.0}) in setup_by_class(LDMTextToImagePipeline).cases


# -- audio ---------------------------------------------------------------------------------------------------------
AUDIO_PIPELINES = ("AudioLDMPipeline", "MusicLDMPipeline", "StableAudioPipeline")


def _diffusers_class(name: str) -> type:
    import diffusers

    return getattr(diffusers, name)


@pytest.mark.parametrize("name", AUDIO_PIPELINES)
def test_audio_pipelines_build_by_class_and_seeded(name):
    pipeline_cls = _diffusers_class(name)
    assert not resolve(pipeline_cls).missing
    first, second = build_components(pipeline_cls), build_components(pipeline_cls)
    models = [key for key, value in first.items() if isinstance(value, torch.nn.Module)]
    assert len(models) >= 4
    for key in models:
        again = second[key].state_dict()
        assert all(torch.equal(value, again[k]) for k, value in first[key].state_dict().items()), key


def test_spectrogram_pipeline_couplings():
    """AudioLDM / MusicLDM: a one-channel VAE of mel spectrograms as wide as the vocoder's input, a UNet conditioned
    on CLAP's projected text embedding as its class label (attending to its own features: there is no text context),
    CLAP's vocabulary and positions covering its RoBERTa tokenizer; MusicLDM's CLAP gives `get_text_features` as a
    normalized tensor and scores audio from its feature extractor against text."""
    from diffusers import AudioLDMPipeline, MusicLDMPipeline

    for pipeline_cls in (AudioLDMPipeline, MusicLDMPipeline):
        parts = build_components(pipeline_cls)
        vae, unet, vocoder, tokenizer = parts["vae"], parts["unet"], parts["vocoder"], parts["tokenizer"]
        clap = parts["text_encoder"]
        text = clap.config.text_config if hasattr(clap.config, "text_config") else clap.config
        assert type(tokenizer).__name__ == "RobertaTokenizer"
        assert vae.config.in_channels == vae.config.out_channels == 1
        assert vocoder.config.model_in_dim == DIMS.mel_bins and DIMS.mel_bins % DIMS.vae_scale_factor == 0
        assert unet.config.in_channels == vae.config.latent_channels
        assert unet.config.class_embed_type == "simple_projection" and unet.config.class_embeddings_concat
        assert unet.config.projection_class_embeddings_input_dim == text.projection_dim
        assert tuple(unet.config.cross_attention_dim) == tuple(unet.config.block_out_channels)
        assert len(tokenizer) == text.vocab_size and text.pad_token_id == tokenizer.pad_token_id
        assert text.max_position_embeddings >= tokenizer.model_max_length + tokenizer.pad_token_id + 1
        # the pieces run together: prompt -> projected embedding -> class label of the UNet -> mel -> waveform
        tokens = tokenizer(["a photo of a cat"], padding="max_length", return_tensors="pt")
        assert tokenizer.unk_token_id not in tokens.input_ids[0].tolist()
        with torch.no_grad():
            if pipeline_cls is MusicLDMPipeline:
                embeds = clap.get_text_features(tokens.input_ids, attention_mask=tokens.attention_mask)
            else:
                embeds = clap(tokens.input_ids, attention_mask=tokens.attention_mask).text_embeds
            assert embeds.shape == (1, text.projection_dim)
            shape = (1, vae.config.latent_channels, 4, DIMS.mel_bins // DIMS.vae_scale_factor)
            latents = torch.randn(shape, generator=torch.Generator().manual_seed(0))
            noise = unet(latents, 10, encoder_hidden_states=None, class_labels=embeds).sample
            assert noise.shape == latents.shape and torch.isfinite(noise).all()
            mel = vae.decode(latents).sample
            waveform = vocoder(mel.squeeze(1))
        assert waveform.shape == (1, 8 * 4) and 0.01 < waveform.std() < 0.9  # 4 samples per frame, not saturated
    # MusicLDM: `get_text_features` normalized (transformers 4's contract); audio scored against text
    assert torch.allclose(embeds.norm(dim=-1), torch.ones(1))
    extractor = parts["feature_extractor"]
    # the clips it is given are never cropped (cropping picks a random window)
    assert setup_by_class(MusicLDMPipeline).inputs()["audio_length_in_s"] <= extractor.max_length_s
    clips = [
        torch.randn(2 * extractor.sampling_rate, generator=torch.Generator().manual_seed(seed)) for seed in (0, 1)
    ]
    features = extractor([clip.numpy() for clip in clips], return_tensors="pt", sampling_rate=extractor.sampling_rate)
    prompts = tokenizer(["a photo of a cat", "the dog and the moon"], padding=True, return_tensors="pt")
    with torch.no_grad():
        scores = clap(**prompts, input_features=features.input_features).logits_per_text
    assert scores.shape == (2, 2) and torch.isfinite(scores).all()


def test_stable_audio_couplings():
    """Stable Audio: the projection model maps T5's width and seconds (0 to the DiT's window) to the DiT's
    cross-attention and global inputs; the DiT's channels are the Oobleck VAE's latent channels; the clip the inputs
    ask for lies inside the window."""
    from diffusers import StableAudioPipeline

    parts = build_components(StableAudioPipeline)
    vae, t5, projection, dit = parts["vae"], parts["text_encoder"], parts["projection_model"], parts["transformer"]
    assert len(parts["tokenizer"]) == t5.config.vocab_size
    assert projection.config.text_encoder_dim == t5.config.d_model != projection.config.conditioning_dim
    assert dit.config.cross_attention_input_dim == projection.config.conditioning_dim
    assert dit.config.global_states_input_dim == 2 * projection.config.conditioning_dim
    assert dit.config.in_channels == dit.config.out_channels == vae.config.decoder_input_channels
    window = dit.config.sample_size * vae.hop_length / vae.config.sampling_rate
    assert projection.config.max_value == window
    inputs = setup_by_class(StableAudioPipeline).inputs()
    assert 0 < inputs["audio_start_in_s"] < inputs["audio_end_in_s"] < window
    with torch.no_grad():
        latents = torch.randn(1, vae.config.decoder_input_channels, dit.config.sample_size)
        audio = vae.decode(latents).sample
    assert audio.shape == (1, vae.config.audio_channels, dit.config.sample_size * vae.hop_length)


@pytest.mark.parametrize("name", AUDIO_PIPELINES)
def test_audio_pipelines_run_every_case_by_class(name):
    """Every case of the matrix runs on the standard pipeline: finite audio, one per prompt and waveform."""
    import numpy as np

    pipeline_cls = _diffusers_class(name)
    torch.set_num_threads(1)
    setup = setup_by_class(pipeline_cls)
    names = [case for case, _ in setup.cases]
    assert {"default", "cfg_off", "negative_prompt", "two_prompts_x2", "cfg_off_latent"} <= set(names)
    pipe = pipeline_cls(**setup.components())
    pipe.set_progress_bar_config(disable=True)
    for case, overrides in setup.cases:
        inputs = {**setup.inputs(), **overrides}
        prompts = inputs["prompt"] if isinstance(inputs["prompt"], list) else [inputs["prompt"]]
        audios = pipe(**inputs, generator=torch.Generator("cpu").manual_seed(0)).audios
        assert len(audios) == len(prompts) * inputs.get("num_waveforms_per_prompt", 1), case
        values = torch.as_tensor(np.asarray(audios)) if not isinstance(audios, torch.Tensor) else audios
        assert values.numel() > 0 and torch.isfinite(values).all() and values.std() > 0, case


def test_musicldm_scores_its_waveforms_with_its_feature_extractor(monkeypatch):
    """With librosa installed (here a linear-interpolation stand-in for its resampler), MusicLDM ranks each prompt's
    waveforms by CLAP's audio-text score: the feature extractor's spectrograms fit CLAP's audio tower, and the
    waveforms it returns are generated ones, picked by score."""
    import types

    import numpy as np
    from diffusers import MusicLDMPipeline
    from diffusers.pipelines.deprecated.musicldm import pipeline_musicldm

    generated = []

    def resample(audio, orig_sr, target_sr):
        generated.append(audio)
        positions = np.linspace(0, audio.shape[-1] - 1, audio.shape[-1] * target_sr // orig_sr)
        return np.stack([np.interp(positions, np.arange(audio.shape[-1]), row) for row in audio])

    monkeypatch.setattr(pipeline_musicldm, "is_librosa_available", lambda: True)
    monkeypatch.setattr(pipeline_musicldm, "librosa", types.SimpleNamespace(resample=resample), raising=False)
    torch.set_num_threads(1)
    setup = setup_by_class(MusicLDMPipeline)
    pipe = MusicLDMPipeline(**setup.components())
    pipe.set_progress_bar_config(disable=True)
    inputs = {**setup.inputs(), **dict(setup.cases)["two_prompts_x2"]}
    audios = pipe(**inputs, generator=torch.Generator("cpu").manual_seed(0)).audios
    assert len(generated) == 1 and audios.shape == generated[0].shape == (4, 32) and np.isfinite(audios).all()
    assert all(any(np.array_equal(row, candidate) for candidate in generated[0]) for row in audios)


# -- verification through the by-class path ----------------------------------------------------------------------
BY_CLASS_PIPELINES = [
    "pipelines/chroma/pipeline_chroma.py",
    "pipelines/flux/pipeline_flux_control.py",
    "pipelines/ovis_image/pipeline_ovis_image.py",
    "pipelines/deprecated/text_to_video_synthesis/pipeline_text_to_video_synth.py",
    "pipelines/hunyuandit/pipeline_hunyuandit.py",  # time ids and style doubled as torch.cat([x] * 2): shared values
    "pipelines/ltx/pipeline_ltx.py",  # the rescale inside the CFG branch
    "pipelines/latent_consistency_models/pipeline_latent_consistency_img2img.py",
    "pipelines/kolors/pipeline_kolors.py",  # ChatGLM without sentencepiece
    "pipelines/deprecated/musicldm/pipeline_musicldm.py",  # its helper's CFG-doubled embeddings split at the call
    "pipelines/flux/pipeline_flux_controlnet_image_to_image.py",  # a ControlNet feeding the denoiser, no CFG
    "pipelines/pag/pipeline_pag_sd.py",  # perturbed-attention guidance, added back by the guider
    # ... beside a ControlNet, which the guider leaves unperturbed
    "pipelines/pag/pipeline_pag_controlnet_sd.py",
    # timesteps halved after the combine, a CFG repeat inside a branch, a loop local set and read under one test
    "pipelines/ltx/pipeline_ltx_condition.py",
    # a repeat factor sized for the CFG batch, read as a count
    "pipelines/controlnet/pipeline_controlnet_union_sd_xl.py",
    # micro-conditions expanded to `2 * batch_size if cfg else batch_size` rows
    "pipelines/deprecated/amused/pipeline_amused.py",
    # the control image repeated for CFG, then VAE-sampled: each guider batch gets its own half of the draw
    "pipelines/controlnet_sd3/pipeline_stable_diffusion_3_controlnet.py",
    "pipelines/controlnet_hunyuandit/pipeline_hunyuandit_controlnet.py",
]


@pytest.mark.slow
@pytest.mark.parametrize("source", BY_CLASS_PIPELINES)
def test_pipelines_without_a_hand_written_setup_verify_bitwise_by_class(tmp_path, source):
    from modularize.testing.equivalence import load_package, package_classes, standard_class

    package, report = converted_and_bitwise(tmp_path, source)
    pipeline_cls, _ = package_classes(load_package(package))
    assert setup_for(standard_class(pipeline_cls, package).__name__) is None  # really the by-class path
    assert {c.mode for c in report.cases} == {"plain", "exact"}
    names = {c.name for c in report.cases}
    call = inspect.signature(standard_class(pipeline_cls, package).__call__).parameters
    assert "default" in names and ("cfg_off" in names) == ("guidance_scale" in call)
    assert ("two_prompts_x2" in names) == any(name in call for name in PER_PROMPT)
    assert ("pag_off" in names and "pag_adaptive" in names) == ("pag_adaptive_scale" in call)
    assert any(c.inputs.get("output_type") == "latent" for c in report.cases)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        # the factories above build their components; the by-class verification found these packages failing with
        # CFG in exact mode, and the converter now refuses them where the CFG batch cannot be split
        ("pipelines/latent_diffusion/pipeline_latent_diffusion.py", "unrecognized CFG batching of a denoiser input"),
        # the factories build these too; their packages failed, and they are refused where they cannot be served
        (
            "pipelines/deprecated/versatile_diffusion/pipeline_versatile_diffusion_text_to_image.py",
            "`__init__` runs `self._swap_unet_attention_blocks()`",
        ),
    ],
)
def test_pipelines_whose_cfg_batch_cannot_be_split_are_refused_at_the_line(cli, tmp_path, source, message):
    from modularize.frontend.source_file import installed_diffusers_file

    run = cli(installed_diffusers_file(source), "-o", tmp_path / "pkg")
    assert run.code == 3 and message in run.err
    assert not (tmp_path / "pkg").exists()


@pytest.fixture
def without_chatglm(monkeypatch):
    """Kolors with no factory for its ChatGLM text encoder and tokenizer: a converted pipeline missing two classes."""
    from modularize.testing.components import FACTORIES, factories  # noqa: F401  (registers every factory)

    for name in ("ChatGLMModel", "ChatGLMTokenizer"):
        monkeypatch.delitem(FACTORIES, name)


def test_verify_names_the_missing_component_class(tmp_path, cli, without_chatglm):
    from modularize.frontend.source_file import installed_diffusers_file

    package = tmp_path / "modular_kolors"
    source = installed_diffusers_file("pipelines/kolors/pipeline_kolors.py")
    assert main([str(source), "-o", str(package), "-q"]) == 0
    with pytest.raises(MissingComponentClass, match="missing component classes: ChatGLMModel, ChatGLMTokenizer"):
        verify_package(package)
    run = cli("verify", package)
    assert run.code == 2 and "missing component classes: ChatGLMModel, ChatGLMTokenizer" in run.err


def test_survey_verdict_of_a_class_with_a_missing_component(without_chatglm):
    from modularize.frontend.source_file import installed_diffusers_file

    root = installed_diffusers_file("pipelines/__init__.py").parent
    verdict = verify_entry(root, "kolors/pipeline_kolors.py", "KolorsPipeline")
    assert verdict["status"] == "missing" and verdict["ok"] is False
    assert verdict["missing"] == ["ChatGLMModel", "ChatGLMTokenizer"]
    assert describe(verdict) == "missing component classes: ChatGLMModel, ChatGLMTokenizer"


# -- image-embedding pipelines: priors, their decoders, image-conditioned UNets ---------------------------------------
EMBEDDING_PIPELINES = [
    "KandinskyPipeline",
    "KandinskyImg2ImgPipeline",
    "KandinskyPriorPipeline",
    "KandinskyV22PriorPipeline",
    "KandinskyV22PriorEmb2EmbPipeline",
    "PaintByExamplePipeline",
    "StableUnCLIPImg2ImgPipeline",
    "ShapEPipeline",
    "ShapEImg2ImgPipeline",
    # beyond those: inpainting decoders, unCLIP text to image, prior and decoder combined
    "KandinskyInpaintPipeline",
    "KandinskyV22InpaintPipeline",
    "StableUnCLIPPipeline",
    "KandinskyCombinedPipeline",
    "KandinskyImg2ImgCombinedPipeline",
    "KandinskyInpaintCombinedPipeline",
    "KandinskyV22CombinedPipeline",
    "KandinskyV22Img2ImgCombinedPipeline",
    "KandinskyV22InpaintCombinedPipeline",
]


def _same_weights(first, second) -> bool:
    a, b = first.state_dict(), second.state_dict()
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", EMBEDDING_PIPELINES)
def test_embedding_pipelines_build_by_class_with_seeded_weights(name):
    import diffusers

    from modularize.testing.components import missing_classes

    pipeline_cls = getattr(diffusers, name)
    assert missing_classes(pipeline_cls) == ()
    first, second = build_components(pipeline_cls), build_components(pipeline_cls)
    models = [key for key, value in first.items() if isinstance(value, torch.nn.Module)]
    assert models
    for key in models:
        assert _same_weights(first[key], second[key]), key


def _outputs(output):
    """The pipeline's outputs, one per generated sample: images, or a prior's image embeddings."""
    return output.image_embeds if hasattr(output, "image_embeds") else output.images


def _conditions(inputs) -> int:
    """How many samples the inputs condition: prompts, or (without a prompt) image embeddings."""
    if isinstance(inputs.get("prompt"), list):
        return len(inputs["prompt"])
    if "prompt" not in inputs and "image_embeds" in inputs:
        return len(inputs["image_embeds"])
    return 1


@pytest.mark.slow
@pytest.mark.parametrize("name", EMBEDDING_PIPELINES)
def test_embedding_pipelines_run_every_case(name):
    """Every case of the matrix runs on the standard pipeline, giving finite outputs, one per prompt and image of a
    prompt (a prior gives as many negative embeddings)."""
    import diffusers
    import numpy as np

    torch.set_num_threads(1)
    pipeline_cls = getattr(diffusers, name)
    setup = setup_by_class(pipeline_cls)
    assert {"default", "cfg_off"} <= {case for case, _ in setup.cases}
    pipe = pipeline_cls(**setup.components())
    pipe.set_progress_bar_config(disable=True)
    for case, overrides in setup.cases:
        inputs = {**setup.inputs(), **overrides}
        expected = _conditions(inputs) * inputs.get("num_images_per_prompt", 1)
        output = pipe(**inputs, generator=torch.Generator("cpu").manual_seed(0))
        values = np.asarray(_outputs(output), dtype=np.float64)
        assert len(values) == expected, case
        assert np.isfinite(values).all() and values.std() > 0, case
        if hasattr(output, "negative_image_embeds"):
            assert len(output.negative_image_embeds) == expected, case


def test_kandinsky_21_couplings_and_per_prompt_inputs():
    """Kandinsky 2.1: the XLM-R tokenizer (no sentencepiece) fits its multilingual CLIP, whose hidden states feed
    the UNet's cross-attention and whose projection is as wide as the image embeddings it is added to."""
    from diffusers import KandinskyImg2ImgPipeline, KandinskyPipeline

    kandinsky = build_components(KandinskyPipeline)
    tokenizer, encoder, unet, movq = (
        kandinsky["tokenizer"],
        kandinsky["text_encoder"],
        kandinsky["unet"],
        kandinsky["movq"],
    )
    assert type(tokenizer).__name__ == "XLMRobertaTokenizer" and type(encoder).__name__ == "MultilingualCLIP"
    assert len(tokenizer) == encoder.config.vocab_size and tokenizer.pad_token_id == encoder.config.pad_token_id
    # the pipeline pads to 77 tokens; XLM-R numbers positions from just past its padding id
    assert encoder.config.max_position_embeddings >= 77 + tokenizer.pad_token_id + 1
    encoded = tokenizer("a photo of a cat", padding="max_length", max_length=77)
    assert tokenizer.unk_token_id not in encoded["input_ids"] and len(encoded["input_ids"]) == 77
    assert unet.config.encoder_hid_dim == encoder.config.transformerDimensions == encoder.config.hidden_size
    assert encoder.config.numDims == unet.config.cross_attention_dim == DIMS.clip_projection
    assert unet.config.out_channels == 2 * unet.config.in_channels == 2 * movq.config.latent_channels  # + variance
    inputs = setup_by_class(KandinskyPipeline).inputs()
    assert inputs["image_embeds"].shape == inputs["negative_image_embeds"].shape == (1, DIMS.clip_projection)
    assert not torch.equal(inputs["image_embeds"], inputs["negative_image_embeds"])
    with torch.no_grad():
        ids = tokenizer(["a photo of a cat"], padding="max_length", max_length=77, return_tensors="pt")
        projected, hidden = encoder(input_ids=ids.input_ids, attention_mask=ids.attention_mask)
        latents = torch.randn(1, DIMS.latent_channels, 16, 16, generator=torch.Generator().manual_seed(0))
        added = {"text_embeds": projected, "image_embeds": inputs["image_embeds"]}
        noise = unet(latents, 10, encoder_hidden_states=hidden, added_cond_kwargs=added).sample
    assert noise.shape == (1, 2 * DIMS.latent_channels, 16, 16) and torch.isfinite(noise).all()
    # a case with 2 prompts gets 2 embeddings (and, image to image, 2 images); no latent output: a CFG-off case
    cases = dict(setup_by_class(KandinskyImg2ImgPipeline).cases)
    two = cases["two_prompts_x2"]
    assert two["image_embeds"].shape == two["negative_image_embeds"].shape == (2, DIMS.clip_projection)
    assert len(two["image"]) == len(two["prompt"]) == 2
    assert "cfg_off_latent" not in cases and cases["cfg_off_two_prompts"]["guidance_scale"] == 1.0


def test_prior_couplings():
    """A prior denoises a CLIP image embedding from a prompt's: its width is the CLIP encoders' projection (and
    their hidden width), its text positions the tokenizer's; its scheduler predicts the clean embedding."""
    from diffusers import KandinskyV22PriorEmb2EmbPipeline

    prior_components = build_components(KandinskyV22PriorEmb2EmbPipeline)
    prior, text, image = prior_components["prior"], prior_components["text_encoder"], prior_components["image_encoder"]
    assert prior.config.embedding_dim == text.config.projection_dim == image.config.projection_dim
    assert prior.config.embedding_dim == text.config.hidden_size  # its hidden states are projected at that width
    assert prior.config.num_embeddings == prior_components["tokenizer"].model_max_length
    assert prior_components["scheduler"].config.prediction_type == "sample"
    # un-normalized with statistics that are not 0 (which would make every output 0)
    assert (prior.clip_std != 0).all() and (prior.clip_mean != 0).any()
    processor = prior_components["image_processor"]
    assert processor.crop_size["height"] == image.config.image_size


def test_paint_by_example_and_stable_unclip_couplings():
    from diffusers import PaintByExamplePipeline, StableUnCLIPImg2ImgPipeline

    paint = build_components(PaintByExamplePipeline)
    encoder, unet = paint["image_encoder"], paint["unet"]
    # the example's embedding is what the UNet cross-attends to; its mapper has a block
    assert encoder.proj_size == unet.config.cross_attention_dim and len(encoder.mapper.blocks) == 1
    assert paint["feature_extractor"].crop_size["height"] == encoder.config.image_size
    assert unet.config.in_channels == 2 * paint["vae"].config.latent_channels + 1  # latents, masked image, mask
    assert "example_image" in setup_by_class(PaintByExamplePipeline).inputs()
    unclip = build_components(StableUnCLIPImg2ImgPipeline)
    image_width = unclip["image_encoder"].config.projection_dim
    assert unclip["image_normalizer"].config.embedding_dim == image_width
    # the class label: the noised image embedding and its noise level's embedding, as wide
    assert unclip["unet"].config.class_embed_type == "projection"
    assert unclip["unet"].config.projection_class_embeddings_input_dim == 2 * image_width
    assert type(unclip["image_noising_scheduler"]).__name__ == "DDPMScheduler"
    # an image embedding passed in would stand in for the image: optional ones are not default inputs
    assert "image_embeds" not in setup_by_class(StableUnCLIPImg2ImgPipeline).inputs()


def test_shap_e_couplings():
    """Shap-E's prior denoises a latent whose rows its renderer projects to NeRF MLP weights: one row per weight
    vector, each as wide as the prior's embedding; it predicts twice that width; it is conditioned on the prompt's
    CLIP embedding, or on an image's CLIP patch states."""
    import inspect

    from diffusers import ShapEImg2ImgPipeline, ShapEPipeline
    from diffusers.pipelines.shap_e.renderer import ShapERenderer

    text = build_components(ShapEPipeline)
    prior, renderer = text["prior"], text["shap_e_renderer"]
    assert sum(vectors for vectors, _ in renderer.config.param_shapes) == prior.config.num_embeddings
    assert renderer.config.d_latent == prior.config.embedding_dim
    assert prior.config.clip_embed_dim == 2 * prior.config.embedding_dim
    assert prior.config.embedding_proj_dim == text["text_encoder"].config.projection_dim
    assert text["scheduler"].config.prediction_type == "sample"
    # the weights it projects are the renderer's MLP's first layers
    mlp = renderer.mlp.state_dict()
    for name, shape in zip(renderer.config.param_names, renderer.config.param_shapes, strict=True):
        assert tuple(mlp[name.removeprefix("nerstf.")].shape) == tuple(shape)
    # the renderer (really a ShapERenderer) renders the frames in whole ray batches
    assert isinstance(renderer, ShapERenderer)
    batch = inspect.signature(renderer.decode_to_image).parameters["ray_batch_size"].default
    frame = setup_by_class(ShapEPipeline).inputs()["frame_size"]
    assert (20 * frame * frame) % batch == 0
    image = build_components(ShapEImg2ImgPipeline)
    assert image["prior"].config.embedding_proj_dim == image["image_encoder"].config.hidden_size
    assert image["prior"].config.embedding_proj_norm_type == "layer"
    assert image["image_processor"].crop_size["height"] == image["image_encoder"].config.image_size


def test_a_combined_pipelines_prior_text_encoder_pairs_with_the_prior_tokenizer():
    """Kandinsky 2.1 combined: the prior's CLIP text encoder is sized for `prior_tokenizer` (CLIP's), not for the
    decoder's `tokenizer` (XLM-R's)."""
    from diffusers import KandinskyCombinedPipeline, StableUnCLIPPipeline

    combined = build_components(KandinskyCombinedPipeline)
    assert type(combined["prior_tokenizer"]).__name__ == "CLIPTokenizer"
    assert len(combined["prior_tokenizer"]) == combined["prior_text_encoder"].config.vocab_size
    assert len(combined["tokenizer"]) == combined["text_encoder"].config.vocab_size
    assert len(combined["tokenizer"]) != len(combined["prior_tokenizer"])
    unclip = build_components(StableUnCLIPPipeline)
    assert unclip["prior_scheduler"].config.prediction_type == "sample"
    assert unclip["prior"].config.embedding_dim == unclip["prior_text_encoder"].config.projection_dim
    assert setup_by_class(StableUnCLIPPipeline).inputs()["prior_num_inference_steps"] == 2


# -- Kandinsky 3, HunyuanDiT and SANA ControlNets ----------------------------------------------------------------------
MORE_PIPELINES = [
    "Kandinsky3Pipeline",
    "Kandinsky3Img2ImgPipeline",
    "HunyuanDiTControlNetPipeline",
    "SanaControlNetPipeline",
    "VersatileDiffusionTextToImagePipeline",
]


@pytest.mark.parametrize("name", MORE_PIPELINES)
def test_more_pipelines_build_by_class_with_seeded_weights(name):
    from modularize.testing.components import missing_classes

    pipeline_cls = _diffusers_class(name)
    assert missing_classes(pipeline_cls) == ()
    first, second = build_components(pipeline_cls), build_components(pipeline_cls)
    models = [key for key, value in first.items() if isinstance(value, torch.nn.Module)]
    assert len(models) >= 3
    for key in models:
        assert _same_weights(first[key], second[key]), key


def _no_zero_layers(model) -> list[str]:
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)) and not module.weight.any()
    ]


def test_kandinsky3_couplings():
    """Kandinsky 3's UNet projects T5's states to its cross-attention width and denoises the MoVQ's latents; its
    time conditioning (zero-initialized by its constructor) is re-drawn, so the timestep changes its output."""
    from diffusers import Kandinsky3Pipeline

    parts = build_components(Kandinsky3Pipeline)
    unet, movq, encoder, tokenizer = parts["unet"], parts["movq"], parts["text_encoder"], parts["tokenizer"]
    assert type(unet).__name__ == "Kandinsky3UNet" and type(movq).__name__ == "VQModel"
    assert unet.config.encoder_hid_dim == encoder.config.d_model
    assert unet.config.in_channels == movq.config.latent_channels == DIMS.latent_channels
    assert len(tokenizer) == encoder.config.vocab_size
    assert _no_zero_layers(unet) == []
    with torch.no_grad():
        ids = tokenizer(["a photo of a cat"], padding="max_length", max_length=128, return_tensors="pt")
        states = encoder(ids.input_ids, attention_mask=ids.attention_mask)[0]
        latents = torch.randn(1, DIMS.latent_channels, 8, 8, generator=torch.Generator().manual_seed(0))
        early, late = (
            unet(latents, t, encoder_hidden_states=states, encoder_attention_mask=ids.attention_mask).sample
            for t in (10, 900)
        )
    assert early.shape == latents.shape and torch.isfinite(early).all()
    assert not torch.equal(early, late)


def _runs_default_case(name):
    import numpy as np

    torch.set_num_threads(1)
    pipeline_cls = _diffusers_class(name)
    setup = setup_by_class(pipeline_cls)
    pipe = pipeline_cls(**setup.components())
    pipe.set_progress_bar_config(disable=True)
    torch.manual_seed(0)  # (the ControlNet pipelines encode the control image by sampling the global RNG)
    images = np.asarray(pipe(**setup.inputs(), generator=torch.Generator("cpu").manual_seed(0)).images)
    assert len(images) == 1 and np.isfinite(images).all() and images.std() > 0
    return images


@pytest.mark.parametrize("name", MORE_PIPELINES)
def test_more_pipelines_run_their_default_case(name):
    _runs_default_case(name)


def test_hunyuan_dit_controlnet_mirrors_the_transformer():
    """HunyuanDiT's ControlNet runs the first half of the transformer's blocks and gives one output per skip
    connection of the transformer (4 blocks: block 0 feeds block 3), each added there; its zero layers re-drawn."""
    from diffusers import HunyuanDiTControlNetPipeline

    parts = build_components(HunyuanDiTControlNetPipeline)
    transformer, controlnet = parts["transformer"], parts["controlnet"]
    for key in (
        "hidden_size",
        "num_attention_heads",
        "attention_head_dim",
        "patch_size",
        "in_channels",
        "cross_attention_dim",
        "cross_attention_dim_t5",
        "pooled_projection_dim",
        "text_len",
        "text_len_t5",
        "sample_size",
    ):
        assert controlnet.config[key] == transformer.config[key], key
    assert controlnet.config.transformer_num_layers == transformer.config.num_layers == 4
    skips = sum(layer > transformer.config.num_layers // 2 for layer in range(transformer.config.num_layers))
    assert len(controlnet.controlnet_blocks) == skips == 1
    assert controlnet.config.in_channels == parts["vae"].config.latent_channels  # it reads the control latents
    assert _no_zero_layers(controlnet) == []


def test_sana_controlnet_mirrors_the_transformer():
    """SANA adds the ControlNet's i-th output after its block i + 1: a 2-block transformer, a 1-block ControlNet."""
    from diffusers import SanaControlNetPipeline

    parts = build_components(SanaControlNetPipeline)
    transformer, controlnet = parts["transformer"], parts["controlnet"]
    for key in (
        "num_attention_heads",
        "attention_head_dim",
        "num_cross_attention_heads",
        "cross_attention_head_dim",
        "cross_attention_dim",
        "caption_channels",
        "patch_size",
        "in_channels",
        "sample_size",
    ):
        assert controlnet.config[key] == transformer.config[key], key
    assert controlnet.config.num_layers == transformer.config.num_layers - 1 == 1
    assert controlnet.config.caption_channels == parts["text_encoder"].config.hidden_size
    assert controlnet.config.in_channels == parts["vae"].config.latent_channels
    assert _no_zero_layers(controlnet) == []


@pytest.mark.parametrize("name", ["HunyuanDiTControlNetPipeline", "SanaControlNetPipeline"])
def test_the_control_image_changes_the_output(name):
    """Without the ControlNet's output (scale 0) the image differs: the control reaches the denoiser."""
    import numpy as np

    torch.set_num_threads(1)
    pipeline_cls = _diffusers_class(name)
    setup = setup_by_class(pipeline_cls)
    pipe = pipeline_cls(**setup.components())
    pipe.set_progress_bar_config(disable=True)
    images = []
    for scale in (1.0, 0.0):
        torch.manual_seed(0)
        inputs = {**setup.inputs(), "controlnet_conditioning_scale": scale}
        images.append(np.asarray(pipe(**inputs, generator=torch.Generator("cpu").manual_seed(0)).images))
    assert np.isfinite(images[0]).all() and not np.array_equal(*images)


def test_versatile_diffusion_text_unet_attention_fits_the_image_unet():
    """Versatile Diffusion's pipeline swaps the image UNet's attention blocks for the text UNet's at the same
    places: every one has a counterpart of the same shapes, and after the swap the image UNet runs the text UNet's."""
    from diffusers import Transformer2DModel, VersatileDiffusionTextToImagePipeline

    parts = build_components(VersatileDiffusionTextToImagePipeline)
    image_unet, text_unet = parts["image_unet"], parts["text_unet"]
    assert type(text_unet).__name__ == "UNetFlatConditionModel"
    assert image_unet.config.cross_attention_dim == parts["text_encoder"].config.projection_dim
    places = [name for name, module in image_unet.named_modules() if isinstance(module, Transformer2DModel)]
    assert places
    for place in places:
        mine, theirs = image_unet.get_submodule(place).state_dict(), text_unet.get_submodule(place).state_dict()
        assert {k: v.shape for k, v in mine.items()} == {k: v.shape for k, v in theirs.items()}, place
    text_blocks = [text_unet.get_submodule(place) for place in places]
    VersatileDiffusionTextToImagePipeline(**parts)
    assert all(image_unet.get_submodule(place) is block for place, block in zip(places, text_blocks, strict=True))


def test_alt_diffusion_couplings():
    """AltDiffusion: the XLM-R tokenizer fits diffusers' `RobertaSeriesModelWithTransformation`, whose projected
    hidden states (its first output, what the pipeline reads) are as wide as the UNet's cross-attention."""
    from diffusers import AltDiffusionPipeline

    alt = build_components(AltDiffusionPipeline)
    tokenizer, encoder, unet = alt["tokenizer"], alt["text_encoder"], alt["unet"]
    assert type(encoder).__name__ == "RobertaSeriesModelWithTransformation"
    assert len(tokenizer) == encoder.config.vocab_size and tokenizer.pad_token_id == encoder.config.pad_token_id
    assert encoder.config.max_position_embeddings >= tokenizer.model_max_length + tokenizer.pad_token_id + 1
    with torch.no_grad():
        ids = tokenizer(["a photo of a cat"], padding="max_length", return_tensors="pt")
        projected = encoder(ids.input_ids, attention_mask=ids.attention_mask)[0]
        noise = unet(torch.randn(1, DIMS.latent_channels, 16, 16), 10, encoder_hidden_states=projected).sample
    assert projected.shape == (1, tokenizer.model_max_length, unet.config.cross_attention_dim)
    assert noise.shape == (1, DIMS.latent_channels, 16, 16) and torch.isfinite(noise).all()


def test_krea2_couplings():
    """Krea 2: its prompt template tokenizes into the 34 prefix tokens it drops and the 5 suffix tokens it appends
    (so prompts reach the encoder); the transformer stacks as many Qwen3-VL hidden states per token as the pipeline
    taps, each as wide as the encoder, and different prompts give different embeddings."""
    from diffusers import Krea2Pipeline

    components = build_components(Krea2Pipeline)
    tokenizer, encoder, transformer = components["tokenizer"], components["text_encoder"], components["transformer"]
    assert type(encoder).__name__ == "Qwen3VLModel" and len(tokenizer) == encoder.config.text_config.vocab_size
    pipe = Krea2Pipeline(**components)
    prefix = tokenizer(pipe.prompt_template_encode_prefix).input_ids
    assert len(prefix) == pipe.prompt_template_encode_start_idx
    assert (
        len(tokenizer(pipe.prompt_template_encode_suffix).input_ids) == pipe.prompt_template_encode_num_suffix_tokens
    )
    assert transformer.config.num_text_layers == len(pipe.text_encoder_select_layers)
    assert max(pipe.text_encoder_select_layers) <= encoder.config.text_config.num_hidden_layers
    assert transformer.config.text_hidden_dim == encoder.config.text_config.hidden_size
    assert transformer.config.in_channels == 4 * components["vae"].config.z_dim  # latents packed 2 x 2
    with torch.no_grad():
        embeds, mask = pipe.encode_prompt(
            ["a photo of a cat", "the dog"], max_sequence_length=DIMS.max_sequence_length
        )
    assert embeds.shape[:3] == (2, DIMS.max_sequence_length, len(pipe.text_encoder_select_layers))
    assert not torch.equal(embeds[0], embeds[1]) and not torch.equal(mask[0], mask[1])


@pytest.mark.slow
@pytest.mark.parametrize(
    "source",
    [
        # each net's control image repeated, sampled and appended to a list: the list split item by item
        "pipelines/controlnet_sd3/pipeline_stable_diffusion_3_controlnet.py",
        "pipelines/controlnet_hunyuandit/pipeline_hunyuandit_controlnet.py",
        # the multi class in the component's annotation beside `list[...]`, which `isinstance` cannot check
        "pipelines/controlnet/pipeline_controlnet.py",
    ],
)
def test_multi_controlnet_with_two_nets_verifies_bitwise(tmp_path, source):
    from modularize.frontend.source_file import installed_diffusers_file
    from modularize.testing.components.controlnet import multi_controlnet_setup
    from modularize.testing.equivalence import load_package, package_classes, standard_class

    package = tmp_path / "package"
    assert main([str(installed_diffusers_file(source)), "-o", str(package), "-q"]) == 0
    pipeline_cls, _ = package_classes(load_package(package))
    standard = standard_class(pipeline_cls, package)
    report = verify_package(package, exact=True, components=lambda: multi_controlnet_setup(standard))
    assert report.ok, [c for c in report.cases if not c.passed]
    assert all(c.status == "compared" and c.bitwise for c in report.cases)
    assert {c.mode for c in report.cases} == {"plain", "exact"}
    assert any(isinstance(c.inputs.get("controlnet_conditioning_scale"), list) for c in report.cases)
