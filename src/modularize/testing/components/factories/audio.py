"""Vocoders and audio feature extractors.

A spectrogram pipeline (AudioLDM, MusicLDM) denoises the latents of a mel spectrogram `dims.mel_bins` bins wide and
turns the decoded spectrogram into a waveform with its vocoder: the vocoder's `model_in_dim` is the spectrogram's
width, and its upsampling and sampling rate say how many seconds one spectrogram frame lasts.
"""

from __future__ import annotations

from ..registry import Need, factory
from .text import CLAP_MEL_BINS

# the tiny vocoder's waveform: 16 samples per second, each spectrogram frame upsampled 2 x 2 = 4 samples, so one
# frame lasts a quarter of a second (a 2-second clip is 8 frames, 4 latent frames with the 2-level VAE)
VOCODER_SAMPLING_RATE = 16
VOCODER_UPSAMPLE_RATES = (2, 2)


@factory("SpeechT5HifiGan")
def speecht5_hifigan(need: Need):
    """HiFi-GAN on spectrograms `dims.mel_bins` wide: two upsampling stages, one residual block each."""
    from transformers import SpeechT5HifiGanConfig

    config = SpeechT5HifiGanConfig(
        model_in_dim=need.dims.mel_bins,
        sampling_rate=VOCODER_SAMPLING_RATE,
        upsample_initial_channel=16,
        upsample_rates=list(VOCODER_UPSAMPLE_RATES),
        upsample_kernel_sizes=[2 * rate for rate in VOCODER_UPSAMPLE_RATES],
        resblock_kernel_sizes=[3],
        resblock_dilation_sizes=[[1, 3]],
        normalize_before=False,
        # (its default initialization, std 0.01, shrinks the signal at every convolution: waveforms of 1e-6, in
        # which a wrong spectrogram would hardly show; at 0.2 they are around 0.1 to 0.3, short of tanh's limits)
        initializer_range=0.2,
    )
    return need.model(need.cls, config=config)


# CLAP's feature extractor: log-mel spectrograms of `CLAP_MEL_BINS` bins from 64-Hz audio, a frame every 8 samples;
# clips of up to 2 seconds (the spectrogram pipelines' clips) are padded by repeating them to 17 frames and never
# cropped (cropping picks a random window), which fits the audio tower's spectrogram image (up to 2 x
# `CLAP_SPEC_SIZE` frames)
CLAP_SAMPLING_RATE = 64
CLAP_HOP_LENGTH = 8
CLAP_MAX_SECONDS = 2


@factory("ClapFeatureExtractor")
def clap_feature_extractor(need: Need):
    return need.cls(
        feature_size=CLAP_MEL_BINS,
        sampling_rate=CLAP_SAMPLING_RATE,
        hop_length=CLAP_HOP_LENGTH,
        fft_window_size=32,
        max_length_s=CLAP_MAX_SECONDS,
        frequency_min=0,
        frequency_max=CLAP_SAMPLING_RATE // 2,
        truncation="rand_trunc",
        padding="repeatpad",
    )
