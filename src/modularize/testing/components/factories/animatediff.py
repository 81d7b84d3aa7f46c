"""AnimateDiff: motion modules that turn an image UNet into a video UNet, and SparseCtrl's ControlNet.

An AnimateDiff pipeline takes a `UNet2DConditionModel` and a `MotionAdapter` and joins them in its constructor
(`UNetMotionModel.from_unet2d(unet, motion_adapter)`): the motion UNet copies the image UNet's layers and takes one
temporal transformer per resnet from the adapter. The adapter must match the UNet level by level (as many levels,
as many layers per level, as wide), so it is read from the pipeline's UNet, built as its own factory builds it:

    unet = UNet2DConditionModel(block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=32, ...)
    MotionAdapter(block_out_channels=(32, 64), motion_layers_per_block=1, motion_norm_num_groups=32, ...)

SparseCtrl's ControlNet is the UNet's encoder with motion modules (its down blocks are the motion UNet's:
`CrossAttnDownBlock2D` -> `CrossAttnDownBlockMotion`), with the adapter's temporal attention. It ignores the noisy
latents (it zeroes them) and reads the sparse conditioning frames alone: the VAE latents of the given frames
(`conditioning_channels` = the latent channels; the pipeline encodes them with the VAE) joined with a mask of which
frames are given (`concat_conditioning_mask`, one more channel). Fresh from its constructor it adds exactly zero
(its conditioning embedding and output projections start at zero): they are re-drawn (`controlnets._awake`), so a
conversion that fed it the wrong frames or mask would not match the standard pipeline.
"""

from __future__ import annotations

from typing import Any

from ..registry import Need, factory
from .controlnets import _awake, _build_awake, _denoiser, _mirrored

# the longest clip the temporal attention's positional embedding covers (the tiny clips are a few frames)
MOTION_MAX_FRAMES = 8

# an image UNet's down block -> the motion UNet's (what `UNetMotionModel.from_unet2d` maps it to)
MOTION_DOWN_BLOCKS = {"CrossAttnDownBlock2D": "CrossAttnDownBlockMotion", "DownBlock2D": "DownBlockMotion"}


def _motion(unet: Any, heads: int) -> dict[str, Any]:
    """The adapter's sizes, level by level the UNet's."""
    config = unet.config
    return {
        "block_out_channels": tuple(config.block_out_channels),
        "motion_layers_per_block": config.layers_per_block,
        "motion_norm_num_groups": config.norm_num_groups,
        "motion_num_attention_heads": heads,
        "motion_max_seq_length": MOTION_MAX_FRAMES,
        "use_motion_mid_block": True,
    }


@factory("MotionAdapter")
def motion_adapter(need: Need):
    """Motion modules for every level of the pipeline's UNet and its middle block, `dims.heads` temporal heads
    (32 channels: 2 heads of 16). Nothing in them starts at zero (diffusers draws the output projections as any
    linear layer), but `_awake` keeps them so should that change."""
    unet = _denoiser(need, "unet")
    return need.model(lambda **kwargs: _awake(need.cls(**kwargs)), **_motion(unet, need.dims.heads))


@factory("SparseControlNetModel")
def sparse_controlnet(need: Need):
    """SparseCtrl's ControlNet: the UNet's encoder (widths, layers, heads, cross-attention width mirrored), its down
    blocks the motion UNet's, with the adapter's temporal heads and length; it embeds the VAE latents of the
    conditioning frames and their mask (`use_simplified_condition_embedding`, the RGB SparseCtrl's layout)."""
    d = need.dims
    unet = _denoiser(need, "unet")
    adapter = _denoiser(need, "motion_adapter") if need.class_of("motion_adapter") else None
    motion = dict(adapter.config) if adapter is not None else _motion(unet, d.heads)
    config = _mirrored(unet, need.cls)
    config["down_block_types"] = tuple(MOTION_DOWN_BLOCKS[block] for block in config["down_block_types"])
    return need.model(
        _build_awake(need.cls),
        **{
            **config,
            "in_channels": d.latent_channels,
            "conditioning_channels": d.latent_channels,
            "concat_conditioning_mask": True,
            "use_simplified_condition_embedding": True,
            "motion_num_attention_heads": motion["motion_num_attention_heads"],
            "motion_max_seq_length": motion["motion_max_seq_length"],
        },
    )
