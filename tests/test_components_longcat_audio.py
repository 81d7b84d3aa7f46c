"""LongCat-AudioDiT's tiny components: the DiT reads the text encoder's states and the VAE's latents, and neither
starts out as a constant."""

from __future__ import annotations

import torch

from modularize.testing.components import DIMS, build_components


def test_longcat_audio_dit_components_are_coupled_and_run():
    from diffusers import LongCatAudioDiTPipeline

    components = build_components(LongCatAudioDiTPipeline)
    vae, transformer, encoder = components["vae"], components["transformer"], components["text_encoder"]
    assert transformer.config.dit_text_dim == encoder.config.d_model
    assert transformer.config.latent_dim == vae.config.latent_dim == DIMS.latent_channels
    assert len(components["tokenizer"]) == encoder.config.vocab_size

    frames, tokens = 3, 5
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(2, frames, DIMS.latent_channels, generator=generator)
    text = torch.randn(2, tokens, encoder.config.d_model, generator=generator)
    text_mask = torch.tensor([[True] * tokens, [True] * 3 + [False] * 2])
    with torch.no_grad():
        prediction = transformer(
            hidden_states=latents,
            encoder_hidden_states=text,
            encoder_attention_mask=text_mask,
            timestep=torch.tensor([1.0, 0.5]),
            attention_mask=torch.ones(2, frames, dtype=torch.bool),
            latent_cond=torch.zeros_like(latents),
        ).sample
        waveform = vae.decode(latents.permute(0, 2, 1)).sample
    assert prediction.shape == latents.shape
    # the zero-initialized output layers are re-drawn: the prediction depends on the prompt and the timestep
    assert prediction.abs().min() > 0
    assert not torch.equal(prediction[0], prediction[1])
    assert waveform.shape == (2, 1, frames * vae.config.downsampling_ratio)
    assert torch.isfinite(waveform).all() and waveform.abs().max() > 0
