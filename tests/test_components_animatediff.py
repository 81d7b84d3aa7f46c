"""Tiny AnimateDiff components: the motion adapter fits the pipeline's UNet, SparseCtrl's ControlNet feeds the
motion UNet, and the ControlNet's zero-initialized layers are awake (the conditioning frames change its output)."""

from __future__ import annotations

import pytest
import torch

from modularize.frontend.source_file import installed_diffusers_file
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


def test_free_init_runs_the_denoising_loop_again():
    """What the `free_init` cases switch on changes the output: the cases that compare it are not the default ones
    again."""
    from diffusers import AnimateDiffPipeline

    pipe = AnimateDiffPipeline(**build_components(AnimateDiffPipeline))
    pipe.set_progress_bar_config(disable=True)
    size = DIMS.video_size
    inputs = {"prompt": "a cat", "num_frames": 3, "height": size, "width": size, "num_inference_steps": 2}

    def frames():
        return pipe(**inputs, generator=torch.Generator().manual_seed(0), output_type="pt").frames

    plain = frames()
    pipe.enable_free_init(num_iters=2)
    assert not torch.equal(frames(), plain)


@pytest.mark.slow
def test_animatediff_verifies_with_free_init_and_raises_where_free_noise_would_run(tmp_path):
    """AnimateDiff's prompt encoding branches on FreeNoise, calling a mixin's method with the CFG flag: that branch
    raises in the package, the other converts; FreeInit (an outer loop) runs as the standard pipeline runs it."""
    from modularize.cli import main

    from .test_verify import converted_and_bitwise

    package, report = converted_and_bitwise(tmp_path, "pipelines/animatediff/pipeline_animatediff.py")
    assert {"free_init", "free_init_cfg_off"} <= {c.name for c in report.cases}
    message = "_encode_prompt_free_noise, defined outside the pipeline's file"
    raising = [p.name for p in package.glob("*.py") if message in p.read_text()]
    assert raising == ["encoders.py"]
    lines = [line.strip() for line in (package / "encoders.py").read_text().splitlines()]
    assert lines[lines.index("if components.free_noise_enabled:") + 1] == "raise ValueError("
    assert main(["plan", str(installed_diffusers_file("pipelines/animatediff/pipeline_animatediff.py"))]) == 0
