"""What a combine the guider runs verbatim reads besides the two predictions, and how its guider subclass gets it.

A combine copied into a guider subclass (`CustomCombine`) runs in `forward(pred_cond, pred_uncond)`: the names it
reads are bound there, each to a guider attribute set for the step, and per-call state (`self.guidance_scale`) is
read from the guider attribute of the same name:

    noise_pred, variance_pred = noise_pred.split(latents.shape[1], dim=1)     (bindings: noise_pred -> ...)
    ...
->  bindings += [("latents", "self.latents")], inputs = [("latents", "latents")]   (set on the guider per step)

A name guiders use themselves is set under another: `guidance_rescale` -> `self.step_guidance_rescale`.
"""

from __future__ import annotations

from collections.abc import Sequence

import libcst as cst
import libcst.matchers as m

from ...cst.dataflow import flow_of
from ...cst.tree_walk import findall
from ...frontend.class_facts import ClassFacts
from ...frontend.parse import SourceModule

# names a combine may read that are not the step's: modules and builtins
COMBINE_GLOBALS = frozenset({"torch", "float", "int", "range", "len", "min", "max", "abs", "list", "zip"})
# attributes a guider has itself: the combine's inputs must not overwrite them
GUIDER_ATTRIBUTES = frozenset(
    {"guidance_scale", "guidance_rescale", "use_original_formulation", "config", "_enabled", "_start", "_stop"}
    | {"_step", "_num_inference_steps", "_timestep", "_count_prepared", "_input_predictions", "_identifier_key"}
)


def combine_inputs(
    source: SourceModule,
    facts: ClassFacts,
    statements: Sequence[cst.BaseStatement],
    bindings: Sequence[tuple[str, str]],
    anchor: cst.CSTNode,
) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]:
    """(bindings, inputs): the given bindings plus one per other name the statements read, and the guider
    attributes to set per step as (attribute, the step's expression). Refuses what a guider cannot be given."""
    bindings = list(bindings)
    known = {n for n, _ in bindings} | COMBINE_GLOBALS | _module_names(source)
    inputs: list[tuple[str, str]] = []
    for name in flow_of(list(statements), bound=known).reads:
        if name == "self":
            continue  # per-call state, below
        # (a name guiders use themselves, `guidance_rescale`, is set on the guider under another)
        attribute = f"step_{name}" if name in GUIDER_ATTRIBUTES else name
        if attribute in GUIDER_ATTRIBUTES:
            raise source.refuse(anchor, f"the guidance combine reads `{name}`, a name guiders use themselves")
        bindings.append((name, f"self.{attribute}"))
        inputs.append((attribute, name))
    for attribute in findall(cst.Module(body=list(statements)), m.Attribute(value=m.Name("self"), attr=m.Name())):
        name = attribute.attr.value
        if name == "guidance_scale":
            continue  # the guider's own scale, configured from the same call argument
        local = facts.per_call.get(name)
        if local is None or name in GUIDER_ATTRIBUTES:
            raise source.refuse(attribute, f"the guidance combine reads `self.{name}`, which a guider cannot have")
        if (name, local) not in inputs:
            inputs.append((name, local))
    return tuple(bindings), tuple(inputs)


def _module_names(source: SourceModule) -> set[str]:
    """What the source module defines or imports at its top level (`rescale_noise_cfg`): a combine reading it
    reads the package's copy, not a guider attribute."""
    names: set[str] = set()
    for statement in source.tree.body:
        if isinstance(statement, (cst.FunctionDef, cst.ClassDef)):
            names.add(statement.name.value)
        elif isinstance(statement, cst.SimpleStatementLine):
            names.update(flow_of([statement]).writes)
    return names
