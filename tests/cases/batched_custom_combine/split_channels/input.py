"""Golden case: batched guidance whose branch does more than chunk and combine, the way pipelines with a learned
variance do: the prediction's channels are split in two groups, only the first group is guided, and the second
group is taken from the worded half and put back. The whole branch runs in a guider subclass, on the two batches'
predictions concatenated as the source concatenated them.
"""

import torch
from diffusers import DiffusionPipeline
from diffusers.models import AutoencoderKL, UNet2DConditionModel
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from diffusers.schedulers import KarrasDiffusionSchedulers
from diffusers.utils.torch_utils import randn_tensor
from transformers import CLIPTextModel, CLIPTokenizer


class SplitChannelsTextToImagePipeline(DiffusionPipeline):
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
        self.pixels_per_latent = (
            2 ** (len(self.vae.config.block_out_channels) - 1) if getattr(self, "vae", None) else 8
        )

    @property
    def guidance_scale(self):
        return self._guidance_scale

    @property
    def do_classifier_free_guidance(self):
        return self._guidance_scale > 1

    def encode_prompt(self, prompt, device, num_images_per_prompt, do_classifier_free_guidance, negative_prompt=None):
        prompts = [prompt] if isinstance(prompt, str) else prompt
        tokens = self.tokenizer(prompts, padding="max_length", truncation=True, return_tensors="pt")
        text_states = self.text_encoder(tokens.input_ids.to(device))[0]
        text_states = text_states.repeat_interleave(num_images_per_prompt, dim=0)
        unwanted_states = None
        if do_classifier_free_guidance:
            negatives = [negative_prompt or ""] * len(prompts)
            tokens = self.tokenizer(negatives, padding="max_length", truncation=True, return_tensors="pt")
            unwanted_states = self.text_encoder(tokens.input_ids.to(device))[0]
            unwanted_states = unwanted_states.repeat_interleave(num_images_per_prompt, dim=0)
        return text_states, unwanted_states

    def prepare_latents(self, batch_size, channels, height, width, dtype, device, generator):
        shape = (batch_size, channels, height // self.pixels_per_latent, width // self.pixels_per_latent)
        sample = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        return sample * self.scheduler.init_noise_sigma

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        negative_prompt: str | None = None,
        height: int = 64,
        width: int = 64,
        num_inference_steps: int = 4,
        guidance_scale: float = 6.0,
        num_images_per_prompt: int = 1,
        generator: torch.Generator | None = None,
        output_type: str = "pt",
        return_dict: bool = True,
    ):
        r"""
        Args:
            prompt (`str` or `list[str]`):
                What the image shows.
            guidance_scale (`float`, defaults to 6.0):
                Classifier-free guidance scale; off at 1.0 and below.
        """
        # 1. Define the settings
        self._guidance_scale = guidance_scale
        batch_size = 1 if isinstance(prompt, str) else len(prompt)
        device = self._execution_device

        # 2. Encode the words
        text_states, unwanted_states = self.encode_prompt(
            prompt, device, num_images_per_prompt, self.do_classifier_free_guidance, negative_prompt
        )
        if self.do_classifier_free_guidance:
            text_states = torch.cat([unwanted_states, text_states])

        # 3. Prepare ticks
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        ticks = self.scheduler.timesteps

        # 4. Prepare latent noise
        sample = self.prepare_latents(
            batch_size * num_images_per_prompt,
            self.unet.config.in_channels,
            height,
            width,
            text_states.dtype,
            device,
            generator,
        )

        # 5. Denoising, step by step
        with self.progress_bar(total=num_inference_steps) as progress_bar:
            for i, t in enumerate(ticks):
                unet_input = torch.cat([sample] * 2) if self.do_classifier_free_guidance else sample
                unet_input = self.scheduler.scale_model_input(unet_input, t)
                pred = self.unet(unet_input, t, encoder_hidden_states=text_states, return_dict=False)[0]
                if self.do_classifier_free_guidance:
                    pred, side = pred.split(sample.shape[1] // 2, dim=1)
                    pred_unguided, pred_worded = pred.chunk(2)
                    _, side_worded = side.chunk(2)
                    pred = pred_unguided + self.guidance_scale * (pred_worded - pred_unguided)
                    pred = torch.cat([pred, side_worded], dim=1)
                sample = self.scheduler.step(pred, t, sample, return_dict=False)[0]
                progress_bar.update()

        # 6. Decode to pixels
        if output_type == "latent":
            image = sample
        else:
            image = self.vae.decode(sample / self.vae.config.scaling_factor, return_dict=False)[0]
            image = (image * 0.5 + 0.5).clamp(0, 1)

        self.maybe_free_model_hooks()
        if not return_dict:
            return (image,)
        return ImagePipelineOutput(images=image)
