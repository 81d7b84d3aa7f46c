"""A guider that runs more than two batches per step: what a guider subclass for three-way guidance builds on.

Why this exists: InstructPix2Pix-style pipelines guide over three batches (text and image, image only, neither)
and combine three predictions. diffusers' `ClassifierFreeGuidance` prepares two batches at most. A package whose
source splits its prediction into three or more parts emits a guider subclass of
`ManyBatchGuidance, ClassifierFreeGuidance` (this class is copied by name, with a
`# Copied from modularize.emit.runtime.many_batches.ManyBatchGuidance` line) whose `_input_predictions` name every
batch, conditional first, and whose `forward` holds the source's combine. The generated denoiser hands every
input as a tuple with one source per batch, in the same order.
"""

from diffusers.guiders import ClassifierFreeGuidance


class ManyBatchGuidance(ClassifierFreeGuidance):
    """`ClassifierFreeGuidance` with one batch per name in `_input_predictions` while guidance is on (the first
    alone while it is off, as `ClassifierFreeGuidance` runs its conditional batch alone)."""

    def _is_cfg_enabled(self) -> bool:
        # on exactly when the standard call guided (`enabled`, which `guider_for_standard_call` sets from the
        # source's own condition), whatever `guidance_scale` is: a combine of more parts may weigh it with others
        if not self._enabled:
            return False
        if self._num_inference_steps is None:
            return True
        return int(self._start * self._num_inference_steps) <= self._step < int(self._stop * self._num_inference_steps)

    @property
    def num_conditions(self) -> int:
        return len(self._input_predictions) if self._is_cfg_enabled() else 1

    def prepare_inputs(self, data):
        names = self._input_predictions[: self.num_conditions]
        return [self._prepare_batch(data, index, name) for index, name in enumerate(names)]

    def prepare_inputs_from_block_state(self, data, input_fields):
        names = self._input_predictions[: self.num_conditions]
        return [
            self._prepare_batch_from_block_state(input_fields, data, index, name) for index, name in enumerate(names)
        ]
