"""Golden case: a guidance combine `ClassifierFreeGuidance` does not compute, kept verbatim in a guider subclass.

Two passes per step (the unconditional one under the pipeline's CFG property), two conditionings that differ
between them (token embeddings and pooled embeddings), and a combine that matches the guided prediction's spread
to the conditional one's after `u + s * (c - u)`.
"""

import torch
from diffusers import DiffusionPipeline
from diffusers.models import AutoencoderKL, SD3Transformer2DModel
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from diffusers.schedulers import FlowMatchEulerDiscreteScheduler
from diffusers.utils.torch_utils import randn_tensor
from transformers import CLIPTextModelWithProjection, CLIPTokenizer


class SpreadMatchedPipeline(DiffusionPipeline):
    def __init__(
        self,
        transformer: SD3Transformer2DModel,
        scheduler: FlowMatchEulerDiscreteScheduler,
        vae: AutoencoderKL,
        text_encoder: CLIPTextModelWithProjection,
        tokenizer: CLIPTokenizer,
    ):
        super().__init__()
        self.register_modules(
            transformer=transformer, scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer
        )

    @property
    def do_classifier_free_guidance(self):
        return self._guidance_scale > 1

    def encode_text(self, texts, device):
        tokens = self.tokenizer(texts, padding="max_length", truncation=True, return_tensors="pt")
        output = self.text_encoder(tokens.input_ids.to(device), output_hidden_states=True)
        return output.hidden_states[-2], output.text_embeds

    @torch.no_grad()
    def __call__(
        self,
        prompt: list[str],
        negative_prompt: list[str] | None = None,
        guidance_scale: float = 5.0,
        num_inference_steps: int = 4,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ):
        # 1. Define call parameters
        self._guidance_scale = guidance_scale
        device = self._execution_device

        # 2. Encode prompt
        prompt_embeds, pooled_prompt_embeds = self.encode_text(prompt, device)
        negative_prompt_embeds, negative_pooled_prompt_embeds = self.encode_text(
            negative_prompt or [""] * len(prompt), device
        )

        # 3. Prepare timesteps
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps

        # 4. Prepare latent variables
        size = self.transformer.config.sample_size
        shape = (len(prompt), self.transformer.config.in_channels, size, size)
        latents = randn_tensor(shape, generator=generator, device=device, dtype=prompt_embeds.dtype)

        # 5. Denoising loop
        for i, t in enumerate(timesteps):
            timestep = t.expand(latents.shape[0])
            noise_pred = self.transformer(
                hidden_states=latents,
                timestep=timestep,
                encoder_hidden_states=prompt_embeds,
                pooled_projections=pooled_prompt_embeds,
                return_dict=False,
            )[0]
            if self.do_classifier_free_guidance:
                uncond_pred = self.transformer(
                    hidden_states=latents,
                    timestep=timestep,
                    encoder_hidden_states=negative_prompt_embeds,
                    pooled_projections=negative_pooled_prompt_embeds,
                    return_dict=False,
                )[0]
                guided = uncond_pred + guidance_scale * (noise_pred - uncond_pred)
                noise_pred = guided * (noise_pred.std() / guided.std())
            latents = self.scheduler.step(noise_pred, t, latents, return_dict=False)[0]

        # 6. Decode
        image = self.vae.decode(latents / self.vae.config.scaling_factor, return_dict=False)[0]

        if not return_dict:
            return (image,)
        return ImagePipelineOutput(images=image)
