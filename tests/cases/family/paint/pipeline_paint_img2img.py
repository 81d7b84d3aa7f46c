"""Family case, image-to-image workflow: `PaintPipeline` with a starting image, encoded by the VAE and noised to the
first timestep of a schedule shortened by `strength`. Its prompt encoding, denoising loop and decoding are the
same code as the text-to-image workflow's (`pipeline_paint.py`); the timesteps and latents are not.
"""

import numpy
import torch
from diffusers import DiffusionPipeline
from diffusers.models import AutoencoderKL, UNet2DConditionModel
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from diffusers.schedulers import KarrasDiffusionSchedulers
from diffusers.utils.torch_utils import randn_tensor
from transformers import CLIPTextModel, CLIPTokenizer


class PaintImg2ImgPipeline(DiffusionPipeline):
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
        skipped = max(num_inference_steps - init_timestep, 0)
        ticks = self.scheduler.timesteps[skipped * self.scheduler.order :]
        return ticks, num_inference_steps - skipped

    def prepare_latents(self, image, timestep, batch_size, dtype, device, generator=None):
        if not isinstance(image, torch.Tensor):  # a PIL image: channels first, in [-1, 1]
            image = torch.from_numpy(numpy.asarray(image, dtype=numpy.float32)).permute(2, 0, 1)[None] / 127.5 - 1
        image = image.to(device=device, dtype=dtype)
        encoded = self.vae.encode(image).latent_dist.sample(generator)
        encoded = self.vae.config.scaling_factor * encoded
        if batch_size > encoded.shape[0]:
            encoded = encoded.repeat(batch_size // encoded.shape[0], 1, 1, 1)
        noise = randn_tensor(encoded.shape, generator=generator, device=device, dtype=dtype)
        return self.scheduler.add_noise(encoded, noise, timestep)

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        image,
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
            image (`torch.Tensor` or `PIL.Image.Image`):
                The starting image: a tensor in [-1, 1], channels first, or a PIL image.
            strength (`float`, defaults to 0.75):
                How much of the denoising schedule runs: 1.0 ignores the image.
        """
        # 1. Define the settings
        self._guidance_scale = guidance_scale
        batch_size = 1 if isinstance(prompt, str) else len(prompt)
        device = self._execution_device

        # 2. Encode the words
        text_states = self.encode_prompt(prompt, device)
        if self.do_classifier_free_guidance:
            unwanted_states = self.encode_prompt([""] * batch_size, device)
            text_states = torch.cat([unwanted_states, text_states])

        # 3. Prepare ticks
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        ticks, num_inference_steps = self.get_timesteps(num_inference_steps, strength)
        first_step = ticks[:1].repeat(batch_size)

        # 4. Prepare latent noise
        sample = self.prepare_latents(image, first_step, batch_size, text_states.dtype, device, generator)

        # 5. Denoising, step by step
        for i, t in enumerate(self.progress_bar(ticks)):
            unet_input = torch.cat([sample] * 2) if self.do_classifier_free_guidance else sample
            unet_input = self.scheduler.scale_model_input(unet_input, t)
            pred = self.unet(unet_input, t, encoder_hidden_states=text_states).sample
            if self.do_classifier_free_guidance:
                pred_unguided, pred_worded = pred.chunk(2)
                pred = pred_unguided + self.guidance_scale * (pred_worded - pred_unguided)
            sample = self.scheduler.step(pred, t, sample).prev_sample

        # 6. Decode to pixels
        image = self.vae.decode(sample / self.vae.config.scaling_factor).sample

        if not return_dict:
            return (image,)
        return ImagePipelineOutput(images=image)
