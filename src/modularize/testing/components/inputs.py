"""Default call inputs from a pipeline's `__call__` signature, and the case matrix from its guidance arguments.

Only arguments the signature has are passed: a prompt, 2 steps (3 with a `strength`), a small size the VAE and
the denoiser's patches divide, decoded outputs (`"np"`), and images / masks / videos sized to match where the
signature asks for them; image embeddings (a prior's output, `dims.clip_projection` wide) where the signature
requires them. The matrix turns CFG off and on, adds a negative prompt, 2 prompts x 2 outputs per prompt, true CFG
where there is a `true_cfg_scale`, latent outputs and a second strength. A case with N prompts gets N of every
input the pipeline takes one of per prompt: required image embeddings, and the inputs an override lists under
`one_per_prompt`. For a ControlNet, the matrix adds guess mode (alone and with 2 prompts x 2), a second
conditioning scale, control that stops half-way, and one control image per prompt.
"""

from __future__ import annotations

import inspect
from typing import Any

from ..tiny_parts import tiny_image, tiny_mask
from .dims import Dims
from .factories.vaes import VIDEO_COMPRESSION
from .resolve import Resolved
from .specs import Image, Mask, Noise, materialize

PROMPT = "a photo of a cat"
TWO_PROMPTS = ["a photo of a cat", "the dog and the moon"]
TWO_NEGATIVES = ["blurry", "low quality"]
SECOND_CONTROL_SCALE = 0.5
PER_PROMPT = ("num_images_per_prompt", "num_videos_per_prompt", "num_waveforms_per_prompt")
# image embeddings (a prior's, for its decoder) and the negative ones, each from its own seed
EMBEDDINGS = {"image_embeds": 0, "negative_image_embeds": 1}
SHAP_E_FRAME_SIZE = 8  # a multiple of 4: the tiny renderer's ray batches divide its rays (`factories.priors`)


def one_per_prompt(name: str, count: int, dims: Dims) -> Any:
    """`count` of input `name`, one per prompt, described as data (made when the inputs are)."""
    if name in EMBEDDINGS:
        return Noise((count, dims.clip_projection), seed=EMBEDDINGS[name])
    if name == "mask_image":
        return [Mask(dims.image_size)] * count
    if name == "image":
        return [Image(dims.image_size)] * count
    raise ValueError(f"no per-prompt value for input {name!r}")


def required_embeddings(parameters) -> tuple[str, ...]:
    """The image embeddings the signature requires (an optional one stands in for an image it would encode)."""
    return tuple(
        name for name in EMBEDDINGS if name in parameters and parameters[name].default is inspect.Parameter.empty
    )


def is_video(parameters, resolved: Resolved) -> bool:
    vae = resolved.classes.get("vae")
    return (
        "num_frames" in parameters
        or "num_videos_per_prompt" in parameters
        or (vae is not None and vae.__name__ in VIDEO_COMPRESSION)
    )


def num_frames(resolved: Resolved) -> int:
    """Two latent frames after the first: `2 x temporal compression + 1` frames."""
    vae = resolved.classes.get("vae")
    _, temporal = VIDEO_COMPRESSION.get(vae.__name__ if vae else "", (1, 1))
    return 2 * temporal + 1


def default_inputs(pipeline: type, resolved: Resolved, dims: Dims) -> dict[str, Any]:
    parameters = inspect.signature(pipeline.__call__).parameters
    video = is_video(parameters, resolved)
    size = dims.video_size if video else dims.image_size
    frames = num_frames(resolved)
    candidates: dict[str, Any] = {
        "prompt": PROMPT,
        "num_inference_steps": 3 if "strength" in parameters else 2,
        "strength": 0.7,
        "height": size,
        "width": size,
        "num_frames": frames,
        "frames": frames,
        "output_type": "np",
        "max_sequence_length": dims.max_sequence_length,
        "use_resolution_binning": False,
        "max_area": size * size,  # pipelines that resize to an area (Flux Kontext) keep the tiny size
        "_auto_resize": False,
        "clean_caption": False,  # (needs beautifulsoup4 and ftfy)
        "image": tiny_image(size),
        "example_image": tiny_image(size),  # (Paint by Example's reference image)
        "frame_size": SHAP_E_FRAME_SIZE,  # (Shap-E's rendered views)
        "mask_image": tiny_mask(size),
        "control_image": tiny_image(size),
        "control_mask": tiny_mask(size),  # (SD3 inpainting ControlNet: the region to repaint)
        "video": [tiny_image(size)] * frames,
        "control_video": [tiny_image(size)] * frames,
        "conditioning_frames": [tiny_image(size)] * frames,  # (a video ControlNet's control image per frame)
    }
    inputs = {name: value for name, value in candidates.items() if name in parameters}
    inputs.update({name: materialize(one_per_prompt(name, 1, dims)) for name in required_embeddings(parameters)})
    extra = {name: materialize(value) for name, value in resolved.override.get("inputs", {}).items()}
    return {**inputs, **extra}


def control_parameter(parameters) -> str | None:
    """The argument a ControlNet pipeline takes its control image as: `control_image` where the pipeline has one
    (SD3, Flux, and the image-to-image / inpainting pipelines, whose `image` is the image to start from), else
    `image` (the SD / SDXL ControlNet pipelines); None without a ControlNet or for video control
    (`conditioning_frames`)."""
    if "controlnet_conditioning_scale" not in parameters or "conditioning_frames" in parameters:
        return None
    return next((name for name in ("control_image", "image") if name in parameters), None)


def control_batch(size: int) -> Any:
    """Two different control images as one batch (`[2, 3, size, size]` in [0, 1]): the test image and its mirror.
    A tensor, not a list: a list of images is one per ControlNet (multi-ControlNet) or per control type
    (ControlNet-Union), a batch is one per prompt everywhere."""
    import numpy as np
    import torch

    image = np.asarray(tiny_image(size), dtype=np.float32) / 255.0
    pair = np.stack([image, np.ascontiguousarray(image[:, ::-1])])
    return torch.from_numpy(pair).permute(0, 3, 1, 2).contiguous()


def mask_batch(size: int) -> Any:
    """Two different masks as one batch (`[2, 1, size, size]`, 0 keep / 1 repaint): the test mask and its mirror."""
    import numpy as np
    import torch

    mask = (np.asarray(tiny_mask(size), dtype=np.float32) > 127).astype(np.float32)
    pair = np.stack([mask, np.ascontiguousarray(mask[:, ::-1])])
    return torch.from_numpy(pair)[:, None]


def case_matrix(parameters, override: dict[str, Any], dims: Dims) -> tuple[tuple[str, dict[str, Any]], ...]:
    has = parameters.__contains__
    per_prompt = next((name for name in PER_PROMPT if has(name)), None)
    two: dict[str, Any] | None = None
    cases: list[tuple[str, dict[str, Any]]] = [("default", {})]
    if has("guidance_scale"):
        cases.append(("cfg_off", {"guidance_scale": 1.0}))
    if has("negative_prompt"):
        cases.append(("negative_prompt", {"negative_prompt": "blurry"}))
    if has("true_cfg_scale"):
        cases.append(("true_cfg", {"negative_prompt": "blurry", "true_cfg_scale": 4.0}))
    if has("guidance_rescale"):
        cases.append(("rescale", {"guidance_rescale": 0.7}))
    if has("pag_scale"):  # perturbed-attention guidance: off, and a scale falling with the timestep
        cases.append(("pag_off", {"pag_scale": 0.0}))
        if has("pag_adaptive_scale"):
            cases.append(("pag_adaptive", {"pag_scale": 5.0, "pag_adaptive_scale": 0.004}))
    if has("prompt") and per_prompt:
        two = {"prompt": TWO_PROMPTS, per_prompt: 2}
        if has("negative_prompt"):
            two["negative_prompt"] = TWO_NEGATIVES
        if has("true_cfg_scale"):
            two["true_cfg_scale"] = 3.0
        cases.append(("two_prompts_x2", two))
    elif has("batch_size"):
        cases.append(("two_samples", {"batch_size": 2}))
    if has("strength"):
        cases.append(("strength_1.0", {"strength": 1.0}))
    cases.extend(_controlnet_cases(parameters, two, dims.image_size))
    if has("output_type"):
        latent = {"output_type": "latent", **({"guidance_scale": 1.0} if has("guidance_scale") else {})}
        if has("prompt"):
            latent["prompt"] = TWO_PROMPTS
        cases.append(("cfg_off_latent" if has("guidance_scale") else "latent", latent))
    dropped = set(override.get("drop_cases", ()))
    kept = [case for case in cases if case[0] not in dropped]
    # a T2I-Adapter's image conditions each prompt: one per prompt
    adapter_images = ("image",) if has("adapter_conditioning_scale") and has("image") else ()
    per_prompt_inputs = (*required_embeddings(parameters), *adapter_images, *override.get("one_per_prompt", ()))
    return tuple(
        (name, {k: materialize(v) for k, v in _per_prompt(values, per_prompt_inputs, dims).items()})
        for name, values in (*kept, *override.get("cases", ()))
    )


def _per_prompt(values: dict[str, Any], names: tuple[str, ...], dims: Dims) -> dict[str, Any]:
    """A case with a list of prompts gets as many of each input in `names` (unless it sets that input itself)."""
    prompts = values.get("prompt")
    if not isinstance(prompts, list):
        return values
    return {**{name: one_per_prompt(name, len(prompts), dims) for name in names}, **values}


def _controlnet_cases(parameters, two: dict[str, Any] | None, image_size: int) -> list[tuple[str, dict[str, Any]]]:
    """A ControlNet's own arguments: guess mode (the ControlNet sees the conditional half of the CFG batch only,
    its outputs scaled up block by block; CFG stays on at the pipeline's default scale), a second conditioning
    scale, control that stops half-way through the steps, and one control image per prompt (repeated per image of
    its prompt, where the default single image is repeated to the whole batch)."""
    has = parameters.__contains__
    cases: list[tuple[str, dict[str, Any]]] = []
    if has("guess_mode"):
        cases.append(("guess_mode", {"guess_mode": True}))
        if two is not None:
            cases.append(("guess_mode_two_prompts_x2", {**two, "guess_mode": True}))
    if has("controlnet_conditioning_scale"):
        # a scale other than the pipeline's default (SD inpainting's is 0.5 already)
        default = getattr(parameters["controlnet_conditioning_scale"], "default", None)
        scale = 1.0 if default == SECOND_CONTROL_SCALE else SECOND_CONTROL_SCALE
        cases.append((f"control_scale_{scale}", {"controlnet_conditioning_scale": scale}))
    if has("adapter_conditioning_scale"):
        cases.append(("adapter_scale_0.5", {"adapter_conditioning_scale": 0.5}))
    if has("control_guidance_end"):
        cases.append(("control_end_0.5", {"control_guidance_end": 0.5}))
    control = control_parameter(parameters)
    if control is not None and two is not None:
        per_prompt = {**two, control: control_batch(image_size)}
        if has("control_mask"):  # (the mask is repeated as its control image is: one per prompt too)
            per_prompt["control_mask"] = mask_batch(image_size)
        cases.append(("two_prompts_two_controls", per_prompt))
    return cases
