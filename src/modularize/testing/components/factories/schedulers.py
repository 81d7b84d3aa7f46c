"""Every scheduler class, built from one shared default config of its family (keys a class does not take are
left out); guiders too."""

from __future__ import annotations

import inspect

from ..registry import Need, factory

# DDPM-style schedulers: Stable Diffusion's betas
DIFFUSION_CONFIG = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "steps_offset": 1,
}
# flow-matching schedulers: their own defaults
FLOW_CONFIG: dict = {}


@factory("SchedulerMixin")
def scheduler(need: Need):
    family = FLOW_CONFIG if need.cls.__name__.startswith("FlowMatch") else DIFFUSION_CONFIG
    accepted = inspect.signature(need.cls.__init__).parameters
    return need.cls.from_config({k: v for k, v in {**family, **need.config}.items() if k in accepted})


@factory("AmusedScheduler")
def amused_scheduler(need: Need):
    """Unmasks image tokens: its mask token is the one the denoiser embeds past the codebook."""
    return need.cls(**{"mask_token_id": need.dims.mask_token_id, **need.config})


@factory("UnCLIPScheduler")
def unclip_scheduler(need: Need):
    """Its one beta schedule (`squaredcos_cap_v2`, its default). Scheduling a prior, it predicts the clean image
    embedding (`sample`) and clips it to a wide range, as the unCLIP / Kandinsky priors do."""
    prior = {"prediction_type": "sample", "clip_sample_range": 10.0} if need.has_class("PriorTransformer") else {}
    return need.cls(**{"num_train_timesteps": 1000, **prior, **need.config})


@factory("ClassifierFreeGuidance", "BaseGuidance", "AdaptiveProjectedMixGuidance")
def guider(need: Need):
    """A guider with its defaults (`BaseGuidance`, the abstract hint, gets classifier-free guidance)."""
    from diffusers import ClassifierFreeGuidance

    cls = ClassifierFreeGuidance if need.cls.__name__ == "BaseGuidance" else need.cls
    return cls(**need.config)
