"""Golden case: unconditional generation (no prompt, no guidance); the loop is carried as it is.

Written the way small unconditional pipelines are: no `__call__` argument docs, the loop over the scheduler's
timesteps through the progress bar, post-processing inline.
"""

import torch
from diffusers import DiffusionPipeline
from diffusers.models import UNet2DModel
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from diffusers.schedulers import DDPMScheduler
from diffusers.utils.torch_utils import randn_tensor


class NoiseToImagePipeline(DiffusionPipeline):
    model_cpu_offload_seq = "unet"

    def __init__(self, unet: UNet2DModel, scheduler: DDPMScheduler):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler)

    @torch.no_grad()
    def __call__(
        self,
        batch_size: int = 1,
        generator: torch.Generator | None = None,
        num_inference_steps: int = 10,
        output_type: str = "pt",
        return_dict: bool = True,
    ):
        # 1. Sample gaussian noise
        size = self.unet.config.sample_size
        shape = (batch_size, self.unet.config.in_channels, size, size)
        image = randn_tensor(shape, generator=generator, device=self.device, dtype=self.unet.dtype)

        # 2. Set step values
        self.scheduler.set_timesteps(num_inference_steps)

        # 3. Denoising loop
        for t in self.progress_bar(self.scheduler.timesteps):
            model_output = self.unet(image, t).sample
            image = self.scheduler.step(model_output, t, image, generator=generator).prev_sample

        # 4. Post-process
        image = (image / 2 + 0.5).clamp(0, 1)
        if output_type == "np":
            image = image.cpu().permute(0, 2, 3, 1).numpy()

        if not return_dict:
            return (image,)
        return ImagePipelineOutput(images=image)
