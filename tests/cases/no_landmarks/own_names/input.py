"""Golden case: batched CFG with none of diffusers' landmarks.

Every local, helper, property, argument and component has a name of its own, the stages carry comments that
are not numbered stage labels, and the loop is `for t in <schedule>:` without `enumerate`. What makes it CFG is
the data flow: paired conditionings concatenated `[avoid, wanted]`, the latents doubled, the prediction chunked
and recombined as `u + s * (c - u)`.
"""

import torch
from diffusers import DiffusionPipeline
from diffusers.models import AutoencoderKL, UNet2DConditionModel
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from diffusers.schedulers import DDIMScheduler
from transformers import CLIPTextModel, CLIPTokenizer


class SketchBook(DiffusionPipeline):
    def __init__(
        self,
        painter: UNet2DConditionModel,
        clock: DDIMScheduler,
        reader: CLIPTextModel,
        splitter: CLIPTokenizer,
        lens: AutoencoderKL,
    ):
        super().__init__()
        self.register_modules(painter=painter, clock=clock, reader=reader, splitter=splitter, lens=lens)

    @property
    def mixing(self):
        return self._strength > 1.0

    def _read(self, words, where):
        pieces = self.splitter(words, padding="max_length", truncation=True, return_tensors="pt")
        return self.reader(pieces.input_ids.to(where))[0]

    @torch.no_grad()
    def __call__(self, wish: str, avoid: str = "", strength: float = 5.0, ticks: int = 4, luck=None):
        # remember the knobs
        self._strength = strength
        where = self._execution_device

        # words to vectors
        meaning = self._read([wish], where)
        if self.mixing:
            unwanted = self._read([avoid], where)
            meaning = torch.cat([unwanted, meaning])

        # the schedule
        self.clock.set_timesteps(ticks, device=where)
        schedule = self.clock.timesteps

        # a blank canvas of noise
        canvas = torch.randn((1, self.painter.config.in_channels, 8, 8), generator=luck).to(where)

        # paint
        for t in schedule:
            pair = torch.cat([canvas] * 2) if self.mixing else canvas
            guess = self.painter(pair, t, encoder_hidden_states=meaning).sample
            if self.mixing:
                blank, worded = guess.chunk(2)
                guess = blank + self._strength * (worded - blank)
            canvas = self.clock.step(guess, t, canvas).prev_sample

        # develop
        picture = self.lens.decode(canvas / self.lens.config.scaling_factor).sample
        return ImagePipelineOutput(images=picture)
