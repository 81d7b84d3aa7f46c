"""An IP-Adapter setup: `setup_by_class(pipeline)` with a tiny IP-Adapter loaded into the UNet, built in code.

    setup = ip_adapter_setup(StableDiffusionPipeline)
    setup.components()["unet"].encoder_hid_proj    # MultiIPAdapterImageProjection([ImageProjection])
    setup.components()["image_encoder"]            # the tiny CLIPVisionModelWithProjection
    setup.inputs()["ip_adapter_image"]             # a small PIL image

The adapter is what `pipe.load_ip_adapter(...)` gives a plain (not Plus, not FaceID) IP-Adapter, without files:
its state dict is drawn in memory from a seed, laid out as the checkpoint files are, and handed to the UNet's own
loader (`unet._load_ip_adapter_weights`), which converts it to `IPAdapterAttnProcessor`s on every cross-attention
layer and an `ImageProjection` as the UNet's `encoder_hid_proj`:

    {"image_proj": {"proj.weight": [4 x cross_attention_dim, projection_dim], "proj.bias": [4 x cross_attention_dim],
                    "norm.weight": [cross_attention_dim], "norm.bias": [cross_attention_dim]},
     "ip_adapter": {"1.to_k_ip.weight": [hidden, cross_attention_dim], "1.to_v_ip.weight": ..., "3.to_k_ip...": ...}}

(`ip_adapter` numbers the UNet's attention layers in `attn_processors` order, self-attention even and
cross-attention odd: the n-th cross-attention layer is `2n - 1`; `hidden` is the width of that layer's block.)
`projection_dim` is the tiny image encoder's (`CLIPVisionModelWithProjection.image_embeds`), and the image encoder
and its `CLIPImageProcessor` (the pipeline's optional `image_encoder` / `feature_extractor`, left out by
`setup_by_class`) come from their factories, seeded as `build_components` would seed them. The weights are drawn
at the scale of a `Linear`'s own initialisation (std 1 / sqrt(fan in)): the adapter changes the output visibly.

Its cases are `setup_by_class`'s, each with the default `ip_adapter_image`, plus `ip_adapter_image_embeds`: the
image given as precomputed embeddings (the negative ones, zeros, first where CFG is on, as the pipeline takes them).
`unserved` (arguments a generated package refuses) leaves the image out of the inputs, or that case out (`notes`).

Where a case has several prompts, the standard pipeline repeats the adapter's embeddings per image of a prompt, not
per prompt, and the attention processor folds the shorter batch into the longer one (`ip_key.view(batch_size, -1,
heads, head_dim)`): with 2 prompts each sample attends to 2 of the 4 image tokens. It runs; a package converted
from it has to do the same to agree.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..tiny_parts import TinySetup, tiny_image
from .build import build_components, dims_for, setup_by_class
from .registry import Need, factory_for
from .resolve import resolve

# a plain IP-Adapter projects one image embedding to this many extra cross-attention tokens (diffusers' loader
# recognises it by `proj.weight` and assumes 4)
IP_ADAPTER_TOKENS = 4
IMAGE_ENCODER_CLASS = "CLIPVisionModelWithProjection"
FEATURE_EXTRACTOR_CLASS = "CLIPImageProcessor"


def ip_adapter_image(size: int) -> Any:
    """The IP-Adapter's reference image: the test image turned upside down (a different image from the pipeline's
    own `image`, where it takes one)."""
    from PIL import Image

    return tiny_image(size).transpose(Image.Transpose.FLIP_TOP_BOTTOM)


def _adapter_seed(pipeline: type) -> int:
    """A seed no component of the pipeline is built from (they take the base seed + their position), past the one a
    second ControlNet takes (`controlnet._second_seed`)."""
    resolved = resolve(pipeline)
    return dims_for(resolved).seed + len(resolved.classes) + 1


def _cross_attention_widths(unet) -> list[int]:
    """The width of each cross-attention layer of `unet`, in the order its loader numbers them (as
    `_convert_ip_adapter_attn_to_diffusers` reads them from the config)."""
    channels = list(unet.config.block_out_channels)
    widths = []
    for name in unet.attn_processors:
        if name.endswith("attn1.processor") or "motion_modules" in name:
            continue
        if name.startswith("mid_block"):
            widths.append(channels[-1])
        elif name.startswith("up_blocks"):
            widths.append(list(reversed(channels))[int(name[len("up_blocks.")])])
        elif name.startswith("down_blocks"):
            widths.append(channels[int(name[len("down_blocks.")])])
        else:
            raise LookupError(f"no block width for attention layer {name}")
    return widths


def ip_adapter_state_dict(unet, image_embed_dim: int, seed: int) -> dict[str, dict[str, Any]]:
    """A plain IP-Adapter's state dict for `unet`, as `load_ip_adapter` reads it from a checkpoint (see the module
    docstring), drawn from `seed`."""
    import torch

    generator = torch.Generator().manual_seed(seed)

    def linear(out_features: int, in_features: int) -> torch.Tensor:
        return torch.randn(out_features, in_features, generator=generator) / math.sqrt(in_features)

    cross = unet.config.cross_attention_dim
    if not isinstance(cross, int):
        raise ValueError(f"an IP-Adapter needs a single cross-attention width, the UNet has {cross!r}")
    image_proj = {
        "proj.weight": linear(IP_ADAPTER_TOKENS * cross, image_embed_dim),
        "proj.bias": 0.1 * torch.randn(IP_ADAPTER_TOKENS * cross, generator=generator),
        "norm.weight": 1.0 + 0.1 * torch.randn(cross, generator=generator),
        "norm.bias": 0.1 * torch.randn(cross, generator=generator),
    }
    ip_adapter = {}
    for index, hidden in enumerate(_cross_attention_widths(unet)):
        key = 2 * index + 1
        ip_adapter[f"{key}.to_k_ip.weight"] = linear(hidden, cross)
        ip_adapter[f"{key}.to_v_ip.weight"] = linear(hidden, cross)
    return {"image_proj": image_proj, "ip_adapter": ip_adapter}


def _image_encoder_parts(pipeline: type) -> dict[str, Any]:
    """The pipeline's `image_encoder` and `feature_extractor`, built by their factories from the seeds
    `build_components` gives those positions."""
    from .registry import _class_named

    resolved = resolve(pipeline)
    dims = dims_for(resolved)
    positions = {name: index for index, name in enumerate(resolved.classes)}
    made = {}
    for name, class_name in (("image_encoder", IMAGE_ENCODER_CLASS), ("feature_extractor", FEATURE_EXTRACTOR_CLASS)):
        if name not in positions:
            raise LookupError(f"{pipeline.__name__} takes no {name}")
        cls = _class_named(class_name, pipeline)
        need = Need(name, cls, dims, dims.seed + positions[name], pipeline, resolved.classes, {}, {})
        made[name] = factory_for(cls)(need)
    return made


def load_tiny_ip_adapter(components: dict[str, Any], pipeline: type, scale: float = 1.0) -> dict[str, Any]:
    """`components` (the pipeline's constructor arguments) with a tiny IP-Adapter loaded, as `load_ip_adapter`
    leaves a pipeline: the adapter's weights in the UNet, the image encoder and feature extractor set where they are
    missing, every adapter layer at `scale` (`set_ip_adapter_scale`)."""
    from diffusers.models.attention_processor import (
        IPAdapterAttnProcessor,
        IPAdapterAttnProcessor2_0,
        IPAdapterXFormersAttnProcessor,
    )

    made = dict(components)
    missing = [name for name in ("image_encoder", "feature_extractor") if made.get(name) is None]
    if missing:
        parts = _image_encoder_parts(pipeline)
        made.update({name: parts[name] for name in missing})
    unet = made["unet"]
    state_dict = ip_adapter_state_dict(unet, made["image_encoder"].config.projection_dim, _adapter_seed(pipeline))
    unet._load_ip_adapter_weights([state_dict], low_cpu_mem_usage=False)
    processors = (IPAdapterAttnProcessor, IPAdapterAttnProcessor2_0, IPAdapterXFormersAttnProcessor)
    for processor in unet.attn_processors.values():
        if isinstance(processor, processors):
            processor.scale = [scale] * len(processor.scale)
    return made


def precomputed_embeds(pipeline: type, image: Any, cfg: bool) -> list[Any]:
    """`ip_adapter_image_embeds` for `image` as the pipeline computes them for one IP-Adapter: the tiny image
    encoder's `image_embeds` `[1, 1, projection_dim]`, preceded (with CFG) by zeros, the negative embedding."""
    import torch

    parts = _image_encoder_parts(pipeline)
    pixels = parts["feature_extractor"](image, return_tensors="pt").pixel_values
    with torch.no_grad():
        embeds = parts["image_encoder"](pixels).image_embeds[None]
    return [torch.cat([torch.zeros_like(embeds), embeds]) if cfg else embeds]


def ip_adapter_setup(pipeline: type, unserved: Mapping[str, Any] | None = None, scale: float = 1.0) -> TinySetup:
    """`setup_by_class(pipeline)` with a tiny IP-Adapter (see the module docstring). `unserved` as for
    `setup_by_class`; `scale` is the adapter's (`set_ip_adapter_scale`)."""
    unserved = dict(unserved or {})
    base = setup_by_class(pipeline, unserved)
    dims = dims_for(resolve(pipeline))
    size = dims.image_size
    # a package that refuses the adapter's image (or its embeddings) runs without it, as the standard side does
    serves_image = "ip_adapter_image" not in unserved
    serves_embeds = "ip_adapter_image_embeds" not in unserved
    notes = list(base.notes)

    def components() -> dict[str, Any]:
        return load_tiny_ip_adapter(build_components(pipeline), pipeline, scale)

    def inputs() -> dict[str, Any]:
        made = base.inputs()
        if serves_image:
            made["ip_adapter_image"] = ip_adapter_image(size)
        return made

    cases = list(base.cases)
    if serves_embeds:
        default_cfg = _default_guidance(pipeline) > 1.0
        embeds = precomputed_embeds(pipeline, ip_adapter_image(size), default_cfg)
        cases.append(("ip_adapter_image_embeds", {"ip_adapter_image": None, "ip_adapter_image_embeds": embeds}))
    else:
        notes.append("case ip_adapter_image_embeds left out: the package does not serve ip_adapter_image_embeds")
    if not serves_image:
        notes.append("default ip_adapter_image left out: the package does not serve ip_adapter_image")
    return IPAdapterSetup(
        components=components,
        inputs=inputs,
        cases=tuple(cases),
        notes=tuple(notes),
        pipeline=pipeline,
        scale=scale,
    )


def _default_guidance(pipeline: type) -> float:
    import inspect

    parameter = inspect.signature(pipeline.__call__).parameters.get("guidance_scale")
    return 1.0 if parameter is None or parameter.default is None else float(parameter.default)


@dataclass(frozen=True)
class IPAdapterSetup(TinySetup):
    """An IP-Adapter setup; `serving(unserved)` is the same setup for a package that refuses some arguments."""

    pipeline: type | None = None
    scale: float = 1.0

    def serving(self, unserved: Mapping[str, Any]) -> IPAdapterSetup:
        return ip_adapter_setup(self.pipeline, unserved, self.scale)


def stable_diffusion_ip_adapter() -> TinySetup:
    """For `verify --components modularize.testing.components.ip_adapter:stable_diffusion_ip_adapter`."""
    from diffusers import StableDiffusionPipeline

    return ip_adapter_setup(StableDiffusionPipeline)
