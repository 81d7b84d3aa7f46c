"""Golden case: image-to-image with batched CFG, the VAE encode of the image inside `prepare_latents`.

The converter splits the encode out of the helper into a `vae_encoder` block of its own (a caller holding latents
drops it and passes `image_latents`); the rest of the helper noises the latents to the first timestep.
"""

import torch
from diffusers import DiffusionPipeline
from diffusers.models import AutoencoderKL, UNet2DConditionModel
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from diffusers.schedulers import KarrasDiffusionSchedulers
from diffusers.utils.torch_utils import randn_tensor
from transformers import CLIPTextModel, CLIPTokenizer


class RepaintPipeline(DiffusionPipeline):
    model_cpu_offload_seq = "text_encoder->unet->vae"

    def __init__(
        self,
        vae: AutoencoderKL,
        text_encoder: CLIPTextModel,
        tokenizer: CLIPTokenizer,
        unet: UNet2DConditionModel,
        scheduler: KarrasDiffusionSchedulers,
    ):
        super().__init__()
        self.register_modules(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler)

    @property
    def guidance_scale(self):
        return self._guidance_scale

    @property
    def do_classifier_free_guidance(self):
        return self._guidance_scale > 1

    def encode_prompt(self, prompt, device):
        tokens = self.tokenizer(prompt, padding="max_length", truncation=True, return_tensors="pt")
        return self.text_encoder(tokens.input_ids.to(device))[0]

    def get_timesteps(self, num_inference_steps, strength):
        init_timestep = min(int(num_inference_steps * strength), num_inference_steps)
        t_start = max(num_inference_steps - init_timestep, 0)
        timesteps = self.scheduler.timesteps[t_start * self.scheduler.order :]
        return timesteps, num_inference_steps - t_start

    def prepare_latents(self, image, timestep, batch_size, dtype, device, generator=None):
        image = image.to(device=device, dtype=dtype)
        init_latents = self.vae.encode(image).latent_dist.sample(generator)
        init_latents = self.vae.config.scaling_factor * init_latents
        if batch_size > init_latents.shape[0]:
            init_latents = init_latents.repeat(batch_size // init_latents.shape[0], 1, 1, 1)
        noise = randn_tensor(init_latents.shape, generator=generator, device=device, dtype=dtype)
        return self.scheduler.add_noise(init_latents, noise, timestep)

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        image: torch.Tensor,
        strength: float = 0.75,
        num_inference_steps: int = 8,
        guidance_scale: float = 7.0,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ):
        r"""
        Args:
            prompt (`str` or `list[str]`):
                What the image should show.
            image (`torch.Tensor`):
                The starting image, in [-1, 1], channels first.
            strength (`float`, defaults to 0.75):
                How much of the denoising schedule runs: 1.0 ignores the image.
        """
        # 1. Define call parameters
        self._guidance_scale = guidance_scale
        batch_size = 1 if isinstance(prompt, str) else len(prompt)
        device = self._execution_device

        # 2. Encode input prompt
        prompt_embeds = self.encode_prompt(prompt, device)
        if self.do_classifier_free_guidance:
            negative_prompt_embeds = self.encode_prompt([""] * batch_size, device)
            prompt_embeds = torch.cat([negative_prompt_embeds, prompt_embeds])

        # 3. Prepare timesteps
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps, num_inference_steps = self.get_timesteps(num_inference_steps, strength)
        latent_timestep = timesteps[:1].repeat(batch_size)

        # 4. Prepare latent variables
        latents = self.prepare_latents(image, latent_timestep, batch_size, prompt_embeds.dtype, device, generator)

        # 5. Denoising loop
        for i, t in enumerate(self.progress_bar(timesteps)):
            latent_model_input = torch.cat([latents] * 2) if self.do_classifier_free_guidance else latents
            latent_model_input = self.scheduler.scale_model_input(latent_model_input, t)
            noise_pred = self.unet(latent_model_input, t, encoder_hidden_states=prompt_embeds).sample
            if self.do_classifier_free_guidance:
                noise_pred_uncond, noise_pred_text = noise_pred.chunk(2)
                noise_pred = noise_pred_uncond + self.guidance_scale * (noise_pred_text - noise_pred_uncond)
            latents = self.scheduler.step(noise_pred, t, latents).prev_sample

        # 6. Decode
        image = self.vae.decode(latents / self.vae.config.scaling_factor).sample

        if not return_dict:
            return (image,)
        return ImagePipelineOutput(images=image)
