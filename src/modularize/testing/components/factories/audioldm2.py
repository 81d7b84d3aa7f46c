"""AudioLDM 2: its projection model, its GPT-2 language model and its two-conditioning UNet.

AudioLDM 2 encodes a prompt twice, with CLAP (one pooled embedding, `clip_projection` wide) and with T5 (a sequence
of hidden states, `text_width("text_encoder_2")` wide); the projection model maps both to the language model's width
and joins them; GPT-2 continues that sequence by `max_new_tokens` hidden states. The UNet attends to both the
generated states (its first cross-attention) and T5's (its second):

    CLAP (batch, 1, 32) --+                                   +--> UNet cross-attention 1 (LANGUAGE_MODEL_WIDTH)
                          +--> projection --> GPT-2 (16 wide) +
    T5 (batch, tokens, 32) ---------------------------------------> UNet cross-attention 2 (T5's width)

The language model is narrower than the text encoders, so the two cross-attention inputs cannot be swapped silently.
"""

from __future__ import annotations

from ..registry import Need, factory
from .audio import VOCODER_SAMPLING_RATE, VOCODER_UPSAMPLE_RATES

# GPT-2: half the text encoders' width (see above), two heads, and 4 generated hidden states per prompt
LANGUAGE_MODEL_WIDTH = 16
LANGUAGE_MODEL_HEADS = 2
MAX_NEW_TOKENS = 4
# the positions GPT-2 numbers: CLAP's state and T5's prompt (each between a start and an end embedding) and the
# generated states; 64 covers the test prompts' few tokens with room to spare
LANGUAGE_MODEL_POSITIONS = 64
# the clip the UNet's `sample_size` stands for (the pipeline's default `audio_length_in_s`), as AudioLDM's tests ask
# for with `audio_length_in_s`: 2 seconds are 8 spectrogram frames of the tiny vocoder
DEFAULT_SECONDS = 2


def _t5_width(need: Need) -> int:
    return need.text_width("text_encoder_2")


@factory("AudioLDM2ProjectionModel")
def audioldm2_projection_model(need: Need):
    """From CLAP's projected text embedding and T5's hidden states to the language model's width."""
    return need.model(
        need.cls,
        text_encoder_dim=need.dims.clip_projection,
        text_encoder_1_dim=_t5_width(need),
        langauge_model_dim=LANGUAGE_MODEL_WIDTH,
    )


@factory("GPT2LMHeadModel", "GPT2Model")
def gpt2(need: Need):
    """GPT-2 fed with embeddings (the pipeline never gives it token ids: any small vocabulary does). The pipeline
    reads how many states to generate from `config.max_new_tokens` where its caller does not say."""
    from transformers import GPT2Config

    d = need.dims
    config = GPT2Config(
        vocab_size=100,
        n_embd=LANGUAGE_MODEL_WIDTH,
        n_head=LANGUAGE_MODEL_HEADS,
        n_layer=d.text_layers,
        n_inner=d.text_intermediate,
        n_positions=LANGUAGE_MODEL_POSITIONS,
        # (GPT-2's default start / end id is past the small vocabulary; no token ids are fed anyway)
        bos_token_id=0,
        eos_token_id=0,
    )
    model = need.model(need.cls, config=config)
    model.config.max_new_tokens = MAX_NEW_TOKENS
    return model


@factory("AudioLDM2UNet2DConditionModel")
def audioldm2_unet(need: Need):
    """Each attention block: a self-attention (`None`), a cross-attention to the language model's generated states
    and one to T5's hidden states. Its `sample_size` is the latent height of a `DEFAULT_SECONDS` clip; the latent
    width is the spectrogram's bins (`dims.mel_bins`, the vocoder's input) over the VAE's scale."""
    d = need.dims
    frames_per_second = VOCODER_SAMPLING_RATE
    for rate in VOCODER_UPSAMPLE_RATES:
        frames_per_second //= rate
    attention = [None, LANGUAGE_MODEL_WIDTH, _t5_width(need)]
    return need.model(
        need.cls,
        sample_size=DEFAULT_SECONDS * frames_per_second // d.vae_scale_factor,
        in_channels=d.latent_channels,
        out_channels=d.latent_channels,
        block_out_channels=d.block_out,
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=[attention] * len(d.block_out),
        attention_head_dim=d.heads,  # (the number of heads, as UNet2DConditionModel's misnamed argument)
        norm_num_groups=32,
    )
