"""Golden case: a helper returns its results already doubled for CFG, conditional half first.

`encode_words` is handed the CFG flag and returns `torch.cat([states, avoided])` and the attention mask doubled the
same way, with a third result it never doubles. The converter splits the doubled results where `__call__`
receives them (`states, negative_states = states.chunk(2)`), so the guider pairs the halves; the helper itself is
copied verbatim and still doubles.
"""

import torch
from diffusers import DiffusionPipeline
from diffusers.models import AutoencoderKL, UNet2DConditionModel
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from diffusers.schedulers import KarrasDiffusionSchedulers
from diffusers.utils.torch_utils import randn_tensor
from transformers import CLIPTextModel, CLIPTokenizer


class HelperDoublesPipeline(DiffusionPipeline):
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

    def encode_words(self, texts, device, copies, guided, avoid=None):
        tokens = self.tokenizer(texts, padding="max_length", truncation=True, return_tensors="pt")
        states = self.text_encoder(tokens.input_ids.to(device))[0].repeat_interleave(copies, dim=0)
        mask = tokens.attention_mask.to(device).repeat_interleave(copies, dim=0)
        counts = [int(row.sum()) for row in mask]
        if guided:
            avoided = self.tokenizer([avoid or ""] * len(texts), padding="max_length", return_tensors="pt")
            avoided_states = self.text_encoder(avoided.input_ids.to(device))[0].repeat_interleave(copies, dim=0)
            states = torch.cat([states, avoided_states])
            mask = torch.cat([mask, avoided.attention_mask.to(device).repeat_interleave(copies, dim=0)])
        return states, mask, counts

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        negative_prompt: str | None = None,
        height: int = 64,
        width: int = 64,
        num_inference_steps: int = 4,
        guidance_scale: float = 5.0,
        num_images_per_prompt: int = 1,
        generator: torch.Generator | None = None,
        output_type: str = "pt",
        return_dict: bool = True,
    ):
        r"""
        Args:
            prompt (`str` or `list[str]`):
                What the image shows.
            guidance_scale (`float`, defaults to 5.0):
                Classifier-free guidance scale; off at 1.0 and below.
        """
        # 1. Encode the words
        device = self._execution_device
        prompts = [prompt] if isinstance(prompt, str) else prompt
        with_guidance = guidance_scale > 1.0
        words, word_mask, _ = self.encode_words(prompts, device, num_images_per_prompt, with_guidance, negative_prompt)

        # 2. Prepare ticks and noise
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        shape = (len(prompts) * num_images_per_prompt, self.unet.config.in_channels, height // 4, width // 4)
        sample = randn_tensor(shape, generator=generator, device=device, dtype=words.dtype)
        sample = sample * self.scheduler.init_noise_sigma

        # 3. Denoise
        for i, t in enumerate(self.progress_bar(self.scheduler.timesteps)):
            unet_input = torch.cat([sample] * 2) if with_guidance else sample
            unet_input = self.scheduler.scale_model_input(unet_input, t)
            pred = self.unet(
                unet_input, t, encoder_hidden_states=words, encoder_attention_mask=word_mask, return_dict=False
            )[0]
            if with_guidance:
                pred_worded, pred_plain = pred.chunk(2)
                pred = pred_plain + guidance_scale * (pred_worded - pred_plain)
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
