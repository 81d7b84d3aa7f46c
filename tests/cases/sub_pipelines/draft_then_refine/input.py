"""Golden case: a pipeline made of pipelines. `__init__` builds another pipeline (defined in `draft.py`, next to
it) from its own components and `__call__` calls it, with glue around: the package holds the draft pipeline's
converted package in `draft/` and calls it as the standard pipeline is called, a block per call and per glue.
"""

import torch
from diffusers import DiffusionPipeline
from diffusers.models import UNet2DModel
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from diffusers.schedulers import DDPMScheduler

from .draft import DraftPipeline


class DraftThenRefinePipeline(DiffusionPipeline):
    def __init__(self, unet: UNet2DModel, scheduler: DDPMScheduler):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler)
        self.draft = DraftPipeline(unet=unet, scheduler=scheduler)

    @torch.no_grad()
    def __call__(self, batch_size: int = 1, generator=None, steps: int = 4, output_type: str = "pt"):
        drafts = self.draft(batch_size=batch_size, generator=generator, num_inference_steps=steps, return_dict=False)
        image = (drafts[0] / 2 + 0.5).clamp(0, 1)
        if output_type == "np":
            image = image.cpu().permute(0, 2, 3, 1).numpy()
        return ImagePipelineOutput(images=image)
