"""Exact mode: make a reference model run a CFG batch as two half-batch calls.

A standard pipeline with batched CFG calls its denoiser once on `[uncond, cond]` (batch 2n); a guider calls it
once per batch (batch n each). On CPU that alone changes the last bits. Wrapping the reference so every doubled
batch is split into halves, each run on its own, makes both sides do the same arithmetic: if the outputs are then
bitwise equal, the remaining plain-mode difference is batching and nothing else.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def _batch_of(args: tuple, kwargs: dict) -> int | None:
    import torch

    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.Tensor) and value.ndim > 0:
            return value.shape[0]
    return None


def _folded_frames(args: tuple, kwargs: dict) -> frozenset[int]:
    """The frame count a video denoiser's other inputs may fold into their batch: with a 5-D sample (batch,
    channels, frames, height, width), AnimateDiff repeats its prompt embeddings per frame, `(batch * frames, tokens,
    dim)`. Other models' inputs are not read so: HunyuanDiT's rotary embeddings have a length that may be a multiple
    of the batch by chance, and so may an input of Allegro's (whose sample has 4 channels: only the frames count)."""
    import torch

    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.Tensor) and value.ndim > 0:
            return frozenset({value.shape[2]}) - {1} if value.ndim == 5 else frozenset()
    return frozenset()


def _half(
    value: Any, batch: int, part: slice, layers: bool | dict[int, Any] = False, frames: frozenset[int] = frozenset()
) -> Any:
    """The `part` of a batched value. `layers`: True when every list holds one batched tensor per item, or the
    lists that do by id (what an auxiliary model returned), the others being judged by their shapes. A tensor
    with `frames` rows per sample (`_folded_frames`), or any whole number of them when an auxiliary model returned
    it (AnimateDiff SparseCtrl's residuals), has them sample-major: each sample's rows."""
    import torch

    if isinstance(value, torch.Tensor):
        # a fresh tensor per half, as a guider batch would be (views keep the parent's alignment)
        if value.ndim > 0 and value.shape[0] == batch:
            return value[part].clone()
        rows = value.shape[0] // batch if value.ndim > 0 and value.shape[0] % batch == 0 else 0
        if rows in frames or (rows and isinstance(layers, dict) and id(value) in layers):
            return value[part.start * rows : part.stop * rows].clone()
        return value
    if isinstance(value, dict):
        return {key: _half(item, batch, part, layers, frames) for key, item in value.items()}
    per_item = layers is True or (isinstance(layers, dict) and id(value) in layers)
    if isinstance(value, list) and not per_item and len(value) == batch and not _batched_items(value, batch):
        return value[part]  # a batch given as a list of samples (Z-Image)
    if isinstance(value, (list, tuple)):
        return type(value)(_half(item, batch, part, layers, frames) for item in value)
    return value


def _batched_items(values: list, batch: int) -> bool:
    """A list of batched tensors (a ControlNet's residuals, one per layer), not a list of samples (Z-Image's latents):
    every item has the batch first, and the items are not as many as the batch with one shape (what samples are,
    whose first dimension may happen to equal the batch)."""
    import torch

    if not all(isinstance(item, torch.Tensor) and item.ndim > 0 and item.shape[0] == batch for item in values):
        return False
    return len(values) != batch or len({tuple(item.shape) for item in values}) > 1


def _joined(parts: list[Any], size: int, layers: bool = False) -> Any:
    """The outputs of the calls on each part of a batch (`size` samples each), as one call would return them."""
    import torch

    first = parts[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(parts)
    if isinstance(first, tuple):
        return tuple(_joined(list(items), size, layers) for items in zip(*parts, strict=True))
    if isinstance(first, list) and (layers or _batched_items(first, size)):
        # one batched tensor per layer
        return [_joined(list(items), size, layers) for items in zip(*parts, strict=True)]
    if isinstance(first, list):
        return [item for part in parts for item in part]  # a batch returned as a list of samples
    if isinstance(first, dict):
        joined = {key: _joined([part[key] for part in parts], size, layers) for key in first}
        return type(first)(**joined) if hasattr(first, "__dataclass_fields__") else joined
    return first


def _output_values(value: Any) -> Iterator[Any]:
    """The lists, tuples and tensors in a model's output, nested ones included."""
    import torch

    if isinstance(value, (list, tuple)):
        yield value
        for item in value:
            yield from _output_values(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _output_values(item)
    elif isinstance(value, torch.Tensor):
        yield value


@contextmanager
def _perturbed_attention_parts(module: Any, part: int, parts: int, processors: tuple | None) -> Iterator[None]:
    """While one part of a split batch runs, the PAG layers of `module` (those a PAG pipeline gave one of its
    `processors`, the PAG processor classes with and without CFG) attend as that part's guider batch does:
    perturbed on the last part, normally on the others, each computed by the pipeline's processor without CFG on
    the part twice (`OneShareOfPerturbedAttention`: a batch of one part each, as a guider's batch is)."""
    from modularize.emit.runtime.perturbed_attention import OneShareOfPerturbedAttention

    if processors is None:
        yield
        return
    layers = [layer for layer in module.modules() if isinstance(getattr(layer, "processor", None), processors)]
    kept = [layer.processor for layer in layers]
    for layer in layers:
        layer.processor = OneShareOfPerturbedAttention(processors[1](), perturbed=part == parts - 1)
    try:
        yield
    finally:
        for layer, processor in zip(layers, kept, strict=True):
            layer.processor = processor


@contextmanager
def half_batch_calls(
    module: Any,
    enabled: bool = True,
    doubled: int | None = None,
    layers: bool | dict[int, Any] = False,
    layers_out: dict[int, Any] | None = None,
    parts: int = 2,
    perturbed_processors: tuple | None = None,
) -> Iterator[None]:
    """Within the block, `module(x)` with an even batch runs as `module(x[:n/2])` and `module(x[n/2:])`.

    With `parts` (the number of guider batches: 3 for CFG with perturbed-attention guidance), a batch of a
    multiple of `parts` runs as that many calls; a PAG pipeline's perturbed layers (the layers with one of its
    `perturbed_processors`) attend perturbed on the last (`_perturbed_attention_parts`).

    With `doubled`, only a batch of a multiple of that size is split: an auxiliary model (a ControlNet) runs on the
    doubled batch (with a video's frames folded in, AnimateDiff's: a multiple of it), or on the conditional half
    alone (guess mode), whose size may be even too. With `layers` True, the lists
    it takes and returns hold one batched tensor per item (per layer, per net), never one sample per item, and the
    lists it returns are added to `layers_out` by id when given (the denoiser, given them as `layers`, then splits
    them per layer)."""
    if not enabled:
        yield
        return
    original = module.forward

    def forward(*args, **kwargs):
        output = split(*args, **kwargs)
        if layers_out is not None:
            # (the lists themselves are kept: an id freed and reused could name another list)
            layers_out.update((id(produced), produced) for produced in _output_values(output))
        return output

    def split(*args, **kwargs):
        batch = _batch_of(args, kwargs)
        if batch is None or batch % parts or (doubled is not None and batch % doubled):
            return original(*args, **kwargs)
        size = batch // parts
        frames = _folded_frames(args, kwargs)
        outputs = []
        for part in range(parts):
            span = slice(part * size, (part + 1) * size)
            with _perturbed_attention_parts(module, part, parts, perturbed_processors):
                halves = _half(args, batch, span, layers, frames), _half(kwargs, batch, span, layers, frames)
                outputs.append(original(*halves[0], **halves[1]))
        return _joined(outputs, size, layers is True)

    module.forward = forward
    try:
        yield
    finally:
        del module.forward
