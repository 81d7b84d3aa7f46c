"""ControlNets: auxiliary copies of a denoiser's encoder whose outputs are added to the denoiser's own.

A ControlNet mirrors the denoiser it feeds: every constructor argument the two classes share (block widths, layers
per block, block types, attention heads, cross-attention / joint-attention widths, SDXL's added time conditioning)
is read from the pipeline's denoiser, built here the same way its own constructor argument is. What is the
ControlNet's own is sized from the shared dims: it reads the latents (not, for an inpainting UNet, the latents
joined with the mask), and its conditioning embedding downsamples the control image as often as the VAE does, so
the embedded image lands on the latent grid.

    unet = UNet2DConditionModel(block_out_channels=(32, 64), cross_attention_dim=32, ...)   # the pipeline's
    ControlNetModel(block_out_channels=(32, 64), cross_attention_dim=32, ...,               # mirrored
                    in_channels=4, conditioning_embedding_out_channels=(16, 32))            # its own

A ControlNet fresh from its constructor adds exactly zero: its output projections ("zero convolutions") and the
last layer of its conditioning embedding start at zero, so the control image changes nothing. A conversion that
dropped the ControlNet, or fed it the wrong half of the CFG batch, would then still match the standard pipeline;
every factory here re-draws those zero layers (seeded, as the rest of the model), so the control matters.
"""

from __future__ import annotations

import inspect
from dataclasses import replace
from typing import Any

from ..dims import Dims
from ..registry import Need, factory, factory_for
from .denoisers import _sibling

# SDXL ControlNet-Union's control-type transformer: as wide as the first block (its output is added to the embedded
# control image), one layer
UNION_LAYERS = 1


def _awake(model: Any) -> Any:
    """`model` with every zero-initialized convolution / linear layer re-drawn by its own initializer (the caller
    seeds it). Before: `controlnet_down_blocks[0].weight` all zeros; after: a default-initialized 1x1 convolution."""
    import torch

    for module in model.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)) and not module.weight.any():
            module.reset_parameters()
    return model


def _denoiser(need: Need, name: str) -> Any:
    """The pipeline's `name` argument (`unet`, `transformer`), built as its own factory builds it, with the
    pipeline's constructor overrides for it (so a ControlNet mirrors the denoiser the pipeline really gets)."""
    from ..overrides import overrides_for

    cls = need.class_of(name)
    config = overrides_for(need.pipeline).get("config", {}).get(name, {})
    return factory_for(cls)(replace(_sibling(need, name, cls), config=config))


def _mirrored(denoiser: Any, cls: type) -> dict[str, Any]:
    """The denoiser's config entries that `cls`'s constructor also takes (same name, same meaning: the ControlNet
    classes copy their denoiser's constructor)."""
    takes = inspect.signature(cls.__init__).parameters
    return {key: value for key, value in denoiser.config.items() if key in takes and not key.startswith("_")}


def _build_awake(cls: type):
    return lambda **kwargs: _awake(cls(**kwargs))


def conditioning_widths(dims: Dims) -> tuple[int, ...]:
    """The conditioning embedding's widths: one stride-2 convolution between consecutive widths, as many as the
    VAE has downsampling levels (a 32-pixel control image -> the 16 x 16 latent grid with a 2-level VAE)."""
    return tuple(16 * 2**level for level in range(len(dims.vae_block_out)))


@factory("ControlNetModel", "ControlNetUnionModel")
def controlnet(need: Need):
    """A UNet ControlNet (SD, SDXL: the `text_time` conditioning comes with the UNet's config), or SDXL's
    ControlNet-Union, whose control-type transformer is as wide as the first block."""
    d = need.dims
    unet = _denoiser(need, "unet")
    own: dict[str, Any] = {}
    if "num_trans_channel" in inspect.signature(need.cls.__init__).parameters:
        width = unet.config.block_out_channels[0]
        own = {"num_trans_channel": width, "num_proj_channel": width, "num_trans_head": d.heads}
        own["num_trans_layer"] = UNION_LAYERS
    return need.model(
        _build_awake(need.cls),
        **{
            **_mirrored(unet, need.cls),
            "in_channels": d.latent_channels,
            "conditioning_embedding_out_channels": conditioning_widths(d),
            **own,
        },
    )


@factory("SD3ControlNetModel")
def sd3_controlnet(need: Need):
    """SD3's ControlNet: the transformer's patches, heads, joint-attention and pooled widths; it embeds the VAE
    latents of the control image (plus `extra_conditioning_channels`, the inpainting mask, given as data)."""
    transformer = _denoiser(need, "transformer")
    return need.model(
        _build_awake(need.cls), **{**_mirrored(transformer, need.cls), "in_channels": need.dims.latent_channels}
    )


@factory("FluxControlNetModel")
def flux_controlnet(need: Need):
    """Flux's ControlNet: the transformer's heads, rotary axes, text widths and guidance embedding (the pipeline
    hands the ControlNet the guidance scale when its config says it embeds one); it reads the packed latents of
    the control image."""
    transformer = _denoiser(need, "transformer")
    return need.model(
        _build_awake(need.cls),
        **{**_mirrored(transformer, need.cls), "in_channels": need.dims.packed_latent_channels},
    )


@factory("HunyuanDiT2DControlNetModel")
def hunyuan_dit_controlnet(need: Need):
    """HunyuanDiT's ControlNet: the transformer's widths, heads, patches and text lengths, and its depth (named
    `transformer_num_layers` here: the ControlNet runs the first half of the transformer's blocks, one output per
    skip connection the transformer's second half adds it to). It reads the VAE latents of the control image, as
    wide as the transformer's input.

        HunyuanDiT2DModel(num_layers=4, hidden_size=24, ...)           # 1 skip connection: block 0 -> block 3
        HunyuanDiT2DControlNetModel(transformer_num_layers=4, ...)     # 1 block, 1 output
    """
    transformer = _denoiser(need, "transformer")
    return need.model(
        _build_awake(need.cls),
        **{**_mirrored(transformer, need.cls), "transformer_num_layers": transformer.config.num_layers},
    )


@factory("SanaControlNetModel")
def sana_controlnet(need: Need):
    """SANA's ControlNet: the transformer's widths, heads, patches and caption width; it reads the VAE latents of the
    control image. The transformer adds the ControlNet's i-th output after its block i + 1 (none after its first
    block): the ControlNet has one block fewer, so every output it computes is added."""
    transformer = _denoiser(need, "transformer")
    layers = transformer.config.num_layers - 1
    return need.model(_build_awake(need.cls), **{**_mirrored(transformer, need.cls), "num_layers": layers})


@factory("QwenImageControlNetModel")
def qwenimage_controlnet(need: Need):
    """QwenImage's ControlNet: the transformer's patches, heads, rotary axes, text width and depth (the transformer
    adds the ControlNet's output i after its block i, the last one included, so every output counts); it reads the
    packed VAE latents of the control image (plus `extra_condition_channels`, the inpainting mask packed 2 x 2,
    given as data)."""
    transformer = _denoiser(need, "transformer")
    return need.model(_build_awake(need.cls), **_mirrored(transformer, need.cls))
