"""Golden case: the denoising loop inside an outer loop that re-noises its result between rounds (as FreeInit
iterates), written with names of its own.

Each round but the first mixes fresh noise into what the previous round denoised and runs the schedule again. The
outer loop stays verbatim in the loop wrapper; what it and the steps both use (`sample`, rebound by both, and the
`ticks` it may shorten) lives in the loop's block state, so each round reads what the last one left.
"""

import torch
from diffusers import DiffusionPipeline
from diffusers.models import AutoencoderKL, UNet2DConditionModel
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from diffusers.schedulers import KarrasDiffusionSchedulers
from diffusers.utils.torch_utils import randn_tensor
from transformers import CLIPTextModel, CLIPTokenizer


class RenoisedRoundsPipeline(DiffusionPipeline):
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

    def embed(self, texts, device, copies):
        tokens = self.tokenizer(texts, padding="max_length", truncation=True, return_tensors="pt")
        return self.text_encoder(tokens.input_ids.to(device))[0].repeat_interleave(copies, dim=0)

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        negative_prompt: str | None = None,
        height: int = 64,
        width: int = 64,
        num_inference_steps: int = 3,
        guidance_scale: float = 5.0,
        rounds: int = 2,
        keep: float = 0.5,
        num_images_per_prompt: int = 1,
        generator: torch.Generator | None = None,
        output_type: str = "pt",
        return_dict: bool = True,
    ):
        r"""
        Args:
            prompt (`str` or `list[str]`):
                What the image shows.
            rounds (`int`, defaults to 2):
                How many times the schedule runs, re-noising in between.
            keep (`float`, defaults to 0.5):
                How much of the previous round a new round starts from.
        """
        # 1. Words
        device = self._execution_device
        prompts = [prompt] if isinstance(prompt, str) else prompt
        guided = guidance_scale > 1.0
        words = self.embed(prompts, device, num_images_per_prompt)
        if guided:
            blank = self.embed([negative_prompt or ""] * len(prompts), device, num_images_per_prompt)
            words = torch.cat([blank, words])

        # 2. Noise
        shape = (len(prompts) * num_images_per_prompt, self.unet.config.in_channels, height // 4, width // 4)
        sample = randn_tensor(shape, generator=generator, device=device, dtype=words.dtype)

        # 3. Rounds of denoising
        for round_index in range(rounds):
            self.scheduler.set_timesteps(num_inference_steps, device=device)
            ticks = self.scheduler.timesteps
            if round_index > 0:
                fresh = randn_tensor(shape, generator=generator, device=device, dtype=words.dtype)
                sample = keep * sample + (1 - keep) * fresh
                ticks = ticks[1:]
            sample = sample * self.scheduler.init_noise_sigma
            for t in ticks:
                unet_input = torch.cat([sample] * 2) if guided else sample
                unet_input = self.scheduler.scale_model_input(unet_input, t)
                pred = self.unet(unet_input, t, encoder_hidden_states=words, return_dict=False)[0]
                if guided:
                    pred_blank, pred_worded = pred.chunk(2)
                    pred = pred_blank + guidance_scale * (pred_worded - pred_blank)
                sample = self.scheduler.step(pred, t, sample, return_dict=False)[0]

        # 4. Decode
        if output_type == "latent":
            image = sample
        else:
            image = self.vae.decode(sample / self.vae.config.scaling_factor, return_dict=False)[0]
            image = (image * 0.5 + 0.5).clamp(0, 1)
        if not return_dict:
            return (image,)
        return ImagePipelineOutput(images=image)
