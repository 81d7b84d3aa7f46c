"""The perturbed-attention guidance of diffusers' PAG pipelines (`PAGMixin`), as a guider.

Why this exists: a PAG pipeline (`StableDiffusionPAGPipeline`, ...) runs a third batch, the conditional one again,
through a denoiser whose chosen self-attention layers attend to nothing but themselves (identity attention scores),
and adds `pag_scale * (cond - perturbed)` to the CFG combine. diffusers' `PerturbedAttentionGuidance` perturbs the
same way (its hook makes `scaled_dot_product_attention` return the values), but it is not the pipelines' PAG:

- it selects layers by transformer-block index; the pipelines select self-attention modules by a regex over their
  names (`pag_applied_layers="mid"`), as `PAGMixin._set_pag_attn_processor` does;
- it perturbs only within `perturbed_guidance_start < step < stop`; the pipelines perturb every step;
- with CFG off its second batch takes the unconditional inputs and is not perturbed; the pipelines run the
  conditional inputs perturbed;
- it has no adaptive scale (`pag_adaptive_scale`: the scale falls with the timestep).

`StandardPerturbedAttentionGuidance` is `PerturbedAttentionGuidance` with the pipelines' behaviour, so a package
converted from a PAG pipeline computes what it computes. Every generated package of a PAG pipeline carries it
(copied by name, with a `# Copied from modularize.emit.runtime.perturbed_attention.<name>` line).
"""

import inspect
import re

import torch
from diffusers.configuration_utils import register_to_config
from diffusers.guiders import BaseGuidance, PerturbedAttentionGuidance
from diffusers.guiders.guider_utils import GuiderOutput, rescale_noise_cfg
from diffusers.hooks import HookRegistry
from diffusers.hooks.layer_skip import AttentionProcessorSkipHook
from diffusers.models import attention_processor
from diffusers.models.attention_processor import (
    Attention,
    PAGCFGIdentitySelfAttnProcessor2_0,
    PAGIdentitySelfAttnProcessor2_0,
)

_PERTURBED_ATTENTION_HOOK = "StandardPerturbedAttentionGuidance"


def perturbed_attention_modules(denoiser, layers):
    """The self-attention modules of `denoiser` a PAG pipeline perturbs for `layers` (`pag_applied_layers`).

    A layer id selects every self-attention module whose name it matches as a regex (`"mid"`, `"blocks.1"`, which
    `blocks.10.attn1` matches too), except a name ending in the same number as the id, exactly as
    `PAGMixin._set_pag_attn_processor` selects them. Each id must select at least one module, as in the pipelines.
    """
    if isinstance(layers, str):
        layers = [layers]
    found = []
    for layer in layers:
        selected = [
            module
            for name, module in denoiser.named_modules()
            if isinstance(module, Attention)
            and not module.is_cross_attention
            and re.search(layer, name) is not None
            and not _same_final_number(layer, name)
        ]
        if not selected:
            raise ValueError(f"Cannot find PAG layer to set attention processor for: {layer}")
        found += [module for module in selected if all(module is not other for other in found)]
    return found


def _same_final_number(layer, name):
    """`blocks.1` against `transformer_blocks.1`: both end in the same number (the pipelines skip such a name)."""
    layer_end, name_end = layer.split(".")[-1], name.split(".")[-1]
    return layer_end.isnumeric() and name_end.isnumeric() and layer_end == name_end


class OneShareOfPerturbedAttention:
    """An attention processor for one guider batch of a PAG layer, made of a PAG pipeline's processor without CFG
    (which attends normally on the first half of its batch and perturbed on the second): it runs that processor on
    the batch twice (`[x, x]`) and keeps the half the batch stands for, perturbed or not. Each half is one batch, as
    in the pipeline's own call; the pipeline's processor, not a hook, decides how it perturbs (joint attention,
    linear attention, rotary embeddings)."""

    def __init__(self, processor, perturbed):
        self.processor = processor
        self.perturbed = perturbed

    def __call__(
        self,
        attn,
        hidden_states,
        encoder_hidden_states=None,
        attention_mask=None,
        temb=None,
        image_rotary_emb=None,
    ):
        size = hidden_states.shape[0]

        def twice(value):
            batched = isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape[0] == size
            return torch.cat([value, value]) if batched else value

        given = {
            "encoder_hidden_states": encoder_hidden_states,
            "attention_mask": attention_mask,
            "temb": temb,
            "image_rotary_emb": image_rotary_emb,
        }
        accepted = inspect.signature(self.processor.__call__).parameters
        kwargs = {name: twice(value) for name, value in given.items() if name in accepted}
        output = self.processor(attn, twice(hidden_states), **kwargs)
        share = slice(size, None) if self.perturbed else slice(0, size)
        if isinstance(output, tuple):
            return tuple(None if item is None else item[share] for item in output)
        return output[share]


def guider_runs_unconditional(guider):
    """Whether `guider` runs an unconditional batch: the standard pipelines' CFG flag. A perturbed-attention guider
    may run two batches without one (conditional and perturbed), so the number of batches does not tell."""
    is_cfg_enabled = getattr(guider, "_is_cfg_enabled", None)
    return is_cfg_enabled() if is_cfg_enabled is not None else guider.num_conditions > 1


class StandardPerturbedAttentionGuidance(PerturbedAttentionGuidance):
    """`PerturbedAttentionGuidance` as diffusers' PAG pipelines compute it (`PAGMixin`).

    Batches, in order: conditional, unconditional (with CFG), perturbed (the conditional inputs again, with the
    self-attention modules `perturbed_layers` selects attending to themselves only). The combine is the pipelines':
    `uncond + guidance_scale * (cond - uncond) + scale * (cond - perturbed)`, without CFG
    `cond + scale * (cond - perturbed)`, where `scale` is `perturbed_guidance_scale`, lowered by
    `perturbed_guidance_adaptive_scale * (1000 - t)` (not below 0) when that is positive.
    """

    _input_predictions = ["pred_cond", "pred_uncond", "pred_cond_skip"]

    @register_to_config
    def __init__(
        self,
        guidance_scale: float = 7.5,
        perturbed_guidance_scale: float = 3.0,
        perturbed_guidance_adaptive_scale: float = 0.0,
        perturbed_layers: str | list[str] = "mid",
        perturbed_attention_processors: list[str] | None = None,
        guidance_rescale: float = 0.0,
        start: float = 0.0,
        stop: float = 1.0,
        enabled: bool = True,
    ):
        # (not `PerturbedAttentionGuidance.__init__`: its layers are block indices, these are the pipelines' regexes)
        BaseGuidance.__init__(self, start, stop, enabled)
        self.guidance_scale = guidance_scale
        self.skip_layer_guidance_scale = perturbed_guidance_scale
        self.perturbed_guidance_adaptive_scale = perturbed_guidance_adaptive_scale
        self.perturbed_layers = [perturbed_layers] if isinstance(perturbed_layers, str) else list(perturbed_layers)
        # the PAG processors of the pipeline (with CFG, without), by class name; None: the mixin's identity ones,
        # whose perturbation diffusers' attention-score hook computes
        self.perturbed_attention_processors = perturbed_attention_processors
        self.guidance_rescale = guidance_rescale
        self.use_original_formulation = False
        self.skip_layer_config = []
        self._skip_layer_hook_names = [_PERTURBED_ATTENTION_HOOK]
        self._hooked = False
        self._merged = None  # the batches' order when they run as one call (`prepare_merged_call`)
        self._processors = []  # (module, its own processor) while a merged call runs with the PAG processors

    def _is_slg_enabled(self):
        return self._enabled and self.skip_layer_guidance_scale > 0 and len(self.perturbed_layers) > 0

    def _batches(self):
        """(index into each input's (conditional, unconditional) pair, prediction name) per batch, in order."""
        batches = [(0, "pred_cond")]
        if self._is_cfg_enabled():
            batches.append((1, "pred_uncond"))
        if self._is_slg_enabled():
            batches.append((0, "pred_cond_skip"))
        return batches

    def prepare_inputs(self, data):
        return [self._prepare_batch(data, index, name) for index, name in self._batches()]

    def prepare_inputs_from_block_state(self, data, input_fields):
        return [
            self._prepare_batch_from_block_state(input_fields, data, index, name) for index, name in self._batches()
        ]

    @property
    def is_conditional(self):
        return not (self._is_cfg_enabled() and self._count_prepared == 2)

    def set_state(self, step, num_inference_steps, timestep):
        super().set_state(step, num_inference_steps, timestep)
        self._merged = None

    def prepare_merged_call(self, identifiers):
        """This step's batches run as one denoiser call, in the order of `identifiers`: the perturbed batch, last,
        is perturbed by the PAG pipelines' own processors, as in their one call (`merge_guider_batches`). None: they
        run one by one again (a merged call whose output did not split into shares)."""
        if identifiers is not None and "pred_cond_skip" in identifiers and identifiers[-1] != "pred_cond_skip":
            raise ValueError(f"the perturbed batch must run last in a merged call, not in {identifiers}")
        self._merged = None if identifiers is None else tuple(identifiers)
        if identifiers is None:
            self._count_prepared = 0  # (the merged call's preparation counted as one)

    def _processor_classes(self):
        """(with CFG, without) PAG processor classes."""
        if self.perturbed_attention_processors is None:
            return PAGCFGIdentitySelfAttnProcessor2_0, PAGIdentitySelfAttnProcessor2_0
        return tuple(getattr(attention_processor, name) for name in self.perturbed_attention_processors)

    def _use_processor(self, denoiser, processor):
        for module in perturbed_attention_modules(denoiser, self.perturbed_layers):
            self._processors.append((module, module.processor))
            module.processor = processor

    def prepare_models(self, denoiser):
        self._count_prepared += 1
        with_cfg, without_cfg = self._processor_classes()
        if self._merged is not None:
            if "pred_cond_skip" in self._merged:
                # the first shares attend normally, together; the last one perturbed
                self._use_processor(denoiser, with_cfg() if len(self._merged) == 3 else without_cfg())
            return
        perturbed = self._is_slg_enabled() and self._count_prepared == len(self._batches())
        if self._is_slg_enabled() and self.perturbed_attention_processors is not None:
            # every batch through the pipeline's processor, as in its one call: its share, perturbed or not
            self._use_processor(denoiser, OneShareOfPerturbedAttention(without_cfg(), perturbed))
            return
        if perturbed:
            for module in perturbed_attention_modules(denoiser, self.perturbed_layers):
                hook = AttentionProcessorSkipHook(None, skip_attention_scores=True)
                HookRegistry.check_if_exists_or_initialize(module).register_hook(hook, _PERTURBED_ATTENTION_HOOK)
            self._hooked = True

    def cleanup_models(self, denoiser):
        for module, processor in self._processors:
            module.processor = processor
        self._processors = []
        if self._hooked:
            HookRegistry.check_if_exists_or_initialize(denoiser).remove_hook(_PERTURBED_ATTENTION_HOOK, recurse=True)
            self._hooked = False

    def _perturbed_scale(self):
        scale = self.skip_layer_guidance_scale
        if self.perturbed_guidance_adaptive_scale > 0 and scale > 0:
            scale = scale - self.perturbed_guidance_adaptive_scale * (1000 - self._timestep)
            if scale < 0:
                scale = 0
        return scale

    def forward(self, pred_cond, pred_uncond=None, pred_cond_skip=None):
        if self._is_slg_enabled():
            scale = self._perturbed_scale()
            if self._is_cfg_enabled():
                pred = (
                    pred_uncond
                    + self.guidance_scale * (pred_cond - pred_uncond)
                    + scale * (pred_cond - pred_cond_skip)
                )
            else:
                pred = pred_cond + scale * (pred_cond - pred_cond_skip)
        elif self._is_cfg_enabled():
            pred = pred_uncond + self.guidance_scale * (pred_cond - pred_uncond)
        else:
            pred = pred_cond
        if self.guidance_rescale > 0.0:
            pred = rescale_noise_cfg(pred, pred_cond, self.guidance_rescale)
        return GuiderOutput(pred=pred, pred_cond=pred_cond, pred_uncond=pred_uncond)
