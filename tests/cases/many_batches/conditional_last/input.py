"""Golden case: guidance over three batches whose conditional part comes last.

As `text_and_picture`, but every concatenation puts the value guidance off uses last (`[blank, blank, words]`,
`[nothing, picture, picture]`) and the prediction splits in that order. The guider still runs the conditional
batch first: its batches take parts 2, 0, 1, and the combine gets the parts back in the source's order.
"""

import torch
from diffusers import DiffusionPipeline
from diffusers.image_processor import PipelineImageInput, VaeImageProcessor
from diffusers.models import AutoencoderKL, UNet2DConditionModel
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from diffusers.schedulers import KarrasDiffusionSchedulers
from diffusers.utils.torch_utils import randn_tensor
from transformers import CLIPTextModel, CLIPTokenizer


def pull_toward_words(guided, worded, strength):
    spread_worded = worded.std(dim=list(range(1, worded.ndim)), keepdim=True)
    spread_guided = guided.std(dim=list(range(1, guided.ndim)), keepdim=True)
    pulled = guided * (spread_worded / spread_guided)
    return strength * pulled + (1 - strength) * guided


class ConditionalLastPipeline(DiffusionPipeline):
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
        self.picture_processor = VaeImageProcessor(vae_scale_factor=2 ** (len(vae.config.block_out_channels) - 1))

    def embed_words(self, texts, device, copies, three_way, avoid=None):
        tokens = self.tokenizer(texts, padding="max_length", truncation=True, return_tensors="pt")
        words = self.text_encoder(tokens.input_ids.to(device))[0].repeat_interleave(copies, dim=0)
        if three_way:
            blank = self.tokenizer([avoid or ""] * len(texts), padding="max_length", return_tensors="pt")
            blank_words = self.text_encoder(blank.input_ids.to(device))[0].repeat_interleave(copies, dim=0)
            words = torch.cat([blank_words, blank_words, words])
        return words

    def encode_picture(self, picture, count, dtype, three_way):
        seen = self.vae.encode(picture.to(dtype=dtype)).latent_dist.mode()
        seen = seen.repeat_interleave(count // seen.shape[0], dim=0)
        if three_way:
            nothing = torch.zeros_like(seen)
            seen = torch.cat([nothing, seen, seen], dim=0)
        return seen * self.vae.config.scaling_factor

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        image: PipelineImageInput,
        negative_prompt: str | None = None,
        num_inference_steps: int = 4,
        text_weight: float = 5.0,
        picture_weight: float = 1.5,
        pull: float = 0.0,
        num_images_per_prompt: int = 1,
        generator: torch.Generator | None = None,
        output_type: str = "pt",
        return_dict: bool = True,
    ):
        r"""
        Args:
            prompt (`str` or `list[str]`):
                What to change in the picture.
            image (`PipelineImageInput`):
                The picture to change.
            text_weight (`float`, defaults to 5.0):
                How much the words guide; off at 1.0 and below.
            picture_weight (`float`, defaults to 1.5):
                How much the picture guides; below 1.0 guidance is off.
        """
        # 1. Words and picture
        device = self._execution_device
        prompts = [prompt] if isinstance(prompt, str) else prompt
        three_way = text_weight > 1.0 and picture_weight >= 1.0
        words = self.embed_words(prompts, device, num_images_per_prompt, three_way, negative_prompt)
        picture = self.picture_processor.preprocess(image).to(device)
        seen = self.encode_picture(picture, len(prompts) * num_images_per_prompt, words.dtype, three_way)

        # 2. Ticks and noise
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        shape = (len(prompts) * num_images_per_prompt, self.unet.config.in_channels, *seen.shape[-2:])
        sample = randn_tensor(shape, generator=generator, device=device, dtype=words.dtype)
        sample = sample * self.scheduler.init_noise_sigma

        # 3. Denoise
        for t in self.scheduler.timesteps:
            unet_input = torch.cat([sample] * 3) if three_way else sample
            unet_input = self.scheduler.scale_model_input(unet_input, t)
            unet_input = unet_input + 0.1 * seen
            guess = self.unet(unet_input, t, encoder_hidden_states=words).sample
            if three_way:
                by_nothing, by_picture, by_both = guess.chunk(3)
                guess = (
                    by_nothing
                    + text_weight * (by_both - by_picture)
                    + picture_weight * (by_picture - by_nothing)
                )
            if three_way and pull > 0:
                guess = pull_toward_words(guess, by_both, pull)
            sample = self.scheduler.step(guess, t, sample, return_dict=False)[0]

        # 4. Decode
        if output_type == "latent":
            picture = sample
        else:
            picture = self.vae.decode(sample / self.vae.config.scaling_factor, return_dict=False)[0]
            picture = (picture * 0.5 + 0.5).clamp(0, 1)
        if not return_dict:
            return (picture,)
        return ImagePipelineOutput(images=picture)
