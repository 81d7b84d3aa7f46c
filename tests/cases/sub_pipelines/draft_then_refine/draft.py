"""The pipeline the golden case `sub_pipelines/draft_then_refine` builds and calls: unconditional drafts."""

import torch
from diffusers import DiffusionPipeline
from diffusers.models import UNet2DModel
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from diffusers.schedulers import DDPMScheduler
from diffusers.utils.torch_utils import randn_tensor


class DraftPipeline(DiffusionPipeline):
    def __init__(self, unet: UNet2DModel, scheduler: DDPMScheduler):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler)

    @torch.no_grad()
    def __call__(self, batch_size: int = 1, generator=None, num_inference_steps: int = 10, return_dict: bool = True):
        size = self.unet.config.sample_size
        shape = (batch_size, self.unet.config.in_channels, size, size)
        image = randn_tensor(shape, generator=generator, device=self.device, dtype=self.unet.dtype)
        self.scheduler.set_timesteps(num_inference_steps)
        for t in self.progress_bar(self.scheduler.timesteps):
            model_output = self.unet(image, t).sample
            image = self.scheduler.step(model_output, t, image, generator=generator).prev_sample
        if not return_dict:
            return (image,)
        return ImagePipelineOutput(images=image)
