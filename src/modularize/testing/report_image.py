"""One PNG for a person to look at: per case, standard | modular | difference (scaled to its own maximum)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

_TILE = 96
_LABEL = 14


def _first_image(array):
    """The first image of a batch as HWC floats in [0, 1] (latents: first three channels, min-max scaled)."""
    import numpy as np

    image = np.asarray(array, dtype=np.float64)
    while image.ndim > 3:
        image = image[0]
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[-1] not in (1, 3, 4) and image.shape[0] in (1, 3, 4, 16):
        image = np.moveaxis(image, 0, -1)  # channels first (latents, tensors)
    image = image[..., :3]
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    if image.shape[-1] == 2:
        image = np.concatenate([image, image[..., :1]], axis=-1)
    low, high = float(image.min()), float(image.max())
    if low < 0.0 or high > 1.0:
        image = (image - low) / (high - low) if high > low else np.zeros_like(image)
    return image


def _tile(image):
    import numpy as np
    from PIL import Image

    pixels = (np.clip(image, 0.0, 1.0) * 255).round().astype(np.uint8)
    return Image.fromarray(pixels).resize((_TILE, _TILE), Image.NEAREST)


def save_comparison(images: Sequence[tuple[str, Any, Any]], path: str | Path) -> Path | None:
    """Writes the grid; returns None when no case produced images to show."""
    import numpy as np
    from PIL import Image, ImageDraw

    from .compare import as_array

    rows = []
    for title, expected, actual in images:
        a, b = as_array(expected), as_array(actual)
        if a is None or b is None or a.shape != b.shape or a.dtype == bool:
            continue
        first_a, first_b = _first_image(a), _first_image(b)
        raw = np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))
        while raw.ndim > 3:
            raw = raw[0]
        diff = _first_image(raw) if raw.max() > 0 else np.zeros_like(first_a)
        if raw.max() > 0:
            diff = diff / max(float(diff.max()), 1e-12)
        rows.append((f"{title}  max|diff|={float(raw.max()):.3g}", [first_a, first_b, diff]))
    if not rows:
        return None
    width = 3 * _TILE + 4 * 4
    canvas = Image.new("RGB", (max(width, 360), len(rows) * (_TILE + _LABEL + 6) + _LABEL + 4), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 2), "standard | modular | difference (scaled)", fill="black")
    y = _LABEL + 4
    for title, tiles in rows:
        draw.text((4, y), title, fill="black")
        for column, tile in enumerate(tiles):
            canvas.paste(_tile(tile), (4 + column * (_TILE + 4), y + _LABEL))
        y += _TILE + _LABEL + 6
    path = Path(path)
    canvas.save(path)
    return path
