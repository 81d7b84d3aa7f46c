"""Tiny AnimateDiff components: the motion adapter fits the pipeline's UNet, SparseCtrl's ControlNet feeds the
motion UNet, and the ControlNet's zero-initialized layers are awake (the conditioning frames change its output)."""

from __future__ import annotations

import torch

from modularize.testing.components import DIMS, build_components


def test_sparsectrl_components_join_and_run():
    from diffusers import AnimateDiffSparseControlNetPipeline, UNetMotionModel

    components = build_components(AnimateDiffSparseControlNetPipeline)
    unet, adapter, controlnet = components["unet"], components["motion_adapter"], components["controlnet"]
    assert tuple(adapter.config.block_out_channels) == tuple(unet.config.block_out_channels) == DIMS.block_out
    assert adapter.config.motion_layers_per_block == unet.config.layers_per_block
    assert controlnet.config.cross_attention_dim == unet.config.cross_attention_dim
    assert controlnet.config.down_block_types == ("CrossAttnDownBlockMotion", "DownBlockMotion")
    motion = UNetMotionModel.from_unet2d(unet, adapter).eval()  # what the pipeline's constructor does

    frames, size = 3, DIMS.video_size // DIMS.vae_scale_factor
    channels = DIMS.latent_channels
    sample = torch.randn(1, channels, frames, size, size, generator=torch.Generator().manual_seed(0))
    text = torch.randn(frames, 5, unet.config.cross_attention_dim, generator=torch.Generator().manual_seed(1))
    cond = torch.randn(1, channels, frames, size, size, generator=torch.Generator().manual_seed(2))
    mask = torch.zeros(1, 1, frames, size, size)
    mask[:, :, 0] = 1  # the first frame is given
    with torch.no_grad():
        down, mid = controlnet(
            sample, 10, encoder_hidden_states=text, controlnet_cond=cond, conditioning_mask=mask, return_dict=False
        )
        other, _ = controlnet(
            sample, 10, encoder_hidden_states=text, controlnet_cond=-cond, conditioning_mask=mask, return_dict=False
        )
        residuals = {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}
        out = motion(sample, 10, encoder_hidden_states=text, **residuals).sample
    assert out.shape == sample.shape
    # one residual per UNet skip connection (conv_in, one resnet per level, the downsamplers between levels), each
    # batched per frame; the conditioning frames reach every one
    assert len(down) == 1 + len(DIMS.block_out) + len(DIMS.block_out) - 1
    assert all(d.shape[0] == frames and d.abs().sum() > 0 for d in down)
    assert not torch.equal(down[-1], other[-1])
