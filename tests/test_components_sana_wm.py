"""SANA-WM refiner's tiny components: Gemma 3's stacked hidden states feed LTX-2's connectors, whose output the
refiner DiT cross-attends to, on the LTX-2 VAE's latents."""

from __future__ import annotations

import torch

from modularize.testing.components import DIMS, build_components


def test_sana_wm_refiner_components_are_coupled_and_run():
    from diffusers.pipelines.sana_wm.refiner import SanaWMLTX2Refiner

    components = build_components(SanaWMLTX2Refiner)
    encoder, connectors = components["text_encoder"], components["connectors"]
    transformer, vae, tokenizer = components["transformer"], components["vae"], components["tokenizer"]
    text = encoder.config.text_config
    assert len(tokenizer) == text.vocab_size
    assert connectors.config.caption_channels == text.hidden_size == transformer.config.caption_channels
    assert connectors.config.text_proj_in_factor == text.num_hidden_layers + 1  # embeddings + every layer
    assert transformer.config.in_channels == transformer.config.out_channels == vae.config.latent_channels
    assert vae.config.latent_channels == DIMS.latent_channels

    ids = tokenizer(
        ["a photo of a cat", "the dog"], padding="max_length", max_length=24, truncation=True, return_tensors="pt"
    )
    with torch.no_grad():
        states = encoder(**ids, output_hidden_states=True).hidden_states
        stacked = torch.stack(states, dim=-1).flatten(2)  # (batch, tokens, width x (layers + 1))
        embeds, _, mask = connectors(stacked, ids.attention_mask, padding_side="right")
        frames, height, width = 2, 4, 4
        latents = torch.randn(
            2, frames * height * width, DIMS.latent_channels, generator=torch.Generator().manual_seed(0)
        )
        rope = transformer.build_rotary_emb_for_absolute_positions(2, [1, 2], height, width, torch.device("cpu"), 24.0)
        velocity = transformer(
            hidden_states=latents,
            encoder_hidden_states=embeds,
            timestep=torch.full(latents.shape[:2], 500.0),
            video_rotary_emb=rope,
            encoder_attention_mask=mask,
            return_dict=False,
        )[0]
    assert len(states) == text.num_hidden_layers + 1
    assert embeds.shape == (2, 24, text.hidden_size)
    assert velocity.shape == latents.shape
    # the two prompts reach the prediction
    assert not torch.equal(velocity[0], velocity[1])
