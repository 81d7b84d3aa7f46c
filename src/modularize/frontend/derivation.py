"""How `__init__` computes a derived attribute: the statements before it that compute what it reads, and the
constructor parameters (not components) it starts from.

    def __init__(self, vae, transformer, select_layers=None, patch_size: int = 2):
        ...
        if select_layers is None:
            select_layers = (2, 5, 8)
        self.select_layers = tuple(select_layers)
        self.patch_size = patch_size

->  Derivation("select_layers", statements=(<the `if`>,), expression=tuple(select_layers),
               parameters=(Parameter("select_layers", ..., "None"),))
    Derivation("patch_size", statements=(), expression=patch_size, parameters=(Parameter("patch_size", "int", "2"),))

A ModularPipeline is built without constructor arguments: the planner reads such parameters from the pipeline's
config, with the constructor's default when the config does not hold them.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import libcst as cst
import libcst.matchers as m

from ..cst.dataflow import flow_of, names_read
from ..cst.tree_walk import findall
from .class_facts import InitFacts, Parameter, self_attribute_assigned


@dataclass(frozen=True)
class Derivation:
    name: str
    statements: tuple[cst.BaseStatement, ...]  # `__init__` statements it needs, in source order
    expression: cst.BaseExpression  # the assigned value, as in the source
    parameters: tuple[Parameter, ...]  # constructor parameters (not components) it reads, in signature order


def derivation_of(init: InitFacts, name: str) -> Derivation:
    """Walks `__init__` back from the assignment of `self.<name>`: a statement kept with the components' side
    effects is needed when it writes a name that the assignment, or a statement needed already, reads. A write
    under a condition does not end the search (the name may still come from further up)."""
    expression = init.derived[name]
    body = list(init.node.body.body) if init.node is not None else []
    position = next(
        (i for i, s in enumerate(body) if self_attribute_assigned(s) == name and s.body[0].value is expression),
        len(body),
    )
    components = set(init.components)
    pending = {n for n in names_read(expression) if n not in components}
    needed: list[cst.BaseStatement] = []
    for statement in reversed(body[:position]):
        if not any(statement is s for s in init.adaptation):
            continue
        if pending.isdisjoint(flow_of([statement]).writes):
            continue
        needed.append(statement)
        pending |= {n for n in names_read(statement) if n not in components}
    read = set(pending)
    for statement in needed:
        read |= set(names_read(statement))
    parameters = tuple(p for p in init.parameters if p.name in read and p.name not in components and not p.star)
    return Derivation(name, tuple(reversed(needed)), expression, parameters)


def component_inputs(init: InitFacts) -> dict[str, tuple[str, ...]]:
    """Components `__init__` rebuilds from other components, and the components each is rebuilt from:

        if isinstance(unet, UNet2DConditionModel):
            unet = UNetControlNetXSModel.from_unet(unet, controlnet)     ->  {"unet": ("controlnet",)}

    A block that uses the rebuilt component needs the ones it is built from too, or a pipeline assembled from its
    blocks cannot be handed them.
    """
    components = set(init.components)
    found: dict[str, dict[str, None]] = {}
    for statement in init.adaptation:
        flow = flow_of([statement])
        for rebuilt in (n for n in flow.writes if n in components):
            for source in (n for n in names_read(statement) if n in components and n != rebuilt):
                found.setdefault(rebuilt, {})[source] = None
    return {name: tuple(sources) for name, sources in found.items()}


def components_read(statement: cst.CSTNode, components: Collection[str]) -> tuple[str, ...]:
    """The components a statement of `__init__` reads, as `self.<name>` or as the parameter `<name>`, in order."""
    attributes = (a.attr.value for a in findall(statement, m.Attribute(value=m.Name("self"), attr=m.Name())))
    return tuple(dict.fromkeys(n for n in (*attributes, *names_read(statement)) if n in components))


def adapted_attributes(init: InitFacts) -> dict[str, tuple[str, ...]]:
    """Attributes `__init__` sets in statements of its own (not one `self.<name> = <expr>`), and the components
    those statements read:

        if self.vae is not None and hasattr(self.vae.config, "block_out_channels"):
            self.vae_scale_factor = 2 ** ...                                  ->  {"vae_scale_factor": ("vae",)}
        else:
            self.vae_scale_factor = 8

    A block that reads such an attribute needs those components: a pipeline built from the block computes it from
    them when they are registered.
    """
    assigned = m.AssignTarget(target=m.Attribute(value=m.Name("self"), attr=m.Name()))
    found: dict[str, dict[str, None]] = {}
    for statement in init.adaptation:
        targets = [node.target.attr.value for node in findall(statement, assigned)]
        read = components_read(statement, init.components) if targets else ()
        for target in targets:
            found.setdefault(target, {}).update(dict.fromkeys(read))
    return {name: tuple(sources) for name, sources in found.items()}
