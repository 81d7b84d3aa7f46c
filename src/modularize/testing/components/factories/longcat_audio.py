"""LongCat-AudioDiT: a 1-D waveform VAE and the DiT that denoises its latents, conditioned on a UMT5 encoder.

The pipeline reads its timing from the VAE's config: a clip of `s` seconds is `s * sample_rate //
downsampling_ratio` latent frames, and without `audio_duration_s` it estimates `s` from the prompt's letters
(0.082 s each). The tiny VAE samples at `LONGCAT_SAMPLE_RATE` and halves the length `len(LONGCAT_STRIDES)` times, so
the test prompts ("a photo of a cat": 12 letters, about 1 s) become a few latent frames:

    prompt --UMT5--> (batch, tokens, text_width) --> DiT text embedder (`dit_text_dim` = text_width)
    noise (batch, frames, latent_channels) --DiT--> (batch, frames, latent_channels)
          --VAE decode--> (batch, 1, frames * downsampling_ratio) waveform

The latent width (the DiT's `latent_dim`, read by the pipeline as the noise's last axis) is the VAE's `latent_dim`:
`dims.latent_channels` for both.
"""

from __future__ import annotations

import math

from ..registry import Need, factory
from .controlnets import _awake
from .vaes import _weights_folded

# 16 samples per second, two stride-2 stages: a latent frame per 4 samples, 4 frames per second
LONGCAT_SAMPLE_RATE = 16
LONGCAT_STRIDES = (2, 2)
LONGCAT_VAE_CHANNELS = 8  # the first stage's width; the second is twice it (`c_mults`)


@factory("LongCatAudioDiTVae")
def longcat_audio_dit_vae(need: Need):
    """A mono waveform VAE: widths 8 -> 8 -> 16 through two stride-2 blocks, `dims.latent_channels` latent channels
    (the encoder outputs twice as many: mean and scale). Its weight-normalized convolutions are folded into plain
    weights (see `vaes._weights_folded`: verify deep-copies components)."""
    return need.model(
        lambda **kwargs: _weights_folded(need.cls(**kwargs)),
        in_channels=1,
        channels=LONGCAT_VAE_CHANNELS,
        c_mults=[1, 2],
        strides=list(LONGCAT_STRIDES),
        latent_dim=need.dims.latent_channels,
        encoder_latent_dim=2 * need.dims.latent_channels,
        downsampling_ratio=math.prod(LONGCAT_STRIDES),
        sample_rate=LONGCAT_SAMPLE_RATE,
    )


@factory("LongCatAudioDiTTransformer")
def longcat_audio_dit_transformer(need: Need):
    """One block of `dims.heads` heads of `dims.head_dim`, cross-attending to the text encoder's states.

    Its constructor zeroes the global adaLN projection, the final norm's modulation and the output projection: fresh
    from it the DiT predicts exactly zero whatever its inputs, so a conversion that passed the wrong prompt, mask or
    timestep would still match. Those layers are re-drawn, seeded (`controlnets._awake`), as are its ConvNeXt text
    blocks' response-normalization scales (zero, an identity, from the constructor)."""
    d = need.dims

    def build(**kwargs):
        import torch

        transformer = _awake(need.cls(**kwargs))
        with torch.no_grad():
            for name, parameter in transformer.named_parameters():
                if ".grn." in name:
                    parameter.normal_(std=0.1)
        return transformer

    return need.model(
        build,
        dit_dim=d.inner_dim,
        dit_depth=d.layers,
        dit_heads=d.heads,
        dit_text_dim=need.text_width(),
        latent_dim=d.latent_channels,
        ff_mult=2.0,
    )
