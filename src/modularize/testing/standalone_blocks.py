"""Each block of a generated package run alone: the inputs it declares are enough, and it computes what it computes
inside the whole pipeline, bitwise.

    for result in blocks_alone("modular_sdxl"):
        result.key, result.status, result.detail     # ("encode_input_prompt", "equal", "")

One full run of the generated pipeline (tiny components, the package's base inputs) is observed block by block: at
each top-level block's entry, the state values of the inputs it declares, the stateful components (schedulers,
guiders: everything that is not a model) and the global RNG; at its exit, the outputs it declares. Then each block
builds a fresh pipeline of the package's class (`block.init_pipeline()`), receives those components and is called with
exactly those inputs, as a user running one block would; its outputs must equal the full run's bitwise. A block
that reads an input it does not declare fails here, as it would for the user.
"""

from __future__ import annotations

import copy
import types
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .compare import difference
from .equivalence import Equivalence, silence_progress_bars


@dataclass(frozen=True)
class BlockAlone:
    key: str
    status: str  # "equal", "differs" or "failed"
    detail: str = ""


@dataclass
class _Entry:
    inputs: dict[str, Any]
    components: dict[str, Any]
    rng: Any
    outputs: dict[str, Any] = field(default_factory=dict)


def _copied(value: Any) -> Any:
    """A value as it is now, safe from later changes (a generator keeps its position)."""
    import torch

    if isinstance(value, torch.Generator):
        fresh = torch.Generator(value.device)
        fresh.set_state(value.get_state())
        return fresh
    if isinstance(value, list):
        return [_copied(item) for item in value]
    if isinstance(value, torch.nn.Module):
        return value  # models are not changed by a run; copying them would only cost memory
    return copy.deepcopy(value)


def _comparable(value: Any) -> Any:
    """Generators compared by their position (their state), functions a block defines by their code, configured
    objects by their configuration, diffusers' other objects by what they hold; inside lists and dicts too."""
    import torch

    if isinstance(value, torch.Generator):
        return value.get_state()
    if isinstance(value, types.FunctionType):
        return value.__code__
    if hasattr(value, "config") and hasattr(value, "register_to_config"):
        return (type(value).__name__, dict(value.config))  # a guider or scheduler handed on: its configuration
    if type(value).__module__.startswith("diffusers.") and hasattr(value, "__dict__"):
        return (type(value).__name__, _comparable(vars(value)))  # a cache or record of diffusers': what it holds
    if isinstance(value, dict):
        return {key: _comparable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        return type(value)(_comparable(item) for item in value)
    return value


@contextmanager
def _observed(pipe, top) -> Iterator[dict[str, _Entry]]:
    """{block key: what each block of `top` received and produced} for the runs inside the `with`."""
    import torch
    from diffusers.modular_pipelines.modular_pipeline import ModularPipelineBlocks

    keys = {type(block): key for key, block in top.sub_blocks.items()}
    taken: dict[str, _Entry] = {}
    get_state, set_state = ModularPipelineBlocks.get_block_state, ModularPipelineBlocks.set_block_state

    def entering(block, state):
        key = keys.get(type(block))
        if key is not None and key not in taken:
            inputs = {p.name: _copied(state.get(p.name)) for p in block.inputs if p.name and p.name in state.values}
            names = [*pipe._component_specs, *pipe._config_specs]
            components = {name: _copied(getattr(pipe, name, None)) for name in names}
            taken[key] = _Entry(inputs, components, torch.get_rng_state())
        return get_state(block, state)

    def leaving(block, state, block_state):
        key = keys.get(type(block))
        if key is not None:
            outputs = {p.name: getattr(block_state, p.name, None) for p in block.intermediate_outputs if p.name}
            taken[key].outputs = {name: _copied(value) for name, value in outputs.items()}
        return set_state(block, state, block_state)

    ModularPipelineBlocks.get_block_state, ModularPipelineBlocks.set_block_state = entering, leaving
    try:
        yield taken
    finally:
        ModularPipelineBlocks.get_block_state, ModularPipelineBlocks.set_block_state = get_state, set_state


def _restore_states(pipe, given: dict[str, Any]) -> None:
    """Components as they were at the block's entry, also where registering them rebuilt them: a standard
    constructor that rebuilds its scheduler from its config (DDIM's) gives a fresh one, without the timesteps the
    earlier blocks set on it."""
    import torch

    for name, value in given.items():
        registered = getattr(pipe, name, None)
        if registered is value or registered is None or isinstance(value, torch.nn.Module):
            continue
        if type(registered) is type(value) and hasattr(value, "__dict__"):
            registered.__dict__.update(copy.deepcopy(value.__dict__))


def _top_blocks(equivalence: Equivalence, pipe):
    """The blocks run alone: the package's top-level blocks, or a family's workflow's."""
    if equivalence.workflow is not None:
        return pipe.workflow_blocks(equivalence.workflow)
    return pipe._blocks


def _observed_run(equivalence: Equivalence, case: dict[str, Any] | None):
    """(pipeline, call inputs, entries, final state) of one full run: of the given case, or of the first of the
    package's cases a full run accepts (the default inputs of a pipeline that needs a negative prompt under CFG, say,
    are rejected by the standard pipeline too)."""
    cases = [case] if case is not None else [{}, *(c.overrides for c in equivalence.matrix)]
    for overrides in cases:
        components, inputs = equivalence.case_inputs(dict(overrides))
        pipe = equivalence.pipeline(components, exact=False)
        try:
            kwargs = equivalence.translated(pipe, inputs)
            with _observed(pipe, _top_blocks(equivalence, pipe)) as entries:
                state = pipe(**kwargs, **equivalence._random_inputs())
            return pipe, inputs, entries, state
        except Exception:
            if overrides is cases[-1]:
                raise
    raise AssertionError("unreachable: the last case raises")


def _run_alone(block, entry: _Entry):
    """The block on a fresh pipeline of its package's class, with the components and inputs it had at its entry."""
    import torch

    alone = block.init_pipeline()
    expected = {*alone._component_specs, *alone._config_specs}
    given = {name: _copied(value) for name, value in entry.components.items() if name in expected}
    alone.update_components(**given)
    _restore_states(alone, given)
    silence_progress_bars(alone)
    torch.set_rng_state(entry.rng)
    return alone(**{name: _copied(value) for name, value in entry.inputs.items()})


def blocks_alone(
    package: str | Path | Equivalence, case: dict[str, Any] | None = None, workflow: str | None = None
) -> list[BlockAlone]:
    """Run every top-level block of the package alone (see the module docstring); one result per block. `package`
    is the package directory (built-in tiny components) or an `Equivalence` set up with the user's components; a
    family's package: the blocks of `workflow`."""
    equivalence = package if isinstance(package, Equivalence) else Equivalence(package, workflow=workflow)
    pipe, _, entries, _ = _observed_run(equivalence, case)
    results = []
    for key, block in _top_blocks(equivalence, pipe).sub_blocks.items():
        entry = entries.get(key)
        if entry is None:
            results.append(BlockAlone(key, "failed", "the full run did not reach this block"))
            continue
        try:
            state = _run_alone(block, entry)
        except Exception as error:  # the verdict for this block: it cannot run on what it declares
            results.append(BlockAlone(key, "failed", f"{type(error).__name__}: {error}"[:300]))
            continue
        differing = []
        for name, expected in entry.outputs.items():
            found = difference(_comparable(expected), _comparable(state.get(name)))
            if not found.bitwise:
                differing.append(f"{name}: {found.detail or f'max abs diff {found.max_abs_diff:.3g}'}")
        results.append(BlockAlone(key, "differs" if differing else "equal", "; ".join(differing)))
    return results


@dataclass(frozen=True)
class FedBack:
    block: str  # the text-encoder block run alone
    fed: tuple[str, ...]  # its outputs passed back as call arguments (`prompt_embeds`, ...)
    dropped: tuple[str, ...]  # the text inputs they replace (`prompt`, ...)
    differences: dict[str, Any]  # per standard output, against the run from text

    @property
    def bitwise(self) -> bool:
        return all(diff.bitwise for diff in self.differences.values())


def embeddings_fed_back(package_dir: str | Path, case: dict[str, Any] | None = None, scale: float = 1.0) -> FedBack:
    """Embeddings computed by the text-encoder block alone and passed back to the whole pipeline in place of the
    text give the outputs of the run from the text, bitwise.

    The text-encoder block is the first block of `encoders.py` with an output the standard call also takes as an
    argument (`prompt_embeds`); the text it replaces is its string-valued inputs (`prompt`, `negative_prompt`).
    `scale` multiplies the floating-point embeddings fed back (anything but 1 must change the outputs).
    """
    equivalence = Equivalence(package_dir)
    pipe, inputs, entries, state = _observed_run(equivalence, case)
    arguments = set(pipe.block_arguments) | set(pipe.guider_arguments)
    for key, block in pipe._blocks.sub_blocks.items():
        entry = entries.get(key)
        produced = [name for name in (entry.outputs if entry else {}) if name in arguments]
        if type(block).__module__.rpartition(".")[2] == "encoders" and produced:
            break
    else:
        raise ValueError("no block of encoders.py outputs what the standard call takes as an argument")
    alone = _run_alone(block, entry)
    texts = tuple(
        name for name, value in entry.inputs.items() if name in inputs and _is_text(value) and name not in produced
    )
    fed = {name: _scaled(alone.get(name), scale) for name in produced}
    again = {name: value for name, value in inputs.items() if name not in texts}
    rerun = equivalence.pipeline(equivalence.case_inputs(dict(case or {}))[0], exact=False)
    final = rerun(**equivalence.translated(rerun, {**again, **fed}), **equivalence._random_inputs())
    outputs = type(pipe).standard_outputs.values()
    differences = {name: difference(state.get(name), final.get(name)) for name in outputs}
    return FedBack(key, tuple(fed), texts, differences)


def _scaled(value: Any, scale: float) -> Any:
    if scale != 1.0 and hasattr(value, "is_floating_point") and value.is_floating_point():
        return value * scale
    return value


def _is_text(value: Any) -> bool:
    return isinstance(value, str) or (
        isinstance(value, list) and bool(value) and all(isinstance(v, str) for v in value)
    )
