"""Golden case: perturbed-attention guidance (PAG) beside batched CFG, written with names of its own.

Only what diffusers' `PAGMixin` requires keeps its name: its methods, the per-call state its properties read
(`_pag_scale`, `_pag_adaptive_scale`) and a denoiser called `unet`. The flag that switches PAG is a property of the
pipeline's own, the loop is `for t in <schedule>:` and repeats the latents to the batch of the conditionings (two
rows with CFG, three with CFG and PAG), as diffusers' PAG pipelines do.
"""

import torch
from diffusers import DiffusionPipeline
from diffusers.models import AutoencoderKL, UNet2DConditionModel
from diffusers.pipelines.pag.pag_utils import PAGMixin
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from diffusers.schedulers import DDIMScheduler
from transformers import CLIPTextModel, CLIPTokenizer


class PerturbedSketchBook(DiffusionPipeline, PAGMixin):
    def __init__(
        self,
        unet: UNet2DConditionModel,
        clock: DDIMScheduler,
        reader: CLIPTextModel,
        splitter: CLIPTokenizer,
        lens: AutoencoderKL,
        shaken: str = "mid",
    ):
        super().__init__()
        self.register_modules(unet=unet, clock=clock, reader=reader, splitter=splitter, lens=lens)
        self.set_pag_applied_layers(shaken)

    @property
    def mixing(self):
        return self._strength > 1.0

    @property
    def shaking(self):
        return self._pag_scale > 0

    def _read(self, words, where):
        pieces = self.splitter(words, padding="max_length", truncation=True, return_tensors="pt")
        return self.reader(pieces.input_ids.to(where))[0]

    @torch.no_grad()
    def __call__(
        self,
        wish: str,
        avoid: str = "",
        strength: float = 5.0,
        shake: float = 3.0,
        fade: float = 0.0,
        ticks: int = 4,
        luck=None,
    ):
        # remember the knobs
        self._strength = strength
        self._pag_scale = shake
        self._pag_adaptive_scale = fade
        where = self._execution_device

        # words to vectors
        meaning = self._read([wish], where)
        unwanted = None
        if self.mixing:
            unwanted = self._read([avoid], where)
        if self.shaking:
            meaning = self._prepare_perturbed_attention_guidance(meaning, unwanted, self.mixing)
        elif self.mixing:
            meaning = torch.cat([unwanted, meaning])

        # the schedule
        self.clock.set_timesteps(ticks, device=where)
        schedule = self.clock.timesteps

        # a blank canvas of noise
        canvas = torch.randn((1, self.unet.config.in_channels, 8, 8), generator=luck).to(where)

        # paint, some attention shaken
        if self.shaking:
            steady = self.unet.attn_processors
            self._set_pag_attn_processor(pag_applied_layers=self.pag_applied_layers, do_classifier_free_guidance=self.mixing)
        for t in schedule:
            rows = torch.cat([canvas] * (meaning.shape[0] // canvas.shape[0]))
            guess = self.unet(rows, t, encoder_hidden_states=meaning).sample
            if self.shaking:
                guess = self._apply_perturbed_attention_guidance(guess, self.mixing, self._strength, t)
            elif self.mixing:
                blank, worded = guess.chunk(2)
                guess = blank + self._strength * (worded - blank)
            canvas = self.clock.step(guess, t, canvas).prev_sample
        if self.shaking:
            self.unet.set_attn_processor(steady)

        # develop
        picture = self.lens.decode(canvas / self.lens.config.scaling_factor).sample
        return ImagePipelineOutput(images=picture)
