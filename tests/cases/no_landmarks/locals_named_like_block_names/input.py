"""Golden case: locals of `__call__` named like what generated blocks bind themselves.

`components` holds the prompt pieces, `state` what the scheduler's step returns and `block_state` the decoded
picture: in a block those names are taken (its arguments, the block's state), so the package renames the locals
(`components_`, `state_`, `block_state_`) everywhere `__call__` uses them. Attribute and keyword names spelled the
same (`output.state`, `f(state=...)`) are not the locals and stay.
"""

import torch
from diffusers import DiffusionPipeline
from diffusers.models import AutoencoderKL, UNet2DConditionModel
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from diffusers.schedulers import DDIMScheduler
from transformers import CLIPTextModel, CLIPTokenizer


class BusyNames(DiffusionPipeline):
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

    @property
    def do_classifier_free_guidance(self):
        return self._guidance_scale > 1.0

    def _encode(self, texts, device):
        pieces = self.tokenizer(texts, padding="max_length", truncation=True, return_tensors="pt")
        return self.text_encoder(pieces.input_ids.to(device))[0]

    @torch.no_grad()
    def __call__(self, prompt: str, negative_prompt: str = "", guidance_scale: float = 5.0, steps: int = 3, generator=None):
        self._guidance_scale = guidance_scale
        device = self._execution_device
        components = [prompt]
        embeds = self._encode(components, device)
        if self.do_classifier_free_guidance:
            negative = self._encode([negative_prompt], device)
            embeds = torch.cat([negative, embeds])

        self.scheduler.set_timesteps(steps, device=device)
        latents = torch.randn((1, self.unet.config.in_channels, 8, 8), generator=generator).to(device)

        for t in self.scheduler.timesteps:
            doubled = torch.cat([latents] * 2) if self.do_classifier_free_guidance else latents
            noise = self.unet(doubled, t, encoder_hidden_states=embeds).sample
            if self.do_classifier_free_guidance:
                plain, worded = noise.chunk(2)
                noise = plain + guidance_scale * (worded - plain)
            state = self.scheduler.step(noise, t, latents)
            latents = state.prev_sample

        block_state = self.vae.decode(latents / self.vae.config.scaling_factor).sample
        return ImagePipelineOutput(images=block_state)
