"""Golden case: values sized or repeated for the CFG batch inside expressions, before the loop.

`weights` is expanded to `2 * batch if do_cfg else batch` rows, `lift` is a repeat moved to the device in one
expression, `count` a repeat factor with `(2 if do_cfg else 1)` in it: all values both conditions share. Each
guider batch gets one condition's rows of them, and the timesteps computed from them per sample.
"""

import torch
from diffusers import DiffusionPipeline
from diffusers.models import AutoencoderKL, UNet2DConditionModel
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from diffusers.schedulers import DDIMScheduler
from transformers import CLIPTextModel, CLIPTokenizer


class SizedForTheBatch(DiffusionPipeline):
    def __init__(
        self,
        unet: UNet2DConditionModel,
        scheduler: DDIMScheduler,
        text_encoder: CLIPTextModel,
        tokenizer: CLIPTokenizer,
        vae: AutoencoderKL,
    ):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler, text_encoder=text_encoder, tokenizer=tokenizer, vae=vae)

    def _embed(self, words, device):
        ids = self.tokenizer(words, padding="max_length", truncation=True, return_tensors="pt").input_ids
        return self.text_encoder(ids.to(device))[0]

    @torch.no_grad()
    def __call__(self, prompt: str, negative_prompt: str = "", guidance_scale: float = 5.0, steps: int = 3, generator=None):
        device = self._execution_device
        do_cfg = guidance_scale > 1.0
        batch = 1
        embeds = self._embed([prompt], device)
        if do_cfg:
            negative_embeds = self._embed([negative_prompt], device)
            embeds = torch.cat([negative_embeds, embeds])

        self.scheduler.set_timesteps(steps, device=device)
        latents = torch.randn((batch, self.unet.config.in_channels, 8, 8), generator=generator).to(device)
        weights = torch.full((1,), 0.75).expand(2 * batch if do_cfg else batch)
        base = torch.full((batch,), 0.5)
        lift = (torch.cat([base] * 2) if do_cfg else base).to(device)
        count = batch * (2 if do_cfg else 1)
        offsets = torch.ones(1, 1).repeat(count, 1).flatten()

        for t in self.scheduler.timesteps:
            rows = torch.cat([latents] * 2) if do_cfg else latents
            ticks = t * weights + lift * offsets
            noise = self.unet(rows, ticks, encoder_hidden_states=embeds).sample
            if do_cfg:
                uncond, cond = noise.chunk(2)
                noise = uncond + guidance_scale * (cond - uncond)
            latents = self.scheduler.step(noise, t, latents).prev_sample

        image = self.vae.decode(latents / self.vae.config.scaling_factor).sample
        return ImagePipelineOutput(images=image)
