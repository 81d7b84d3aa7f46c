"""Golden case: per-sample timesteps built for the CFG batch, halved again after the combine.

The timesteps are expanded to the doubled batch and scaled by a per-sample weight doubled as `torch.cat([w, w])`
(a value both conditions share); the CFG branch takes one half of them back (`ticks, _ = ticks.chunk(2)`), and the
step after it reads them per sample. In the package each guider batch has one condition's timesteps already: the
halving goes, and what reads them after the combine reads one condition's, as the source did.
"""

import torch
from diffusers import DiffusionPipeline
from diffusers.models import AutoencoderKL, UNet2DConditionModel
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from diffusers.schedulers import DDIMScheduler
from transformers import CLIPTextModel, CLIPTokenizer


class HalvedTicks(DiffusionPipeline):
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
        embeds = self._embed([prompt], device)
        if do_cfg:
            negative_embeds = self._embed([negative_prompt], device)
            embeds = torch.cat([negative_embeds, embeds])

        self.scheduler.set_timesteps(steps, device=device)
        latents = torch.randn((1, self.unet.config.in_channels, 8, 8), generator=generator).to(device)
        weight = torch.full((1,), 0.75, device=device)
        if do_cfg:
            weight = torch.cat([weight, weight])

        for t in self.scheduler.timesteps:
            rows = torch.cat([latents] * 2) if do_cfg else latents
            ticks = t.expand(rows.shape[0]) * weight
            noise = self.unet(rows, ticks, encoder_hidden_states=embeds).sample
            if do_cfg:
                uncond, cond = noise.chunk(2)
                noise = uncond + guidance_scale * (cond - uncond)
                ticks, _ = ticks.chunk(2)
            latents = self.scheduler.step(noise, t, latents).prev_sample
            latents = latents * (ticks[:, None, None, None] / t)

        image = self.vae.decode(latents / self.vae.config.scaling_factor).sample
        return ImagePipelineOutput(images=image)
