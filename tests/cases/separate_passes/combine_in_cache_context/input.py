"""Golden case: `separate_passes/true_cfg` with the combine inside the unconditional pass's cache context.

The `with self.transformer.cache_context("uncond"):` block holds the model call and then the combine; the block is
narrowed to the call (a cache context only names the model calls made in it), and the combine is read as usual.
"""

import numpy as np
import torch
from diffusers import DiffusionPipeline
from diffusers.models import AutoencoderKL, SD3Transformer2DModel
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from diffusers.schedulers import FlowMatchEulerDiscreteScheduler
from diffusers.utils.torch_utils import randn_tensor
from transformers import T5EncoderModel, T5TokenizerFast


class CombineInCacheContextPipeline(DiffusionPipeline):
    model_cpu_offload_seq = "text_encoder->transformer->vae"

    def __init__(
        self,
        scheduler: FlowMatchEulerDiscreteScheduler,
        vae: AutoencoderKL,
        text_encoder: T5EncoderModel,
        tokenizer: T5TokenizerFast,
        transformer: SD3Transformer2DModel,
    ):
        super().__init__()
        self.register_modules(
            scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, transformer=transformer
        )

    def encode_prompt(self, prompt, device, max_sequence_length=32):
        prompts = [prompt] if isinstance(prompt, str) else prompt
        tokens = self.tokenizer(
            prompts, padding="max_length", max_length=max_sequence_length, truncation=True, return_tensors="pt"
        )
        return self.text_encoder(tokens.input_ids.to(device))[0]

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        negative_prompt: str | list[str] | None = None,
        true_cfg_scale: float = 4.0,
        num_inference_steps: int = 4,
        generator: torch.Generator | None = None,
        output_type: str = "pt",
        return_dict: bool = True,
    ):
        # 1. Define call parameters
        batch_size = 1 if isinstance(prompt, str) else len(prompt)
        device = self._execution_device
        has_neg_prompt = negative_prompt is not None
        do_true_cfg = true_cfg_scale > 1 and has_neg_prompt

        # 2. Encode prompt
        prompt_embeds = self.encode_prompt(prompt, device)
        if do_true_cfg:
            negative_prompt_embeds = self.encode_prompt(negative_prompt, device)

        # 3. Prepare latent variables
        channels = self.transformer.config.in_channels
        sample_size = self.transformer.config.sample_size
        shape = (batch_size, channels, sample_size, sample_size)
        latents = randn_tensor(shape, generator=generator, device=device, dtype=prompt_embeds.dtype)

        # 4. Prepare timesteps
        sigmas = np.linspace(1.0, 1 / num_inference_steps, num_inference_steps)
        self.scheduler.set_timesteps(sigmas=sigmas, device=device)
        timesteps = self.scheduler.timesteps

        # 5. Denoising loop
        for i, t in enumerate(timesteps):
            timestep = t.expand(latents.shape[0]).to(latents.dtype)
            with self.transformer.cache_context("cond"):
                noise_pred = self.transformer(
                    hidden_states=latents,
                    timestep=timestep,
                    encoder_hidden_states=prompt_embeds,
                    return_dict=False,
                )[0]
            if do_true_cfg:
                with self.transformer.cache_context("uncond"):
                    neg_noise_pred = self.transformer(
                        hidden_states=latents,
                        timestep=timestep,
                        encoder_hidden_states=negative_prompt_embeds,
                        return_dict=False,
                    )[0]
                    noise_pred = neg_noise_pred + true_cfg_scale * (noise_pred - neg_noise_pred)
            latents = self.scheduler.step(noise_pred, t, latents, return_dict=False)[0]

        # 6. Decode
        if output_type == "latent":
            image = latents
        else:
            image = self.vae.decode(latents / self.vae.config.scaling_factor, return_dict=False)[0]

        self.maybe_free_model_hooks()
        if not return_dict:
            return (image,)
        return ImagePipelineOutput(images=image)
