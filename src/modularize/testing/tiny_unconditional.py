"""Tiny components for unconditional image pipelines (DDPM, DDIM, PNDM): a 2-level `UNet2DModel` on 8x8 RGB
images.

Their `__call__` has no stage comments, so they exercise the anchor-cut layout; DDIM's `__init__` replaces the
scheduler it is given (`DDIMScheduler.from_config(scheduler.config)`), which the generated pipeline must repeat on
registration.
"""

from __future__ import annotations

from typing import Any

from .tiny_parts import TinySetup, seeded


def unconditional_components(seed: int = 0) -> dict[str, Any]:
    from diffusers import DDPMScheduler, UNet2DModel

    unet = seeded(
        seed,
        lambda: UNet2DModel(
            sample_size=8,
            in_channels=3,
            out_channels=3,
            block_out_channels=(8, 16),
            layers_per_block=1,
            norm_num_groups=4,
            down_block_types=("DownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "UpBlock2D"),
        ),
    )
    # DDPM's scheduler for both: DDIM's constructor converts it, as it would a user's
    return {"unet": unet, "scheduler": DDPMScheduler(num_train_timesteps=50)}


_CASES = (
    ("one_image_np", {"output_type": "np"}),
    ("two_images", {"batch_size": 2, "num_inference_steps": 2, "output_type": "np"}),
    ("three_steps_pil", {"num_inference_steps": 3, "output_type": "pil"}),
)

DDPM = TinySetup(
    components=unconditional_components,
    inputs=lambda: {"num_inference_steps": 3, "output_type": "np"},
    cases=_CASES,
)

DDIM = TinySetup(
    components=lambda: unconditional_components(seed=1),
    inputs=lambda: {"num_inference_steps": 3, "output_type": "np"},
    cases=(
        *_CASES,
        ("eta", {"eta": 0.5, "batch_size": 2}),
        ("clipped", {"eta": 1.0, "use_clipped_model_output": True}),
    ),
)

# PNDM's constructor converts the scheduler too (`PNDMScheduler.from_config`); its PLMS steps keep a history and
# need a few steps to warm up (fewer than 5 fail in the standard pipeline with 50 training steps)
PNDM = TinySetup(
    components=lambda: unconditional_components(seed=2),
    inputs=lambda: {"num_inference_steps": 5, "output_type": "np"},
    cases=(
        ("five_steps_np", {}),
        ("two_images_six_steps", {"batch_size": 2, "num_inference_steps": 6}),
        ("seven_steps_pil", {"num_inference_steps": 7, "output_type": "pil"}),
    ),
)

UNCONDITIONAL_SETUPS = {"DDPMPipeline": DDPM, "DDIMPipeline": DDIM, "PNDMPipeline": PNDM}
