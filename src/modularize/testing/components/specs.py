"""Call inputs described as data (for overrides): made when the inputs are, seeded, the same every time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Noise:
    """A standard-normal tensor of `shape`, from its own seed."""

    shape: tuple[int, ...]
    seed: int = 0

    def make(self) -> Any:
        import torch

        return torch.randn(self.shape, generator=torch.Generator("cpu").manual_seed(self.seed))


@dataclass(frozen=True)
class Mask:
    """The deterministic inpainting mask (`tiny_mask`) at `size` pixels."""

    size: int

    def make(self) -> Any:
        from ..tiny_parts import tiny_mask

        return tiny_mask(self.size)


@dataclass(frozen=True)
class Image:
    """The deterministic test image (`tiny_image`) at `size` pixels."""

    size: int

    def make(self) -> Any:
        from ..tiny_parts import tiny_image

        return tiny_image(self.size)


def materialize(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return type(value)(materialize(v) for v in value)
    return value.make() if isinstance(value, (Noise, Mask, Image)) else value
