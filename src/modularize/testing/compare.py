"""Compare pipeline outputs: numpy arrays, torch tensors, lists of PIL images, flags or None."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Difference:
    max_abs_diff: float
    bitwise: bool
    detail: str = ""


def as_array(value: Any):
    """An output as a numpy array (None stays None); PIL images are stacked, tensors moved to the CPU."""
    import numpy as np

    if value is None:
        return None
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, (list, tuple)):
        if not value:
            return np.asarray([])
        if all(item is None for item in value):
            return None
        return np.stack([as_array(item) for item in value])
    return np.asarray(value)


def difference(expected: Any, actual: Any) -> Difference:
    import numpy as np

    a, b = as_array(expected), as_array(actual)
    if a is None or b is None:
        same = a is None and b is None
        return Difference(0.0 if same else float("inf"), same, "" if same else "one output is None")
    if a.shape != b.shape:
        return Difference(float("inf"), False, f"shapes differ: {a.shape} vs {b.shape}")
    bitwise = a.dtype == b.dtype and a.tobytes() == b.tobytes()
    if a.size == 0:
        return Difference(0.0, bitwise)
    if a.dtype == bool or b.dtype == bool:
        return Difference(0.0 if bitwise else 1.0, bitwise)
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    return Difference(float(np.nanmax(diff)) if not np.isnan(diff).all() else float("nan"), bitwise)
