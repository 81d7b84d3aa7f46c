"""The tiny denoisers of the chunk-by-chunk video pipelines (Helios, HunyuanVideo Framepack): built by class for
their pipelines, they predict the noisy chunk's shape and listen to the history latents they are given."""

from __future__ import annotations

import torch

from modularize.testing.components import DIMS
from modularize.testing.components.build import build_component


def _noise(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_helios_transformer_predicts_the_chunk_from_its_history():
    from diffusers import HeliosPipeline

    transformer = build_component(HeliosPipeline, "transformer", seed=0)
    assert transformer.config.text_dim == DIMS.text_hidden
    assert sum(transformer.config.rope_dim) == transformer.config.attention_head_dim
    channels, size = DIMS.latent_channels, 8
    # the pipeline's layout for `history_sizes=[16, 2, 1]` and 2 latent frames a chunk: prefix, long, mid, 1x, chunk
    indices = torch.arange(0, 1 + 16 + 2 + 1 + 2)
    prefix, long, mid, short_1x, chunk = indices.split([1, 16, 2, 1, 2])

    def predict(history_seed: int) -> torch.Tensor:
        with torch.no_grad():
            return transformer(
                hidden_states=_noise(1, channels, 2, size, size, seed=0),
                timestep=torch.tensor([500.0]),
                encoder_hidden_states=_noise(1, 5, DIMS.text_hidden, seed=1),
                indices_hidden_states=chunk[None],
                indices_latents_history_short=torch.cat([prefix, short_1x])[None],
                indices_latents_history_mid=mid[None],
                indices_latents_history_long=long[None],
                latents_history_short=_noise(1, channels, 2, size, size, seed=history_seed),
                latents_history_mid=_noise(1, channels, 2, size, size, seed=history_seed + 1),
                latents_history_long=_noise(1, channels, 16, size, size, seed=history_seed + 2),
                return_dict=False,
            )[0]

    first = predict(history_seed=10)
    assert first.shape == (1, channels, 2, size, size)
    assert torch.isfinite(first).all()
    assert not torch.equal(first, predict(history_seed=20))  # the history is attended to


def test_framepack_transformer_predicts_the_section_from_its_image_and_history():
    from diffusers import HunyuanVideoFramepackPipeline

    transformer = build_component(HunyuanVideoFramepackPipeline, "transformer", seed=0)
    assert transformer.config.image_proj_dim == DIMS.text_hidden  # the SigLIP image encoder's width
    assert sum(transformer.config.rope_axes_dim) == transformer.config.attention_head_dim
    channels, size = DIMS.latent_channels, 4
    # the pipeline's (inverted anti-drifting) layout for `history_sizes=[1, 2, 16]` and 2 latent frames a section
    indices = torch.arange(0, 1 + 2 + 1 + 2 + 16)
    prefix, latents, history_1x, history_2x, history_4x = indices.split([1, 2, 1, 2, 16])

    def predict(image_seed: int) -> torch.Tensor:
        with torch.no_grad():
            return transformer(
                hidden_states=_noise(1, channels, 2, size, size, seed=0),
                timestep=torch.tensor([500.0]),
                encoder_hidden_states=_noise(1, 5, DIMS.text_hidden, seed=1),
                encoder_attention_mask=torch.ones(1, 5),
                pooled_projections=_noise(1, DIMS.text_hidden, seed=2),
                image_embeds=_noise(1, 16, DIMS.text_hidden, seed=image_seed),
                indices_latents=latents,
                guidance=torch.tensor([6000.0]),
                latents_clean=_noise(1, channels, 2, size, size, seed=4),
                indices_latents_clean=torch.cat([prefix, history_1x]),
                latents_history_2x=_noise(1, channels, 2, size, size, seed=5),
                indices_latents_history_2x=history_2x,
                latents_history_4x=_noise(1, channels, 16, size, size, seed=6),
                indices_latents_history_4x=history_4x,
                return_dict=False,
            )[0]

    first = predict(image_seed=3)
    assert first.shape == (1, channels, 2, size, size)
    assert torch.isfinite(first).all()
    assert not torch.equal(first, predict(image_seed=30))  # the image embedding is attended to
