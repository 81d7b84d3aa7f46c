"""AudioLDM 2's tiny components by class: the widths its projection model, language model and two-conditioning UNet
must agree on, the pieces running together, and the converted package verifying bitwise."""

from __future__ import annotations

import pytest
import torch

from modularize.testing.components import DIMS, build_components, setup_by_class
from modularize.testing.components.resolve import resolve

from .test_verify import converted_and_bitwise


def _components():
    from diffusers import AudioLDM2Pipeline

    return build_components(AudioLDM2Pipeline)


def test_audioldm2_couplings():
    """CLAP's projection and T5's width feed the projection model, which outputs GPT-2's width; the UNet's
    attention blocks attend to GPT-2's states and T5's (in that order), each block and the middle one alike; the
    language model is narrower than T5, so the two cannot be swapped unnoticed."""
    from diffusers import AudioLDM2Pipeline

    assert not resolve(AudioLDM2Pipeline).missing
    parts = _components()
    clap, t5, projection = parts["text_encoder"], parts["text_encoder_2"], parts["projection_model"]
    gpt2, unet, vae, vocoder = parts["language_model"], parts["unet"], parts["vae"], parts["vocoder"]
    assert type(gpt2).__name__ == "GPT2LMHeadModel" and type(t5).__name__ == "T5EncoderModel"
    assert projection.config.text_encoder_dim == clap.config.projection_dim
    assert projection.config.text_encoder_1_dim == t5.config.d_model
    assert projection.config.langauge_model_dim == gpt2.config.n_embd != t5.config.d_model
    expected = [None, gpt2.config.n_embd, t5.config.d_model]
    assert [list(dims) for dims in unet.config.cross_attention_dim] == [expected] * len(unet.config.block_out_channels)
    assert unet.config.in_channels == unet.config.out_channels == vae.config.latent_channels
    assert vae.config.in_channels == 1 and vocoder.config.model_in_dim == DIMS.mel_bins
    assert len(parts["tokenizer_2"]) == t5.config.vocab_size
    assert gpt2.config.max_new_tokens > 0  # (the pipeline reads it where the caller gives no `max_new_tokens`)
    # the pipeline's default clip (the UNet's `sample_size`) is 2 seconds
    upsampling = 1
    for rate in vocoder.config.upsample_rates:
        upsampling *= rate
    frames = unet.config.sample_size * DIMS.vae_scale_factor
    assert frames * upsampling / vocoder.config.sampling_rate == 2


def test_audioldm2_pieces_run_together():
    """Prompt -> CLAP + T5 -> projection -> GPT-2's generated states -> the UNet's two cross-attentions, with CFG:
    the negative T5 prompt is padded to the positive one's length."""
    from diffusers import AudioLDM2Pipeline

    parts = _components()
    pipe = AudioLDM2Pipeline(**parts)
    gpt2, unet = parts["language_model"], parts["unet"]
    with torch.no_grad():
        embeds, mask, generated = pipe.encode_prompt("a photo of a cat", "cpu", 1, True, negative_prompt="blurry")
        assert embeds.shape[0] == mask.shape[0] == generated.shape[0] == 2
        assert embeds.shape[1] == mask.shape[1] and embeds.shape[2] == parts["text_encoder_2"].config.d_model
        assert generated.shape[1:] == (gpt2.config.max_new_tokens, gpt2.config.n_embd)
        assert not torch.equal(generated[0], generated[1])  # the negative prompt is generated from, too
        latents = torch.randn(2, unet.config.in_channels, unet.config.sample_size, DIMS.mel_bins // 2)
        noise = unet(latents, 10, encoder_hidden_states=generated, encoder_hidden_states_1=embeds).sample
    assert noise.shape == latents.shape and torch.isfinite(noise).all()
    names = {case for case, _ in setup_by_class(AudioLDM2Pipeline).cases}
    assert {"default", "cfg_off", "negative_prompt", "two_prompts_x2", "cfg_off_latent"} <= names


@pytest.mark.slow
def test_audioldm2_verifies_bitwise_by_class(tmp_path):
    torch.set_num_threads(1)
    _, report = converted_and_bitwise(tmp_path, "pipelines/audioldm2/pipeline_audioldm2.py")
    assert {c.mode for c in report.cases} == {"plain", "exact"}
    assert {"default", "negative_prompt", "two_prompts_x2"} <= {c.name for c in report.cases}
