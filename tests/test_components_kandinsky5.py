"""Kandinsky 5's tiny components: the transformer reads the Qwen2.5-VL states, the CLIP pooled embedding and the
VAE's latents; its prompt template is exactly the tokens the pipeline drops; nothing starts out as a constant."""

from __future__ import annotations

import pytest
import torch

from modularize.testing.components import DIMS, build_components

VIDEO = ("Kandinsky5T2VPipeline", "Kandinsky5I2VPipeline")
IMAGE = ("Kandinsky5T2IPipeline", "Kandinsky5I2IPipeline")
CONDITIONED = ("Kandinsky5I2VPipeline", "Kandinsky5I2IPipeline")


def _pipeline(name: str):
    import diffusers

    cls = getattr(diffusers, name)
    return cls(**build_components(cls))


@pytest.mark.parametrize("name", VIDEO + IMAGE)
def test_kandinsky5_components_are_coupled(name):
    pipe = _pipeline(name)
    transformer, qwen, clip = pipe.transformer, pipe.text_encoder, pipe.text_encoder_2
    assert transformer.config.in_text_dim == qwen.config.text_config.hidden_size
    assert transformer.config.in_text_dim2 == clip.config.hidden_size
    assert transformer.config.in_visual_dim == transformer.config.out_visual_dim == DIMS.latent_channels
    assert pipe.vae.config.latent_channels == DIMS.latent_channels
    assert len(pipe.tokenizer.tokenizer) == qwen.config.text_config.vocab_size
    assert len(pipe.tokenizer_2) == clip.config.vocab_size
    assert transformer.config.visual_cond == (name in CONDITIONED)
    # the image pipelines assume a VAE that compresses 8x (`vae_scale_factor_spatial = 8`)
    if name in IMAGE:
        assert 2 ** (len(pipe.vae.config.block_out_channels) - 1) == pipe.vae_scale_factor_spatial == 8


@pytest.mark.parametrize("name", VIDEO + IMAGE)
def test_kandinsky5_prompt_template_is_what_the_pipeline_drops(name):
    pipe = _pipeline(name)
    tokenizer = pipe.tokenizer.tokenizer
    prefix = len(tokenizer(pipe.prompt_template.split("{}")[0]).input_ids)
    # the image-to-image template is 49 tokens as whole words and its pipeline drops 54 (5 of the prompt's go too)
    dropped = pipe.prompt_template_encode_start_idx - (5 if name == "Kandinsky5I2IPipeline" else 0)
    assert prefix == dropped
    if name in CONDITIONED:
        return
    # what is left is the prompt and `<|im_end|>`, however long the prompt
    for prompt in ("a photo of a cat", "the dog and the moon"):
        embeds, pooled, cu_seqlens = pipe.encode_prompt(prompt, max_sequence_length=32, device="cpu")
        assert cu_seqlens.tolist() == [0, len(tokenizer(prompt).input_ids) + 1] == [0, embeds.shape[1]]
        assert pooled.shape == (1, pipe.text_encoder_2.config.hidden_size)


@pytest.mark.parametrize("name", ("Kandinsky5T2VPipeline", "Kandinsky5I2IPipeline"))
def test_kandinsky5_transformer_depends_on_its_inputs(name):
    transformer = _pipeline(name).transformer
    frames, height, width, tokens = 2, 4, 4, 5
    channels = transformer.config.in_visual_dim
    visual = 2 * channels + 1 if transformer.config.visual_cond else channels
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(1, frames, height, width, visual, generator=generator).repeat(2, 1, 1, 1, 1)
    text = torch.randn(2, tokens, transformer.config.in_text_dim, generator=generator)
    pooled = torch.randn(2, transformer.config.in_text_dim2, generator=generator)

    def predict(text, pooled, timestep):
        with torch.no_grad():
            return transformer(
                hidden_states=latents,
                encoder_hidden_states=text,
                timestep=timestep,
                pooled_projections=pooled,
                visual_rope_pos=[torch.arange(frames), torch.arange(height // 2), torch.arange(width // 2)],
                text_rope_pos=torch.arange(tokens),
            ).sample

    prediction = predict(text, pooled, torch.tensor([900.0, 900.0]))
    assert prediction.shape == (2, frames, height, width, channels)
    assert torch.isfinite(prediction).all() and prediction.std() > 0
    # the modulations are re-drawn: the same latents give a different prediction for another prompt ...
    assert not torch.equal(prediction[0], prediction[1])
    # ... for another pooled embedding alone, and at another timestep
    assert not torch.equal(prediction, predict(text, pooled.flip(0), torch.tensor([900.0, 900.0])))
    assert not torch.equal(prediction, predict(text, pooled, torch.tensor([100.0, 100.0])))


@pytest.mark.slow
def test_kandinsky5_text_to_video_runs():
    import numpy as np

    pipe = _pipeline("Kandinsky5T2VPipeline")
    pipe.set_progress_bar_config(disable=True)
    frames = [
        pipe(
            prompt,
            height=32,
            width=32,
            num_frames=9,
            num_inference_steps=2,
            generator=torch.Generator().manual_seed(0),
            output_type="np",
        ).frames
        for prompt in ("a photo of a cat", "the dog and the moon")
    ]
    assert frames[0].shape == (1, 9, 32, 32, 3)
    # the same noise: the prompts alone make the videos differ
    assert np.isfinite(frames[0]).all() and not np.array_equal(frames[0], frames[1])
