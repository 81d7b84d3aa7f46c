"""Build a pipeline's components by class, and its `TinySetup` (components, default inputs, case matrix)."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..equivalence import NoComponents
from ..tiny_parts import TinySetup
from .dims import DIMS, Dims
from .inputs import case_matrix, default_inputs
from .registry import Need, factory_for
from .resolve import Resolved, resolve


class MissingComponentClass(NoComponents):
    """No factory builds a component class the pipeline's constructor asks for (so there are no tiny components
    for it: `survey --verify` reports it as missing that class, not as failed)."""

    def __init__(self, pipeline: str, classes: tuple[str, ...]):
        self.pipeline = pipeline
        self.classes = classes
        label = "missing component class" if len(classes) == 1 else "missing component classes"
        super().__init__(
            f"{pipeline}: {label}: {', '.join(classes)}",
            fix="pass --components MODULE:FUNCTION returning the standard pipeline's constructor arguments",
        )


def dims_for(resolved: Resolved) -> Dims:
    return DIMS.but(**resolved.override.get("dims", {}))


def build_components(pipeline: type, seed: int | None = None) -> dict[str, Any]:
    """The keyword arguments of `pipeline(...)`: every component built by its class's factory, optional ones left
    out, scalars at their defaults. Raises `MissingComponentClass` naming the classes no factory builds."""
    resolved = resolve(pipeline)
    if resolved.missing:
        raise MissingComponentClass(pipeline.__name__, resolved.missing)
    dims = dims_for(resolved)
    base = dims.seed if seed is None else seed
    components: dict[str, Any] = {}
    for index, (name, cls) in enumerate(resolved.classes.items()):
        components[name] = None if cls is None else _build(resolved, dims, name, base + index)
    components.update(resolved.scalars)
    return components


def build_component(pipeline: type, name: str, seed: int) -> Any:
    """One constructor argument of `pipeline`, built as `build_components` builds it but from `seed`: a second,
    differently seeded copy of a component (the second net of a multi-ControlNet). Raises
    `MissingComponentClass` like `build_components`."""
    resolved = resolve(pipeline)
    if resolved.missing:
        raise MissingComponentClass(pipeline.__name__, resolved.missing)
    if resolved.classes.get(name) is None:
        raise LookupError(f"{pipeline.__name__} builds no component {name!r}")
    return _build(resolved, dims_for(resolved), name, seed)


def _build(resolved: Resolved, dims: Dims, name: str, seed: int) -> Any:
    cls = resolved.classes[name]
    config = resolved.config.get(name, {})
    widths = resolved.override.get("text_widths", {})
    need = Need(name, cls, dims, seed, resolved.pipeline, resolved.classes, config, widths)
    component = factory_for(cls)(need)
    dtype = resolved.override.get("dtypes", {}).get(name)
    if dtype:  # a pipeline that casts this component's inputs to a fixed dtype
        import torch

        component = component.to(getattr(torch, dtype))
    registered = resolved.override.get("register", {}).get(name)
    if registered:  # config entries a pipeline reads that the class does not define (data)
        component.register_to_config(**registered)
    return component


def missing_classes(pipeline: type) -> tuple[str, ...]:
    return resolve(pipeline).missing


def setup_by_class(pipeline: type, unserved: Mapping[str, Any] | None = None) -> TinySetup:
    """`verify`'s setup for any standard pipeline class: components from its constructor's type hints, inputs from
    its `__call__` signature, cases from its guidance arguments. Building the components raises
    `MissingComponentClass` when a component class has no factory (inputs and cases work regardless).

    `unserved`: standard arguments the generated package refuses (name -> the only value it accepts); cases
    setting one to another value are left out of the matrix (`notes` says which), default inputs setting one are
    left to the standard pipeline's default."""
    unserved = unserved or {}
    resolved = resolve(pipeline)
    dims = dims_for(resolved)
    parameters = inspect.signature(pipeline.__call__).parameters
    cases, notes = [], []
    for name, overrides in case_matrix(parameters, resolved.override, dims):
        refused = sorted(k for k, v in overrides.items() if k in unserved and v != unserved[k])
        if refused:
            notes.append(f"case {name} left out: the package does not serve {', '.join(refused)}")
        else:
            cases.append((name, overrides))

    def inputs() -> dict[str, Any]:
        # an argument the package refuses is left to the standard pipeline's default, on both sides
        made = default_inputs(pipeline, resolved, dims)
        return {k: v for k, v in made.items() if k not in unserved or v == unserved[k]}

    return ByClassSetup(
        components=lambda: build_components(pipeline),
        inputs=inputs,
        cases=tuple(cases),
        notes=tuple(notes),
        pipeline=pipeline,
    )


@dataclass(frozen=True)
class ByClassSetup(TinySetup):
    """A setup built by component class; `serving(unserved)` is the same setup for a generated package that
    refuses some standard arguments."""

    pipeline: type | None = None

    def serving(self, unserved: Mapping[str, Any]) -> ByClassSetup:
        return setup_by_class(self.pipeline, unserved)
