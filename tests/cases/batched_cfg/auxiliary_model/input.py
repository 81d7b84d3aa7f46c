"""Golden case: an auxiliary model (a ControlNet) feeds the denoiser in the same step, with a conditional-only mode.

The hint net runs on the doubled batch, or, with `cond_only`, on the conditional half alone (`words.chunk(2)[1]`),
its outputs then padded with zeros for the unconditional half. The converter runs the hint net in each guider
batch before the batch's denoiser call: the `else` of the first branch (the `if` computes its conditional half),
and, for the unconditional batch, the zeros of the second; the helper that repeats the hint for CFG is called
without the flag.
"""

import torch
from diffusers import DiffusionPipeline
from diffusers.image_processor import VaeImageProcessor
from diffusers.models import AutoencoderKL, ControlNetModel, UNet2DConditionModel
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from diffusers.schedulers import KarrasDiffusionSchedulers
from diffusers.utils.torch_utils import randn_tensor
from transformers import CLIPTextModel, CLIPTokenizer


class HintedPipeline(DiffusionPipeline):
    def __init__(
        self,
        vae: AutoencoderKL,
        text_encoder: CLIPTextModel,
        tokenizer: CLIPTokenizer,
        unet: UNet2DConditionModel,
        controlnet: ControlNetModel,
        scheduler: KarrasDiffusionSchedulers,
    ):
        super().__init__()
        self.register_modules(
            vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, controlnet=controlnet, scheduler=scheduler
        )
        scale = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.hint_processor = VaeImageProcessor(vae_scale_factor=scale, do_convert_rgb=True, do_normalize=False)

    def embed(self, texts, device, copies):
        tokens = self.tokenizer(texts, padding="max_length", truncation=True, return_tensors="pt")
        return self.text_encoder(tokens.input_ids.to(device))[0].repeat_interleave(copies, dim=0)

    def prepare_hint(self, image, height, width, rows, device, dtype, guided, cond_only):
        hint = self.hint_processor.preprocess(image, height=height, width=width).to(dtype=torch.float32)
        hint = hint.repeat_interleave(rows if hint.shape[0] == 1 else rows // hint.shape[0], dim=0)
        hint = hint.to(device=device, dtype=dtype)
        if guided and not cond_only:
            hint = torch.cat([hint] * 2)
        return hint

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        control_image=None,
        negative_prompt: str | None = None,
        height: int = 32,
        width: int = 32,
        num_inference_steps: int = 3,
        guidance_scale: float = 5.0,
        hint_strength: float = 1.0,
        cond_only: bool = False,
        num_images_per_prompt: int = 1,
        generator: torch.Generator | None = None,
        output_type: str = "pt",
        return_dict: bool = True,
    ):
        r"""
        Args:
            prompt (`str` or `list[str]`):
                What the image shows.
            control_image:
                The hint the image follows.
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

        # 2. The hint
        hint = self.prepare_hint(control_image, height, width, rows, device, words.dtype, use_guidance, cond_only)

        # 3. Ticks and noise
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        scale = 2 ** (len(self.vae.config.block_out_channels) - 1)
        shape = (rows, self.unet.config.in_channels, height // scale, width // scale)
        sample = randn_tensor(shape, generator=generator, device=device, dtype=words.dtype)
        sample = sample * self.scheduler.init_noise_sigma

        # 4. Denoise
        for t in self.progress_bar(timesteps):
            doubled = torch.cat([sample] * 2) if use_guidance else sample
            doubled = self.scheduler.scale_model_input(doubled, t)
            if cond_only and use_guidance:
                hint_input = self.scheduler.scale_model_input(sample, t)
                hint_words = words.chunk(2)[1]
            else:
                hint_input = doubled
                hint_words = words
            extra_down, extra_mid = self.controlnet(
                hint_input,
                t,
                encoder_hidden_states=hint_words,
                controlnet_cond=hint,
                conditioning_scale=hint_strength,
                guess_mode=cond_only,
                return_dict=False,
            )
            if cond_only and use_guidance:
                extra_down = [torch.cat([torch.zeros_like(r), r]) for r in extra_down]
                extra_mid = torch.cat([torch.zeros_like(extra_mid), extra_mid])
            pred = self.unet(
                doubled,
                t,
                encoder_hidden_states=words,
                down_block_additional_residuals=extra_down,
                mid_block_additional_residual=extra_mid,
                return_dict=False,
            )[0]
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
