"""The one set of tiny dimensions every factory builds from, and the couplings computed from it.

A coupling is a size two components must agree on: the text encoders' width is the denoiser's cross-attention /
joint-attention / caption size, the VAE's latent channels are the denoiser's input and output channels, a
tokenizer's length is its text encoder's `vocab_size`. Factories read them here instead of restating numbers, so
changing one dimension keeps every pair of components consistent.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True)
class Dims:
    # text encoders: every one is this wide, so whichever encoder feeds the denoiser, the sizes agree
    text_hidden: int = 32
    text_layers: int = 2
    text_heads: int = 4
    text_intermediate: int = 37
    clip_max_length: int = 77  # CLIP's position embeddings; its tokenizer pads to exactly this
    max_sequence_length: int = 32  # the prompt length passed to pipelines that take one (T5-style encoders)
    # latents
    latent_channels: int = 4
    vae_block_out: tuple[int, ...] = (32, 64)  # a 2-level image VAE: spatial scale factor 2
    vae_norm_groups: int = 32
    codebook_size: int = 32  # a VQ model's codebook: the image tokens a masked-token denoiser predicts
    # audio
    mel_bins: int = 16  # a spectrogram VAE's width: the frequency bins its vocoder turns into a waveform
    # denoisers
    block_out: tuple[int, ...] = (32, 64)  # UNet levels
    heads: int = 2
    head_dim: int = 16
    rope_axes: tuple[int, ...] = (4, 6, 6)  # rotary axes of image transformers: they add up to `head_dim`
    layers: int = 1
    addition_time_embed_dim: int = 8  # SDXL-style `text_time` conditioning
    time_ids: int = 6  # original size, crop top-left, target size: 2 numbers each
    # sample sizes (pixels) and frames
    image_size: int = 32
    video_size: int = 16
    num_train_timesteps: int = 1000
    seed: int = 0

    # -- couplings ---------------------------------------------------------------------------------------------
    @property
    def inner_dim(self) -> int:
        """A transformer's width: heads x head size."""
        return self.heads * self.head_dim

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae_block_out) - 1)

    @property
    def packed_latent_channels(self) -> int:
        """Latent channels after 2x2 patch packing (Flux, QwenImage)."""
        return 4 * self.latent_channels

    @property
    def clip_projection(self) -> int:
        """CLIP's pooled projection is as wide as its hidden states: a pooled embedding can stand in for either."""
        return self.text_hidden

    @property
    def mask_token_id(self) -> int:
        """Masked-token denoisers (aMUSEd) mark an unknown image token with the id just past the codebook."""
        return self.codebook_size

    @property
    def token_vocab_size(self) -> int:
        """The ids a masked-token denoiser embeds: every codebook entry and the mask token."""
        return self.codebook_size + 1

    def projection_class_embeddings_input_dim(self, pooled_width: int | None = None) -> int:
        """SDXL's added conditioning: `time_ids` numbers embedded at `addition_time_embed_dim` each, plus the
        pooled text embedding."""
        return self.time_ids * self.addition_time_embed_dim + (pooled_width or self.clip_projection)

    def but(self, **changes: Any) -> Dims:
        return replace(self, **changes)


DIMS = Dims()
