"""A multi-ControlNet setup: the pipeline's ControlNet and a second, differently seeded one, wrapped in the
pipeline family's multi-ControlNet class, each with its own control image and conditioning scale.

    setup = multi_controlnet_setup(StableDiffusionControlNetPipeline)
    setup.components()["controlnet"]            # MultiControlNetModel([net_a, net_b])
    setup.inputs()["image"]                     # [the test image, its mirror]
    setup.inputs()["controlnet_conditioning_scale"]    # [1.0, 0.5]

QwenImage's multi class runs a single net (a ControlNet-Union) on every control image and refuses two nets
(diffusers 0.42): its setup wraps the pipeline's ControlNet alone, with the two control images and two scales.

Its cases are `setup_by_class`'s: a case that gives the ControlNet one control image (or batch) gives the second
net the mirrored one; a single scale, guess mode and the guidance window apply to both nets, as the pipeline does.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..tiny_parts import TinySetup
from .build import build_component, build_components, setup_by_class
from .inputs import control_parameter
from .resolve import resolve

# the single ControlNet class -> the class that runs several and sums their outputs
MULTI_CONTROLNET = {
    "ControlNetModel": "MultiControlNetModel",
    "ControlNetUnionModel": "MultiControlNetUnionModel",
    "SD3ControlNetModel": "SD3MultiControlNetModel",
    "FluxControlNetModel": "FluxMultiControlNetModel",
    "QwenImageControlNetModel": "QwenImageMultiControlNetModel",
    "HunyuanDiT2DControlNetModel": "HunyuanDiT2DMultiControlNetModel",
}
# the multi classes that run one net on each control image (and raise for more nets): the pipeline's net alone
ONE_NET_FOR_ALL = ("QwenImageMultiControlNetModel",)
# the second net's conditioning scale (the first keeps 1.0)
SECOND_SCALE = 0.5
# the multi classes whose pipelines apply a single conditioning scale to every net; SD3's and Flux's want one each
ONE_SCALE_FOR_ALL = ("MultiControlNetModel", "MultiControlNetUnionModel")


def mirrored(image: Any) -> Any:
    """The second net's control image: `image` flipped left to right (a PIL image, or a `[..., H, W]` tensor)."""
    if hasattr(image, "transpose") and hasattr(image, "size") and not callable(image.size):
        from PIL import Image

        return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return image.flip(-1)


def multi_class(pipeline: type) -> type:
    """The multi-ControlNet class for the ControlNet class `pipeline` is built with, where the pipeline's
    constructor takes it (QwenImage's inpainting pipeline takes a single ControlNet only)."""
    from diffusers.models import controlnets  # (diffusers does not export every multi class at the top)

    from .resolve import hinted_classes

    single = resolve(pipeline).classes.get("controlnet")
    if single is None or single.__name__ not in MULTI_CONTROLNET:
        raise LookupError(f"{pipeline.__name__} takes no ControlNet this module can pair")
    multi = getattr(controlnets, MULTI_CONTROLNET[single.__name__])
    if multi not in hinted_classes(pipeline, "controlnet"):
        raise LookupError(f"{pipeline.__name__} takes no {multi.__name__}")
    return multi


def _second_seed(pipeline: type) -> int:
    """A seed no component of the pipeline is built from (they take the base seed + their position)."""
    from .build import dims_for

    resolved = resolve(pipeline)
    return dims_for(resolved).seed + len(resolved.classes)


def _for_two_nets(values: Mapping[str, Any], control: str, multi: type) -> dict[str, Any]:
    """Call arguments for one ControlNet -> for two: a control image (or batch) becomes [it, its mirror]; a
    `control_mode` (ControlNet-Union's control type) is given per net, and so is a single conditioning scale where
    the pipeline does not apply it to every net itself."""
    made = dict(values)
    if control in made and made[control] is not None:
        made[control] = [made[control], mirrored(made[control])]
    if isinstance(made.get("control_mode"), int):
        made["control_mode"] = [made["control_mode"]] * 2
    scale = made.get("controlnet_conditioning_scale")
    if isinstance(scale, float) and multi.__name__ not in ONE_SCALE_FOR_ALL:
        made["controlnet_conditioning_scale"] = [scale, scale]
    return made


def multi_controlnet_setup(pipeline: type, unserved: Mapping[str, Any] | None = None) -> TinySetup:
    """`setup_by_class(pipeline)` with two ControlNets (see the module docstring). `unserved` as for
    `setup_by_class`."""
    single = setup_by_class(pipeline, unserved)
    parameters = inspect.signature(pipeline.__call__).parameters
    control = control_parameter(parameters)
    if control is None:
        raise LookupError(f"{pipeline.__name__} takes no control image")
    multi = multi_class(pipeline)

    def components() -> dict[str, Any]:
        made = build_components(pipeline)
        if multi.__name__ in ONE_NET_FOR_ALL:
            made["controlnet"] = multi([made["controlnet"]])
        else:
            second = build_component(pipeline, "controlnet", _second_seed(pipeline))
            made["controlnet"] = multi([made["controlnet"], second])
        return made

    def inputs() -> dict[str, Any]:
        made = _for_two_nets(single.inputs(), control, multi)
        made["controlnet_conditioning_scale"] = [1.0, SECOND_SCALE]
        return made

    cases = tuple((name, _for_two_nets(values, control, multi)) for name, values in single.cases)
    return MultiControlNetSetup(
        components=components, inputs=inputs, cases=cases, notes=single.notes, pipeline=pipeline
    )


@dataclass(frozen=True)
class MultiControlNetSetup(TinySetup):
    """A multi-ControlNet setup; `serving(unserved)` is the same setup for a package that refuses some arguments."""

    pipeline: type | None = None

    def serving(self, unserved: Mapping[str, Any]) -> MultiControlNetSetup:
        return multi_controlnet_setup(self.pipeline, unserved)


def stable_diffusion_multi_controlnet() -> TinySetup:
    """For `verify --components modularize.testing.components.controlnet:stable_diffusion_multi_controlnet`."""
    from diffusers import StableDiffusionControlNetPipeline

    return multi_controlnet_setup(StableDiffusionControlNetPipeline)
