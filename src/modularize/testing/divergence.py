"""Where two runs part: the first block whose outputs differ between the standard and the generated pipeline.

A final image that differs says little about why. Each generated block comes from a span of source lines of the
standard `__call__` (the plan records it) and names what it outputs, so both runs can be observed block by block:

- the standard `__call__` is traced (its own frame only, nothing it calls): when execution first leaves a block's
  lines, the locals that block outputs are snapshotted;
- the generated pipeline's top-level blocks are observed as they write their outputs to the pipeline state.

The first block (in source order) with an output that differs is the answer:

    first diverging block: prepare_latent_variables (`latents`: max abs diff 0.0312)

Values whose shapes differ are not compared: the standard pipeline holds CFG-doubled tensors (`torch.cat([neg,
pos])`) where the generated one keeps the halves for the guider. Blocks split out of a helper (`vae_encoder`) have
no lines in `__call__` and are skipped too.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from .compare import as_array, difference

_MISSING = object()


@dataclass(frozen=True)
class BlockSpan:
    key: str  # the block's name in the generated blocks dict
    lines: tuple[int, int]  # first and last source line of the standard `__call__` it came from
    names: tuple[tuple[str, str], ...]  # (name in the pipeline state, the standard pipeline's local)


def block_spans(standard_cls: type) -> list[BlockSpan]:
    """The plan of the standard class's own source file, as line spans and output names per block."""
    from ..convert import plan_for
    from ..frontend.source_file import module_reader, read_source
    from ..options import ConvertOptions
    from ..planning.plan import BlockPlan

    source = read_source(inspect.getsourcefile(standard_cls))
    options = ConvertOptions(source.path, source.label, source.module_name, standard_cls.__name__)
    plan = plan_for(source.text, options, module_reader(source.path))
    spans = []
    for block in plan.blocks:
        outputs = block.outputs if isinstance(block, BlockPlan) else [o for step in block.steps for o in step.outputs]
        names = tuple((o.name, o.local) for o in outputs)
        spans.append(BlockSpan(block.key, block.lines, names))
    return spans


def snapshot(value: Any) -> Any:
    """A copy that later in-place updates cannot change (tensors are cloned)."""
    if hasattr(value, "detach") and hasattr(value, "clone"):
        return value.detach().clone()
    if isinstance(value, (list, tuple)):
        return type(value)(snapshot(v) for v in value) if not hasattr(value, "_fields") else value
    if isinstance(value, dict):
        return {k: snapshot(v) for k, v in value.items()}
    return value


@contextmanager
def standard_snapshots(standard_cls: type, spans: Sequence[BlockSpan]) -> Iterator[dict[str, dict[str, Any]]]:
    """Trace the standard `__call__`: {block key: {local: value when the block's lines were left}}."""
    code = inspect.unwrap(standard_cls.__call__).__code__
    taken: dict[str, dict[str, Any]] = {}
    entered: set[str] = set()

    def in_call(frame, event, arg):
        line = frame.f_lineno
        for span in spans:
            if span.key in taken:
                continue
            first, last = span.lines
            if event == "line" and first <= line <= last:
                entered.add(span.key)
            elif span.key in entered and (event == "return" or line > last):
                taken[span.key] = {local: snapshot(frame.f_locals.get(local, _MISSING)) for _, local in span.names}
        return in_call

    def on_call(frame, event, arg):
        return in_call if frame.f_code is code else None

    previous = sys.gettrace()
    sys.settrace(on_call)
    try:
        yield taken
    finally:
        sys.settrace(previous)


@contextmanager
def modular_snapshots(blocks) -> Iterator[dict[str, dict[str, Any]]]:
    """Observe the generated pipeline (built on an instance of `blocks`' class): {block key: {state name: value the
    block wrote}}. Blocks are known by class: each top-level block of a generated package has its own."""
    from diffusers.modular_pipelines.modular_pipeline import ModularPipelineBlocks

    keys = {type(block): key for key, block in blocks.sub_blocks.items()}
    taken: dict[str, dict[str, Any]] = {}
    original = ModularPipelineBlocks.set_block_state

    def recording(block, state, block_state):
        key = keys.get(type(block))
        if key is not None:
            taken[key] = {
                p.name: snapshot(getattr(block_state, p.name, _MISSING)) for p in block.intermediate_outputs if p.name
            }
        return original(block, state, block_state)

    ModularPipelineBlocks.set_block_state = recording
    try:
        yield taken
    finally:
        ModularPipelineBlocks.set_block_state = original


def first_divergence(
    spans: Sequence[BlockSpan],
    standard: dict[str, dict[str, Any]],
    modular: dict[str, dict[str, Any]],
    exact: bool,
    atol: float,
) -> str:
    """`block (`name`: max abs diff x)` for the first block whose comparable outputs differ, or why none is named."""
    for span in spans:
        if span.key not in standard or span.key not in modular:
            continue
        names = dict(span.names)
        for name, value in modular[span.key].items():
            expected = standard[span.key].get(names.get(name, name), _MISSING)
            if expected is _MISSING or value is _MISSING:
                continue
            found = _differs(expected, value, exact, atol)
            if found:
                return f"{span.key} (`{name}`: {found})"
    return "no block output differs where both pipelines can be compared"


def _differs(expected: Any, actual: Any, exact: bool, atol: float) -> str:
    """How two values of one output differ ("" when they agree or cannot be compared)."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key in [k for k in expected if k in actual]:
            found = _differs(expected[key], actual[key], exact, atol)
            if found:
                return f"[{key!r}] {found}"
        return ""
    if _is_array(expected) and _is_array(actual):
        a, b = as_array(expected), as_array(actual)
        if a.shape != b.shape:
            return ""  # a CFG-doubled tensor on the standard side: not comparable
        diff = difference(a, b)
        return (
            ""
            if diff.bitwise or (not exact and diff.max_abs_diff <= atol)
            else f"max abs diff {diff.max_abs_diff:.3g}"
        )
    if isinstance(expected, (list, tuple)) and isinstance(actual, (list, tuple)) and len(expected) == len(actual):
        for index, (a, b) in enumerate(zip(expected, actual, strict=True)):
            found = _differs(a, b, exact, atol)
            if found:
                return f"[{index}] {found}"
        return ""
    if isinstance(expected, (bool, int, float, str)) and isinstance(actual, (bool, int, float, str)):
        return "" if expected == actual else f"{expected!r} vs {actual!r}"
    return ""  # other objects (generators, schedulers, devices): not compared


def _is_array(value: Any) -> bool:
    import numpy as np

    return hasattr(value, "detach") or isinstance(value, np.ndarray) or hasattr(value, "getbands")
