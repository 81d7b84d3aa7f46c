"""Family case, sketch-guided workflow: `PaintPipeline` whose starting noise is blended with a sketch encoded by the
VAE. Its `image` is the sketch, not the image-to-image workflow's starting image (`pipeline_paint_img2img.py`):
both need an `image`, so in a family of the three this workflow takes it as `sketch_image`
(`planning.family_rename`).
"""

import numpy
import torch
from diffusers import DiffusionPipeline
from diffusers.models import AutoencoderKL, UNet2DConditionModel
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from diffusers.schedulers import KarrasDiffusionSchedulers
from diffusers.utils.torch_utils import randn_tensor
from transformers import CLIPTextModel, CLIPTokenizer


class PaintSketchPipeline(DiffusionPipeline):
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

    def encode_sketch(self, image, batch_size, dtype, device):
        if not isinstance(image, torch.Tensor):  # a PIL image: channels first, in [-1, 1]
            image = torch.from_numpy(numpy.asarray(image, dtype=numpy.float32)).permute(2, 0, 1)[None] / 127.5 - 1
        image = image.to(device=device, dtype=dtype)
        sketch = self.vae.encode(image).latent_dist.mode() * self.vae.config.scaling_factor
        if batch_size > sketch.shape[0]:
            sketch = sketch.repeat(batch_size // sketch.shape[0], 1, 1, 1)
        return sketch

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        image,
        sketch_weight: float = 0.5,
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
                The sketch: a tensor in [-1, 1], channels first, or a PIL image.
            sketch_weight (`float`, defaults to 0.5):
                How much of the encoded sketch the starting noise carries.
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

        # 4. Prepare latent noise, blended with the sketch
        sketch = self.encode_sketch(image, batch_size, text_states.dtype, device)
        noise = randn_tensor(sketch.shape, generator=generator, device=device, dtype=sketch.dtype)
        sample = noise * self.scheduler.init_noise_sigma + sketch_weight * sketch

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
