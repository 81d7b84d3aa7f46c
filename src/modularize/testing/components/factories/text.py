"""Tokenizers and text encoders. Every text encoder is `dims.text_hidden` wide and its `vocab_size` is the length
of the tokenizer it is paired with."""

from __future__ import annotations

import functools

from ...tokenizers import (
    tiny_bert_tokenizer,
    tiny_chatglm_tokenizer,
    tiny_clip_tokenizer,
    tiny_gemma_tokenizer,
    tiny_qwen2_tokenizer,
    tiny_roberta_tokenizer,
    tiny_t5_tokenizer,
    tiny_xlm_roberta_tokenizer,
)
from ..registry import Need, factory

# a chat template in the shape of Qwen's, for pipelines that template prompts with `apply_chat_template`
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}{% if part['type'] == 'text' %}{{ part['text'] }}"
    "{% elif part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>{% endif %}{% endfor %}"
    "{% endif %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


# -- tokenizers ----------------------------------------------------------------------------------------------------
@factory("CLIPTokenizer", "CLIPTokenizerFast")
def clip_tokenizer(need: Need):
    return tiny_clip_tokenizer(need.dims.clip_max_length)


@factory("T5Tokenizer", "T5TokenizerFast")
def t5_tokenizer(need: Need):
    return tiny_t5_tokenizer()


@factory("Qwen2Tokenizer", "Qwen2TokenizerFast")
def qwen2_tokenizer(need: Need):
    """With Qwen-VL's image markers where the pipeline has a vision-language processor (they become tokens its
    text encoder knows)."""
    tokenizer = tiny_qwen2_tokenizer(vision=need.has_class(*VISION_PROCESSORS), words=_template_words(need))
    tokenizer.chat_template = CHAT_TEMPLATE
    if need.has_class("GlmModel"):
        glm_like(tokenizer)
    return tokenizer


def _template_words(need: Need) -> tuple[str, ...]:
    """The words of the pipeline's fixed prompt template, where it assumes how many tokens the template is."""
    if need.has_class("Krea2Transformer2DModel"):
        from .krea2 import KREA2_TEMPLATE_WORDS

        return KREA2_TEMPLATE_WORDS
    if need.has_class("Kandinsky5Transformer3DModel"):
        from .kandinsky5 import kandinsky5_template_words

        return kandinsky5_template_words(need.pipeline)
    return ()


GLM_PREFIX = ("[gMASK]", "<sop>")


def glm_like(tokenizer) -> None:
    """Make a byte-level BPE tokenizer behave like GLM-4's (CogView4's): every encoding starts with the special
    tokens `[gMASK]<sop>` (so an empty prompt, CogView4's default negative one, is two tokens, not none), and a batch
    of prompts is padded on the left."""
    from tokenizers import AddedToken, processors

    tokenizer.add_tokens(
        [AddedToken(token, special=True, normalized=False) for token in GLM_PREFIX], special_tokens=True
    )
    ids = [tokenizer.convert_tokens_to_ids(token) for token in GLM_PREFIX]
    prefix = " ".join(GLM_PREFIX)
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{prefix} $A", pair=f"{prefix} $A $B", special_tokens=list(zip(GLM_PREFIX, ids, strict=True))
    )
    tokenizer.padding_side = "left"


VISION_PROCESSORS = ("Qwen2VLProcessor", "Qwen3VLProcessor")
# Qwen-VL image processing: every image becomes 56 x 56 pixels, 4 x 4 patches of 14, merged 2 x 2 into 4 tokens
QWEN_VL_PATCH, QWEN_VL_MERGE, QWEN_VL_PIXELS = 14, 2, 56 * 56


@factory("Qwen2VLProcessor", "Qwen3VLProcessor")
def qwen_vl_processor(need: Need):
    from transformers import Qwen2VLImageProcessorPil

    image_processor = Qwen2VLImageProcessorPil(
        patch_size=QWEN_VL_PATCH,
        merge_size=QWEN_VL_MERGE,
        temporal_patch_size=2,
        min_pixels=QWEN_VL_PIXELS,
        max_pixels=QWEN_VL_PIXELS,
    )
    tokenizer = tiny_qwen2_tokenizer(vision=True, words=_template_words(need))
    tokenizer.chat_template = CHAT_TEMPLATE
    return images_only(need.cls)(image_processor=image_processor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE)


@functools.cache
def images_only(processor_cls: type) -> type:
    """`processor_cls` without its video processor (which needs torchvision to even be type-checked): the
    pipelines pass images only."""

    class ImagesOnly(processor_cls):
        @classmethod
        def get_attributes(cls):
            return [name for name in super().get_attributes() if name != "video_processor"]

    ImagesOnly.__name__ = ImagesOnly.__qualname__ = processor_cls.__name__
    return ImagesOnly


def _vision_token_ids(need: Need) -> dict[str, int]:
    """The ids of the image markers in the paired tokenizer (where it has them)."""
    tokenizer = need.tokenizer()
    names = {
        "image_token_id": "<|image_pad|>",
        "video_token_id": "<|video_pad|>",
        "vision_start_token_id": "<|vision_start|>",
        "vision_end_token_id": "<|vision_end|>",
    }
    vocab = tokenizer.get_vocab()
    return {key: vocab[token] for key, token in names.items() if token in vocab}


@factory("GemmaTokenizer", "GemmaTokenizerFast")
def gemma_tokenizer(need: Need):
    return tiny_gemma_tokenizer()


@factory("ChatGLMTokenizer")
def chatglm_tokenizer(need: Need):
    return tiny_chatglm_tokenizer(need.cls)


@factory("BertTokenizer", "BertTokenizerFast")
def bert_tokenizer(need: Need):
    """Padded to CLIP's length: the pipelines that pair BERT with a T5 (HunyuanDiT) pad its prompt to 77."""
    return tiny_bert_tokenizer(need.dims.clip_max_length)


@factory("RobertaTokenizer", "RobertaTokenizerFast")
def roberta_tokenizer(need: Need):
    """CLAP's tokenizer, padding prompts to `max_sequence_length` tokens (the pipelines pad to its length)."""
    return tiny_roberta_tokenizer(need.dims.max_sequence_length)


@factory("XLMRobertaTokenizer", "XLMRobertaTokenizerFast")
def xlm_roberta_tokenizer(need: Need):
    return tiny_xlm_roberta_tokenizer(need.dims.clip_max_length)


@factory("ByT5Tokenizer")
def byt5_tokenizer(need: Need):
    from transformers import ByT5Tokenizer

    return ByT5Tokenizer()


# -- text encoders -------------------------------------------------------------------------------------------------
def _text_tower(need: Need, tokenizer) -> dict:
    """What every tiny transformer text tower shares: as wide as the pipeline's text encoders, the shared depth,
    its tokenizer's vocabulary and special ids."""
    d = need.dims
    return {
        "vocab_size": len(tokenizer),
        "hidden_size": need.text_width(need.name),
        "intermediate_size": d.text_intermediate,
        "num_attention_heads": d.text_heads,
        "num_hidden_layers": d.text_layers,
        "projection_dim": d.clip_projection,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }


def _clip_config(need: Need):
    from transformers import CLIPTextConfig

    tokenizer = need.tokenizer()
    return CLIPTextConfig(**_text_tower(need, tokenizer), max_position_embeddings=need.dims.clip_max_length)


@factory("CLIPTextModel", "CLIPTextModelWithProjection")
def clip_text_model(need: Need):
    return need.model(need.cls, config=_clip_config(need))


@factory("ContextCLIPTextModel")
def context_clip_text_model(need: Need):
    """BLIP-Diffusion's CLIP text tower, which splices the Q-Former's query embeddings into the prompt's token
    embeddings (no projection between them): the Q-Former is as wide as this encoder (`vision.blip2_qformer`), and
    its position embeddings cover the prompt's tokens plus the queries (`clip_max_length` in all)."""
    return need.model(need.cls, config=_clip_config(need))


def _clap_text_config(need: Need):
    """CLAP's text tower (a RoBERTa): as wide as every text encoder, its projection `clip_projection` wide, position
    embeddings for its tokenizer's whole length (RoBERTa numbers positions from just past the padding id)."""
    from transformers import ClapTextConfig

    tokenizer = need.tokenizer()
    positions = tokenizer.model_max_length + tokenizer.pad_token_id + 1
    return ClapTextConfig(**_text_tower(need, tokenizer), max_position_embeddings=positions)


@factory("ClapTextModelWithProjection")
def clap_text_model(need: Need):
    return need.model(need.cls, config=_clap_text_config(need))


# CLAP's audio tower (HTSAT, a Swin transformer) reads log-mel spectrograms of `CLAP_MEL_BINS` bins laid out as a
# `CLAP_SPEC_SIZE` square image (here 2 x 8 bins by 32 / 2 frames), cut into patches of 2, windows of 4 patches
CLAP_MEL_BINS = 8
CLAP_SPEC_SIZE = 16


@factory("ClapModel")
def clap_model(need: Need):
    """CLAP, text and audio: the text tower above and a two-stage audio tower for the spectrograms of the
    `ClapFeatureExtractor` factory, both projected to `clip_projection` (the pipelines score audio against text).

    Its `get_text_features` returns the normalized projected text embedding, as it did in transformers 4 (the
    pipelines that call it, MusicLDM, were written against that; transformers 5 wraps it in a model output)."""
    from transformers import ClapAudioConfig, ClapConfig

    text = _clap_text_config(need)
    audio = ClapAudioConfig(
        spec_size=CLAP_SPEC_SIZE,
        num_mel_bins=CLAP_MEL_BINS,
        window_size=4,
        patch_size=2,
        patch_stride=2,
        patch_embeds_hidden_size=8,
        hidden_size=16,  # the patch embedding's width, doubled by the one patch merge between the two stages
        depths=[1, 1],
        num_attention_heads=[2, 2],
        intermediate_size=need.dims.text_intermediate,
    )
    config = ClapConfig(text_config=text.to_dict(), audio_config=audio.to_dict(), projection_dim=text.projection_dim)
    return need.model(text_features_as_tensor(need.cls), config=config)


@functools.cache
def text_features_as_tensor(clap_cls: type) -> type:
    """`clap_cls` whose `get_text_features` returns the projected text embedding itself (transformers 4's contract)
    where transformers returns it as a model output's `pooler_output`."""
    from transformers.utils import ModelOutput

    class TextFeaturesAsTensor(clap_cls):
        def get_text_features(self, *args, **kwargs):
            features = super().get_text_features(*args, **kwargs)
            return features.pooler_output if isinstance(features, ModelOutput) else features

    TextFeaturesAsTensor.__name__ = TextFeaturesAsTensor.__qualname__ = clap_cls.__name__
    return TextFeaturesAsTensor


@factory("BertModel")
def bert_model(need: Need):
    """A BERT as wide as every text encoder, with position embeddings for its tokenizer's whole length."""
    from transformers import BertConfig

    tokenizer = need.tokenizer()
    d = need.dims
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=need.text_width(need.name),
        num_hidden_layers=d.text_layers,
        num_attention_heads=d.text_heads,
        intermediate_size=d.text_intermediate,
        max_position_embeddings=tokenizer.model_max_length,
        pad_token_id=tokenizer.pad_token_id,
    )
    return need.model(need.cls, config=config)


@factory("MultilingualCLIP")
def multilingual_clip(need: Need):
    """Kandinsky 2.1's text encoder: an XLM-RoBERTa as wide as every text encoder (its hidden states feed the
    UNet's cross-attention) whose mean-pooled state is projected into the CLIP image-embedding space
    (`clip_projection` wide, like the image embeddings it is used with). XLM-R numbers positions from past its
    padding id: position embeddings for the pipeline's 77 tokens start there."""
    width = need.text_width(need.name)
    config = need.cls.config_class(
        transformerDimSize=width, imageDimSize=need.dims.clip_projection, **xlm_roberta_sizes(need, width)
    )
    return need.model(need.cls, config=config)


def xlm_roberta_sizes(need: Need, width: int) -> dict:
    """An XLM-RoBERTa config's sizes and special ids: `width` wide, the shared text depth, the paired tokenizer's
    vocabulary and ids, position embeddings for the pipeline's 77 tokens counted from past the padding id."""
    tokenizer = need.tokenizer()
    d = need.dims
    return {
        "vocab_size": len(tokenizer),
        "hidden_size": width,
        "num_hidden_layers": d.text_layers,
        "num_attention_heads": d.text_heads,
        "intermediate_size": d.text_intermediate,
        "max_position_embeddings": d.clip_max_length + tokenizer.pad_token_id + 1,
        "type_vocab_size": 1,
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }


@factory("LDMBertModel")
def ldm_bert_model(need: Need):
    """LDM's BERT-style encoder (defined in its pipeline's file; its config class is the model's `config_class`):
    as wide as every text encoder, position embeddings for its tokenizer's whole length."""
    tokenizer = need.tokenizer()
    d = need.dims
    width = need.text_width(need.name)
    config = need.cls.config_class(
        vocab_size=len(tokenizer),
        max_position_embeddings=tokenizer.model_max_length,
        d_model=width,
        encoder_layers=d.text_layers,
        encoder_attention_heads=d.text_heads,
        head_dim=width // d.text_heads,
        encoder_ffn_dim=d.text_intermediate,
        pad_token_id=tokenizer.pad_token_id,
    )
    return need.model(need.cls, config=config)


@factory("T5EncoderModel", "UMT5EncoderModel")
def t5_encoder(need: Need):
    from transformers import T5Config, UMT5Config

    tokenizer = need.tokenizer()
    config_cls = UMT5Config if "UMT5" in need.cls.__name__ else T5Config
    d = need.dims
    config = config_cls(
        vocab_size=len(tokenizer),
        d_model=need.text_width(need.name),
        d_ff=d.text_intermediate,
        d_kv=8,
        num_layers=d.text_layers,
        num_heads=d.text_heads,
        relative_attention_num_buckets=8,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    return need.model(need.cls, config=config)


def qwen2_5_vl_config(need: Need, layers: int | None = None):
    """Qwen2.5-VL: the text width is `text_hidden`; the multimodal rotary sections add up to half the head size;
    one vision block whose merger outputs the text width."""
    from transformers import Qwen2_5_VLConfig

    width = need.text_width(need.name)
    heads = 2
    half = width // heads // 2
    return Qwen2_5_VLConfig(
        text_config={
            "vocab_size": need.tokenizer_length(),
            "hidden_size": width,
            "intermediate_size": 64,
            "num_hidden_layers": layers or need.dims.text_layers,
            "num_attention_heads": heads,
            "num_key_value_heads": heads,
            "max_position_embeddings": 4096,
            "rope_parameters": {
                "rope_type": "default",
                "mrope_section": [half - 2 * (half // 3), half // 3, half // 3],
                "rope_theta": 1000000.0,
            },
        },
        vision_config={
            "depth": 1,
            "hidden_size": 16,
            "intermediate_size": 16,
            "num_heads": 2,
            "out_hidden_size": width,
            "fullatt_block_indexes": [0],
            "patch_size": QWEN_VL_PATCH,
            "spatial_merge_size": QWEN_VL_MERGE,
            "temporal_patch_size": 2,
        },
        **_vision_token_ids(need),
    )


@factory("Qwen2_5_VLForConditionalGeneration")
def qwen2_5_vl(need: Need):
    return need.model(need.cls, config=qwen2_5_vl_config(need))


@factory("Qwen2_5_VLTextModel")
def qwen2_5_vl_text(need: Need):
    return need.model(need.cls, config=qwen2_5_vl_config(need).text_config)


def _qwen3_config(need: Need):
    from transformers import Qwen3Config

    return Qwen3Config(
        vocab_size=need.tokenizer_length(),
        hidden_size=need.text_width(need.name),
        intermediate_size=32,
        num_hidden_layers=need.dims.text_layers,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=1024,
    )


@factory("Qwen3Model", "Qwen3ForCausalLM")
def qwen3(need: Need):
    return need.model(need.cls, config=_qwen3_config(need))


@factory("GlmModel")
def glm(need: Need):
    """GLM-4 (CogView4's text encoder): `text_layers` blocks at the text width (the pipeline reads the hidden states
    of the second-to-last), heads of 8 channels (half of them rotary), its vocabulary and padding id the paired
    tokenizer's."""
    from transformers import GlmConfig

    tokenizer = need.tokenizer()
    d = need.dims
    config = GlmConfig(
        vocab_size=len(tokenizer),
        hidden_size=need.text_width(need.name),
        intermediate_size=d.text_intermediate,
        num_hidden_layers=d.text_layers,
        num_attention_heads=d.text_heads,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=1024,
        pad_token_id=tokenizer.pad_token_id,
    )
    return need.model(need.cls, config=config)


@factory("Gemma2Model", "Gemma2PreTrainedModel")
def gemma2(need: Need):
    from transformers import Gemma2Config, Gemma2Model

    tokenizer = need.tokenizer()
    config = Gemma2Config(
        head_dim=16,
        hidden_size=need.text_width(need.name),
        intermediate_size=64,
        max_position_embeddings=8192,
        num_attention_heads=2,
        num_hidden_layers=1,
        num_key_value_heads=2,
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        attn_implementation="eager",
    )
    cls = Gemma2Model if need.cls.__name__ == "Gemma2PreTrainedModel" else need.cls
    return need.model(cls, config=config)


@factory("LlamaTokenizer", "LlamaTokenizerFast")
def llama_tokenizer(need: Need):
    """Llama's byte-fallback BPE over the same small alphabet as the Gemma one (no sentencepiece)."""
    from transformers import LlamaTokenizer

    gemma = tiny_gemma_tokenizer()
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for token in gemma.get_vocab():
        if token not in ("<pad>", "<eos>", "<bos>", "<unk>", "<mask>"):
            vocab.setdefault(token, len(vocab))
    merges = [("▁", "a"), ("c", "a"), ("▁", "ca")]
    if need.has_class("LlavaForConditionalGeneration"):  # LLaVA: an image placeholder its model expands
        vocab.setdefault(LLAVA_IMAGE_TOKEN, len(vocab))
        tokenizer = LlamaTokenizer(vocab=vocab, merges=merges)
        tokenizer.add_special_tokens({"pad_token": "<unk>", "additional_special_tokens": [LLAVA_IMAGE_TOKEN]})
        return tokenizer
    if not need.has_class("Mistral3ForConditionalGeneration"):
        tokenizer = LlamaTokenizer(vocab=vocab, merges=merges)
        tokenizer.pad_token = "<unk>"
        return tokenizer
    # Mistral 3 (Flux 2): its processor's text side, which is all the pipeline uses (`apply_chat_template`) and
    # which needs no torchvision: a pad token, Pixtral's image markers and a chat template
    for token in ("<pad>", *MISTRAL_SPECIALS):
        vocab.setdefault(token, len(vocab))
    tokenizer = LlamaTokenizer(vocab=vocab, merges=merges)
    tokenizer.add_special_tokens({"pad_token": "<pad>", "additional_special_tokens": list(MISTRAL_SPECIALS)})
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


@factory("LlamaModel")
def llama(need: Need):
    return need.model(need.cls, config=_llama_config(need))


def _llama_config(need: Need):
    from transformers import LlamaConfig

    tokenizer = need.tokenizer()
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=need.text_width(need.name),
        intermediate_size=37,
        num_attention_heads=4,
        num_key_value_heads=4,
        num_hidden_layers=need.dims.text_layers,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


@factory("LlavaForConditionalGeneration")
def llava(need: Need):
    """LLaVA: the Llama text model above and a CLIP vision tower whose patch features (CLS dropped) replace the
    tokenizer's `<image>` placeholder: 32-pixel images, 4 x 4 patches of 8, 16 image tokens."""
    from transformers import CLIPVisionConfig, LlavaConfig

    from .vision import IMAGE_ENCODER_SIZE

    text = _llama_config(need)
    vision = CLIPVisionConfig(
        hidden_size=16,
        intermediate_size=37,
        projection_dim=32,
        num_attention_heads=4,
        num_hidden_layers=2,
        image_size=IMAGE_ENCODER_SIZE,
        patch_size=8,
    )
    image_token = need.tokenizer().convert_tokens_to_ids(LLAVA_IMAGE_TOKEN)
    config = LlavaConfig(
        vision_config=vision, text_config=text, image_token_index=image_token, pad_token_id=text.pad_token_id
    )
    return need.model(need.cls, config=config)


@factory("Qwen2VLForConditionalGeneration")
def qwen2_vl(need: Need):
    from transformers import Qwen2VLConfig

    width = need.text_width(need.name)
    half = width // 2 // 2
    config = Qwen2VLConfig(
        text_config={
            "vocab_size": need.tokenizer_length(),
            "hidden_size": width,
            "intermediate_size": 64,
            "num_hidden_layers": need.dims.text_layers,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
            "rope_parameters": {
                "rope_type": "default",
                "mrope_section": [half - 2 * (half // 3), half // 3, half // 3],
                "rope_theta": 1000000.0,
            },
        },
        vision_config={"depth": 1, "embed_dim": 16, "hidden_size": width, "num_heads": 2, "mlp_ratio": 1},
    )
    return need.model(need.cls, config=config)


@factory("T5Gemma2Encoder")
def t5gemma2_encoder(need: Need):
    """T5Gemma 2's encoder: a Gemma 3 text stack and a (tiny) SigLIP vision tower."""
    from transformers import T5Gemma2EncoderConfig, T5Gemma2TextConfig

    width = need.text_width(need.name)
    text_config = T5Gemma2TextConfig(
        hidden_size=width,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        vocab_size=need.tokenizer_length(),
        max_position_embeddings=128,
        head_dim=16,
        num_key_value_heads=2,
        dropout_rate=0.0,
    )
    vision_config = {
        "hidden_size": width,
        "intermediate_size": 37,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "image_size": 32,
        "patch_size": 8,
    }
    config = T5Gemma2EncoderConfig(text_config=text_config, vision_config=vision_config, mm_tokens_per_image=4)
    return need.model(need.cls, config=config)


@factory("T5GemmaEncoderModel")
def t5gemma_encoder(need: Need):
    from transformers import T5GemmaConfig, T5GemmaModuleConfig

    module = T5GemmaModuleConfig(
        vocab_size=need.tokenizer_length(),
        hidden_size=need.text_width(need.name),
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        max_position_embeddings=64,
        sliding_window=64,
        layer_types=["full_attention", "full_attention"],
    ).to_dict()
    return need.model(need.cls, config=T5GemmaConfig(encoder=module, decoder=module, is_encoder_decoder=False))


@factory("Qwen3VLForConditionalGeneration")
def qwen3_vl(need: Need):
    """Qwen3-VL: text at `text_hidden` (head size 8: rotary sections 1 + 1 + 2), one vision block whose patches,
    merge and output width match the processor and the text."""
    from transformers import Qwen3VLConfig

    width = need.text_width(need.name)
    config = Qwen3VLConfig(
        text_config={
            "hidden_size": width,
            "intermediate_size": 32,
            "num_hidden_layers": need.dims.text_layers,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "head_dim": 8,
            "rope_parameters": {"rope_type": "default", "mrope_section": [1, 1, 2], "rope_theta": 1000000.0},
            "vocab_size": need.tokenizer_length(),
        },
        vision_config={
            "depth": 1,
            "hidden_size": 16,
            "intermediate_size": 16,
            "num_heads": 2,
            "out_hidden_size": width,
            "patch_size": QWEN_VL_PATCH,
            "spatial_merge_size": QWEN_VL_MERGE,
            "temporal_patch_size": 2,
            "deepstack_visual_indexes": [],
        },
        **_vision_token_ids(need),
    )
    return need.model(need.cls, config=config)


MISTRAL_SPECIALS = ("[IMG]", "[IMG_BREAK]", "[IMG_END]")
LLAVA_IMAGE_TOKEN = "<image>"


@factory("Mistral3ForConditionalGeneration")
def mistral3(need: Need):
    from transformers import Mistral3Config

    tokenizer = need.tokenizer()
    vocab = tokenizer.get_vocab()
    config = Mistral3Config(
        text_config={
            "model_type": "mistral",
            "vocab_size": len(tokenizer),
            "hidden_size": need.text_width(need.name),
            "intermediate_size": 37,
            "max_position_embeddings": 512,
            "num_attention_heads": 4,
            "num_hidden_layers": need.dims.text_layers,
            "num_key_value_heads": 2,
            "sliding_window": None,
            "bos_token_id": vocab["<s>"],
            "eos_token_id": vocab["</s>"],
            "pad_token_id": vocab["<pad>"],
        },
        vision_config={
            "model_type": "pixtral",
            "hidden_size": 16,
            "num_hidden_layers": 1,
            "num_attention_heads": 4,
            "intermediate_size": 37,
            "image_size": 32,
            "patch_size": 8,
            "num_channels": 3,
        },
        image_token_index=vocab["[IMG]"],
        vision_feature_layer=-1,
    )
    return need.model(need.cls, config=config)


# Kolors pads its prompts to 256 tokens unless told otherwise: ChatGLM's rotary table covers that many positions
CHATGLM_POSITIONS = 256


@factory("ChatGLMModel")
def chatglm(need: Need):
    """ChatGLM (Kolors): `text_layers` blocks at the text width, one head per 8 channels (its rotary size), its
    vocabulary the paired tokenizer's. Every weight is drawn from the seed: `empty_init=False` initializes the linear
    layers (its default leaves them as uninitialized memory), and the RMS norms get weights around 1 here."""
    from diffusers.pipelines.kolors.text_encoder import ChatGLMConfig

    d = need.dims
    width = need.text_width(need.name)
    config = ChatGLMConfig(
        num_layers=d.text_layers,
        padded_vocab_size=need.tokenizer_length(),
        hidden_size=width,
        ffn_hidden_size=d.text_intermediate,
        kv_channels=width // d.text_heads,
        num_attention_heads=d.text_heads,
        seq_length=CHATGLM_POSITIONS,
        original_rope=True,
    )

    def build(**kwargs):
        import torch

        model = need.cls(**kwargs)
        with torch.no_grad():  # its RMS norms' weights are `torch.empty` that nothing initializes
            for module in model.modules():
                if type(module).__name__ == "RMSNorm":
                    module.weight.copy_(1 + 0.1 * torch.randn_like(module.weight))
        return model

    return need.model(build, config=config, empty_init=False)
