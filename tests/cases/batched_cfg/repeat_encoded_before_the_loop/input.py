"""Golden case: a helper repeats a guide image for CFG, and the VAE encodes the repeat before the loop.

`ready_guide` doubles the guide under the flag it is given; `__call__` then encodes the doubled guide with the VAE
and adds it to the denoiser's input. On CPU the VAE's arithmetic depends on the batch's size, so encoding one guide
is not bitwise encoding two copies of it: the converter keeps the repeat and the encoding as written and halves
the encoded guide after them (under the same flag), so each guider batch gets exactly the standard's half.
"""

import torch
from diffusers import DiffusionPipeline
from diffusers.image_processor import VaeImageProcessor
from diffusers.models import AutoencoderKL, UNet2DConditionModel
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from diffusers.schedulers import KarrasDiffusionSchedulers
from diffusers.utils.torch_utils import randn_tensor
from transformers import CLIPTextModel, CLIPTokenizer


class GuidedByImagePipeline(DiffusionPipeline):
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
        scale = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.guide_processor = VaeImageProcessor(vae_scale_factor=scale)

    def embed(self, texts, device, copies):
        tokens = self.tokenizer(texts, padding="max_length", truncation=True, return_tensors="pt")
        return self.text_encoder(tokens.input_ids.to(device))[0].repeat_interleave(copies, dim=0)

    def ready_guide(self, image, height, width, rows, device, dtype, guided):
        guide = self.guide_processor.preprocess(image, height=height, width=width)
        guide = guide.repeat_interleave(rows // guide.shape[0], dim=0).to(device=device, dtype=dtype)
        if guided:
            guide = torch.cat([guide] * 2)
        return guide

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        image=None,
        negative_prompt: str | None = None,
        height: int = 32,
        width: int = 32,
        num_inference_steps: int = 3,
        guidance_scale: float = 5.0,
        guide_weight: float = 0.3,
        num_images_per_prompt: int = 1,
        generator: torch.Generator | None = None,
        output_type: str = "pt",
        return_dict: bool = True,
    ):
        r"""
        Args:
            prompt (`str` or `list[str]`):
                What the image shows.
            image:
                The image the result leans towards.
        """
        # 1. Encode the words
        device = self._execution_device
        prompts = [prompt] if isinstance(prompt, str) else prompt
        rows = len(prompts) * num_images_per_prompt
        use_guidance = guidance_scale > 1.0
        words = self.embed(prompts, device, num_images_per_prompt)
        if use_guidance:
            unwanted = self.embed([negative_prompt or ""] * len(prompts), device, num_images_per_prompt)
            words = torch.cat([unwanted, words])

        # 2. The guide, in latent space
        guide = self.ready_guide(image, height, width, rows, device, words.dtype, use_guidance)
        size = guide.shape[-2:]
        guide = self.vae.encode(guide).latent_dist.mode()
        guide = guide * self.vae.config.scaling_factor

        # 3. Ticks and noise
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        scale = 2 ** (len(self.vae.config.block_out_channels) - 1)
        shape = (rows, self.unet.config.in_channels, size[0] // scale, size[1] // scale)
        sample = randn_tensor(shape, generator=generator, device=device, dtype=words.dtype)
        sample = sample * self.scheduler.init_noise_sigma

        # 4. Denoise
        for t in self.progress_bar(timesteps):
            doubled = torch.cat([sample] * 2) if use_guidance else sample
            doubled = self.scheduler.scale_model_input(doubled, t) + guide_weight * guide
            pred = self.unet(doubled, t, encoder_hidden_states=words, return_dict=False)[0]
            if use_guidance:
                plain, worded = pred.chunk(2)
                pred = plain + guidance_scale * (worded - plain)
            sample = self.scheduler.step(pred, t, sample, return_dict=False)[0]

        # 5. Decode
        if output_type == "latent":
            image = sample
        else:
            image = self.vae.decode(sample / self.vae.config.scaling_factor, return_dict=False)[0]
            image = (image * 0.5 + 0.5).clamp(0, 1)
        if not return_dict:
            return (image,)
        return ImagePipelineOutput(images=image)
