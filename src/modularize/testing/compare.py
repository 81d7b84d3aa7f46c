"""Compare pipeline outputs: numpy arrays, torch tensors, lists of PIL images, flags or None are compared as
numbers (max abs difference, bitwise); anything else (strings, lists of prompts, other objects) exactly, nested
structures (lists, tuples, dicts) element by element."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_NUMERIC_KINDS = "biufc"  # numpy dtype kinds: bool, signed, unsigned, float, complex
_NOT_NUMERIC = object()


@dataclass(frozen=True)
class Difference:
    max_abs_diff: float  # inf where values that are not numbers differ (or shapes, lengths, keys)
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


def numeric_array(value: Any):
    """`as_array(value)` when the value is numbers (tensors, arrays, images, flags; None stays None), else a
    sentinel: strings, objects and ragged or mixed lists are compared exactly instead."""
    if isinstance(value, (str, bytes, Mapping)):
        return _NOT_NUMERIC
    try:
        array = as_array(value)
    except (TypeError, ValueError, RuntimeError):
        return _NOT_NUMERIC
    if array is not None and array.dtype.kind not in _NUMERIC_KINDS:
        return _NOT_NUMERIC
    return array


def is_numeric(value: Any) -> bool:
    array = numeric_array(value)
    return array is not _NOT_NUMERIC and array is not None


def difference(expected: Any, actual: Any) -> Difference:
    a, b = numeric_array(expected), numeric_array(actual)
    if a is not _NOT_NUMERIC and b is not _NOT_NUMERIC:
        return _numeric_difference(a, b)
    return _exact_difference(expected, actual)


def _numeric_difference(a, b) -> Difference:
    import numpy as np

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
    a, b = np.atleast_1d(a.astype(np.float64)), np.atleast_1d(b.astype(np.float64))
    with np.errstate(invalid="ignore"):
        diff = np.abs(a - b)
    diff[(a == b) | (np.isnan(a) & np.isnan(b))] = 0.0  # equal infinities, NaN where both have NaN
    diff[np.isnan(diff)] = np.inf  # NaN on one side only (or opposite infinities): as far apart as can be
    return Difference(float(diff.max()), bitwise)


def _exact_difference(expected: Any, actual: Any) -> Difference:
    """Values that are not numbers: equal or not; containers element by element (numbers inside them still get
    their max abs difference)."""
    import numpy as np

    if isinstance(expected, np.ndarray) and isinstance(actual, np.ndarray):  # of strings or objects
        if expected.shape != actual.shape:
            return Difference(float("inf"), False, f"shapes differ: {expected.shape} vs {actual.shape}")
        return _exact_difference(expected.tolist(), actual.tolist())
    if isinstance(expected, Mapping) and isinstance(actual, Mapping):
        if set(expected) != set(actual):
            keys = f"{sorted(map(str, expected))} vs {sorted(map(str, actual))}"
            return Difference(float("inf"), False, f"keys differ: {keys}")
        return _combined((f"[{key!r}]", difference(expected[key], actual[key])) for key in expected)
    sequences = (list, tuple)
    if isinstance(expected, sequences) and isinstance(actual, sequences):
        if len(expected) != len(actual):
            return Difference(float("inf"), False, f"lengths differ: {len(expected)} vs {len(actual)}")
        pairs = zip(expected, actual, strict=True)
        return _combined((f"[{index}]", difference(a, b)) for index, (a, b) in enumerate(pairs))
    try:
        equal = bool(expected == actual)
    except Exception:  # e.g. a tensor against a string: not equal
        equal = False
    if equal:
        return Difference(0.0, True)
    return Difference(float("inf"), False, f"{_short(expected)} vs {_short(actual)}")


def _combined(parts) -> Difference:
    """The worst of the parts (NaN wins), bitwise when all are, the first detail prefixed with where it is."""
    parts = list(parts)
    values = [part.max_abs_diff for _, part in parts]
    worst = float("nan") if any(math.isnan(v) for v in values) else max(values, default=0.0)
    detail = next((f"{where} {part.detail}" for where, part in parts if part.detail), "")
    return Difference(worst, all(part.bitwise for _, part in parts), detail)


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
