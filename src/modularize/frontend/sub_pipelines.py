"""Pipelines a pipeline builds from its own components and calls: what a pipeline made of pipelines is made of.

    class KandinskyV22CombinedPipeline(DiffusionPipeline):
        def __init__(self, unet, scheduler, movq, prior_prior, ...):
            ...
            self.prior_pipe = KandinskyV22PriorPipeline(prior=prior_prior, ...)   # imported from a module
        def __call__(self, ...):
            prior_outputs = self.prior_pipe(prompt=prompt, ...)
    ->
    SubPipelineUse(attribute="prior_pipe", class_name="KandinskyV22PriorPipeline",
                   module="diffusers.pipelines.kandinsky2_2.pipeline_kandinsky2_2_prior")

Whether the class is a pipeline is known only from its module's source, which the caller reads
(`convert.plan_of`); a use whose class is no pipeline there is an ordinary derived attribute.
"""

from __future__ import annotations

from dataclasses import dataclass

import libcst as cst
import libcst.matchers as m

from ..cst.match_filter import matches
from ..cst.tree_walk import findall
from ..transforms.imports import absolute_module
from .parse import SourceModule, method_named

_SELF_ATTRIBUTE = m.Attribute(m.Name("self"), m.Name())


@dataclass(frozen=True)
class SubPipelineUse:
    attribute: str  # `self.<attribute>` holds the built pipeline
    class_name: str  # the class `__init__` builds it with
    module: str  # the absolute module that class is imported from
    node: cst.Call  # the constructor call, for messages


def sub_pipeline_uses(source: SourceModule, node: cst.ClassDef) -> tuple[SubPipelineUse, ...]:
    """`self.<x> = Imported(name=value, ...)` in `__init__` where `__call__` calls `self.<x>(...)`."""
    init, call = method_named(node, "__init__"), method_named(node, "__call__")
    if init is None or call is None:
        return ()
    called = {
        c.func.attr.value
        for c in findall(call.body, m.Call(func=_SELF_ATTRIBUTE))
        if isinstance(c.func, cst.Attribute)
    }
    if not called:
        return ()
    imported = _imported_names(source)
    uses = []
    for statement in init.body.body:
        if not matches(
            statement,
            m.SimpleStatementLine(body=[m.Assign(targets=[m.AssignTarget(_SELF_ATTRIBUTE)], value=m.Call(m.Name()))]),
        ):
            continue
        assign = statement.body[0]
        attribute, value = assign.targets[0].target.attr.value, assign.value
        if attribute in called and value.func.value in imported and all(a.keyword is not None for a in value.args):
            module, class_name = imported[value.func.value]
            uses.append(SubPipelineUse(attribute, class_name, module, value))
    return tuple(uses)


def _imported_names(source: SourceModule) -> dict[str, tuple[str, str]]:
    """Class name bound at the top level -> (the module defining it, its name there): `from module import Name`
    (`as Alias` too: `FluxFillPipeline as VisualClozeUpsamplingPipeline`), or a class of the module itself."""
    found = {}
    if source.module_name:
        for statement in source.tree.body:
            if isinstance(statement, cst.ClassDef):
                found[statement.name.value] = (source.module_name, statement.name.value)
    for statement in source.tree.body:
        if not matches(statement, m.SimpleStatementLine(body=[m.ImportFrom()])):
            continue
        node = statement.body[0]
        if isinstance(node.names, cst.ImportStar) or node.module is None and not node.relative:
            continue
        if node.relative and not source.module_name:
            continue  # (a file outside a package: the analysis refuses its relative imports where it reads them)
        module = absolute_module(node, source)
        for alias in node.names:
            if isinstance(alias.name, cst.Name):
                bound = alias.asname.name.value if alias.asname is not None else alias.name.value
                found[bound] = (module, alias.name.value)
    return found
