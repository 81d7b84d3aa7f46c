"""Family case, text-to-image workflow: the default of the `Paint` family (`pipeline_paint_img2img.py` is the other).

`modularize plan pipeline_paint.py pipeline_paint_img2img.py` finds `image` selecting image-to-image and the
prompt encoding, denoising loop and decoding shared; `expected/plan.txt` is what it prints.
"""

import torch
from diffusers import DiffusionPipeline
from diffusers.models import AutoencoderKL, UNet2DConditionModel
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from diffusers.schedulers import KarrasDiffusionSchedulers
from diffusers.utils.torch_utils import randn_tensor
from transformers import CLIPTextModel, CLIPTokenizer


class PaintPipeline(DiffusionPipeline):
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

    def prepare_latents(self, batch_size, height, width, dtype, device, generator=None):
        shape = (batch_size, self.unet.config.in_channels, height // 8, width // 8)
        noise = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        return noise * self.scheduler.init_noise_sigma

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        height: int = 64,
        width: int = 64,
        num_inference_steps: int = 8,
        guidance_scale: float = 7.0,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ):
        r"""
        Args:
            prompt (`str` or `list[str]`):
                What the image should show.
            height (`int`, defaults to 64):
                Height of the image, in pixels.
            width (`int`, defaults to 64):
                Width of the image, in pixels.
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
        ticks = self.scheduler.timesteps

        # 4. Prepare latent noise
        sample = self.prepare_latents(batch_size, height, width, text_states.dtype, device, generator)

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
