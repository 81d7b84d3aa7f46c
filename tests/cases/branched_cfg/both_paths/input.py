"""Golden case: batched CFG written with an explicit path for CFG off around the model call's inputs and output.

With CFG on the inputs are doubled (`torch.cat([latents] * 2)`, `timestep.repeat(2)`) and the embeddings
concatenated conditional first; the output is sliced into its halves and combined as `c + s * (c - u)`. With CFG
off the `else` branches say what one guider batch needs.
"""

import torch
from diffusers import DiffusionPipeline
from diffusers.models import AutoencoderKL, SD3Transformer2DModel
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from diffusers.schedulers import FlowMatchEulerDiscreteScheduler
from diffusers.utils.torch_utils import randn_tensor
from transformers import T5EncoderModel, T5TokenizerFast


class BothPathsPipeline(DiffusionPipeline):
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

    @property
    def do_classifier_free_guidance(self):
        return self._guidance_scale > 1

    def encode_prompt(self, prompt, negative_prompt, device):
        tokens = self.tokenizer([prompt, negative_prompt], padding="max_length", truncation=True, return_tensors="pt")
        embeds = self.text_encoder(tokens.input_ids.to(device))[0]
        return embeds[:1], embeds[1:]

    @torch.no_grad()
    def __call__(
        self,
        prompt: str,
        negative_prompt: str = "",
        guidance_scale: float = 4.0,
        num_inference_steps: int = 4,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ):
        # 1. Define call parameters
        self._guidance_scale = guidance_scale
        device = self._execution_device

        # 2. Encode prompt
        prompt_embeds, negative_prompt_embeds = self.encode_prompt(prompt, negative_prompt, device)

        # 3. Prepare latent variables
        size = self.transformer.config.sample_size
        shape = (1, self.transformer.config.in_channels, size, size)
        latents = randn_tensor(shape, generator=generator, device=device, dtype=prompt_embeds.dtype)
        batch = latents.shape[0]

        # 4. Prepare timesteps
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps

        # 5. Denoising loop
        for i, t in enumerate(timesteps):
            timestep = t.expand(latents.shape[0])
            if self.do_classifier_free_guidance:
                model_input = torch.cat([latents] * 2)
                embeds_input = torch.cat([prompt_embeds, negative_prompt_embeds])
                timestep_input = timestep.repeat(2)
            else:
                model_input = latents
                embeds_input = prompt_embeds
                timestep_input = timestep
            model_out = self.transformer(model_input, embeds_input, timestep=timestep_input, return_dict=False)[0]
            if self.do_classifier_free_guidance:
                pos = model_out[:batch]
                neg = model_out[batch:]
                noise_pred = pos + guidance_scale * (pos - neg)
            else:
                noise_pred = model_out
            latents = self.scheduler.step(noise_pred, t, latents, return_dict=False)[0]

        # 6. Decode
        image = self.vae.decode(latents, return_dict=False)[0]

        if not return_dict:
            return (image,)
        return ImagePipelineOutput(images=image)
