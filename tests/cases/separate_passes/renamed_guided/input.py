"""Golden case: two denoiser passes per step whose combine names the guided prediction anew.

The conditional pass writes `cond_pred`, the combine writes `pred`, and with CFG off the `else` names the
conditional prediction `pred` too: what the guider's prediction is with CFG off.
"""

import torch
from diffusers import DiffusionPipeline
from diffusers.models import AutoencoderKL, UNet2DConditionModel
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from diffusers.schedulers import DDIMScheduler
from transformers import CLIPTextModel, CLIPTokenizer


class RenamedTwoPassPipeline(DiffusionPipeline):
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
        prompt_embeds = self._embed([prompt], device)
        negative_prompt_embeds = self._embed([negative_prompt], device) if do_cfg else None

        self.scheduler.set_timesteps(steps, device=device)
        latents = torch.randn((1, self.unet.config.in_channels, 8, 8), generator=generator).to(device)
        for t in self.scheduler.timesteps:
            cond_pred = self.unet(latents, t, encoder_hidden_states=prompt_embeds).sample
            if do_cfg:
                uncond_pred = self.unet(latents, t, encoder_hidden_states=negative_prompt_embeds).sample
                pred = uncond_pred + guidance_scale * (cond_pred - uncond_pred)
            else:
                pred = cond_pred
            latents = self.scheduler.step(pred, t, latents).prev_sample

        image = self.vae.decode(latents / self.vae.config.scaling_factor).sample
        return ImagePipelineOutput(images=image)
