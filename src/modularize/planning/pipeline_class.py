"""The `ModularPipeline` subclass of a generated package: kept mixins, derived attributes, `__init__` side effects.

class StableDiffusionPipeline(DiffusionPipeline, StableDiffusionMixin, ..., IPAdapterMixin, FromSingleFileMixin)
    self.vae_scale_factor = 2 ** (len(self.vae.config.block_out_channels) - 1) ...
    if scheduler is not None and getattr(scheduler.config, "steps_offset", 1) != 1: ...  (fixes the config)

->  class StableDiffusionGeneratedModularPipeline(SavedWithPackage, ModularPipeline, StableDiffusionMixin, ...):
        @property
        def vae_scale_factor(self): ...
        def _adapt_components(self, vae, ..., scheduler, ...): ...   (run whenever components are registered)
"""

from __future__ import annotations

from collections.abc import Sequence

import libcst as cst
import libcst.matchers as m

from ..analysis.rewrite_context import Context, derived_closure
from ..cst.dataflow import flow_of, names_read
from ..cst.match_filter import matches
from ..cst.substitute import substitute_names
from ..cst.tree_walk import findall
from ..frontend.class_facts import ClassFacts
from ..frontend.derivation import components_read
from ..frontend.parse import snippet
from .plan import BlockPlan, LoopPlan, PipelineClassPlan, SubPipelinePlan

SUB_PIPELINE = "sub_pipeline"  # the runtime entry point a built pipeline's property calls

# Standard-pipeline bases that do not carry over to a ModularPipeline subclass: the base itself, loaders that
# need `DiffusionPipeline.from_single_file`, and the IP-Adapter loader (IP-Adapter inputs are gated).
_DROPPED_BASES = ("DiffusionPipeline", "FromSingleFileMixin", "IPAdapterMixin", "ConfigMixin", "ModelMixin")
_DISPLAY_ONLY_CALL = ("logger", "warnings", "deprecate")


def pipeline_class_plan(
    context: Context,
    blocks: Sequence[BlockPlan | LoopPlan],
    used: dict[str, dict[str, None]],
    cfg,
    sub_pipelines: Sequence[SubPipelinePlan] = (),
) -> PipelineClassPlan:
    facts = context.facts
    for kind, names in context.helper_usage.used.items():
        for name in names:
            used.setdefault(kind, {}).setdefault(name, None)
    bases = tuple(b for b in facts.bases if b not in _DROPPED_BASES and not b.endswith("Pipeline"))
    for base in facts.bases:
        if base not in bases:
            context.note("dropped", facts.node, f"base class `{base}`", "not meaningful on a ModularPipeline", "safe")
    class_attributes = tuple(
        facts.class_attributes[n] for n in facts.class_attributes if n in used.get("class_attribute", {})
    )
    package_components = {name for block in blocks for name in _components_of(block)}
    adaptation, rebound, adaptation_reads = _adaptation(
        context, set(derived_closure(facts, used.get("derived", {}))), package_components
    )
    # `_adapt_components` runs on the pipeline, so what it reads of the derived attributes is a property too
    derived = derived_closure(facts, {**used.get("derived", {}), **dict.fromkeys(adaptation_reads)})
    if adaptation is not None:
        for name in _self_targets(adaptation):
            if name in derived:
                raise context.source.refuse(
                    facts.init.node,
                    f"`__init__` assigns `self.{name}` twice, the second time among its side effects on components: "
                    "a ModularPipeline computes derived attributes as properties, which cannot be assigned",
                )
    for name in derived:
        for parameter in facts.init.derivations[name].parameters:
            if parameter.default is None:
                raise context.source.refuse(
                    facts.init.node,
                    f"`self.{name}` is computed from the constructor parameter `{parameter.name}`, which has no "
                    "default: a ModularPipeline is built without constructor arguments",
                    fix=f"give `{parameter.name}` a default value",
                )
    # a value the pipeline keeps from call to call, set up as a constant: a class attribute each instance shadows
    kept = [name for name in derived if name in facts.kept_attributes]
    class_attributes += tuple(
        cst.SimpleStatementLine([cst.Assign([cst.AssignTarget(cst.Name(name))], facts.init.derived[name])])
        for name in kept
    )
    built = {sub.attribute: sub for sub in sub_pipelines}
    properties = [
        _sub_pipeline_property(facts, name, built[name]) if name in built else _derived_property(facts, name)
        for name in derived
        if name not in kept
    ]
    for name in used.get("property", {}):
        properties.append(facts.properties[name])
    for name in used.get("inherited", {}):
        context.note(
            "assumed",
            None,
            f"`self.{name}`",
            f"not defined in the module; assumed to come from a kept base class, reached as `components.{name}`",
            "unsafe",
        )
    return PipelineClassPlan(
        class_name=context.naming.pipeline_class,
        bases=bases,
        class_attributes=class_attributes,
        properties=tuple(properties),
        adaptation=adaptation,
        init_components=facts.init.components,
        rebound_components=rebound,
    )


def _components_of(block: BlockPlan | LoopPlan) -> tuple[str, ...]:
    if isinstance(block, LoopPlan):
        return (*block.components, *(name for step in block.steps for name in step.components))
    return block.components


def _run_with_its_components(
    statement: cst.BaseStatement, components: Sequence[str], package_components: set[str]
) -> cst.BaseStatement:
    """A side effect of `__init__` that reads components the package's blocks use runs only on a pipeline that has
    them (one built from some of the blocks may not); the others run always:

        if self.scheduler is not None:                       if {"scheduler"} <= set(self._component_specs):
            self.scheduler.register_to_config(...)      ->       if self.scheduler is not None:
                                                                     self.scheduler.register_to_config(...)
        self.watermark = StableDiffusionXLWatermarker()  ->  self.watermark = StableDiffusionXLWatermarker()
    """
    read = [name for name in components_read(statement, components) if name in package_components]
    if not read:
        return statement
    names = ", ".join(repr(name) for name in read)
    test = cst.parse_expression(f"{{{names}}} <= set(self._component_specs)")
    return cst.If(
        test=test,
        body=cst.IndentedBlock(body=[statement.with_changes(leading_lines=[])]),
        leading_lines=statement.leading_lines,
    )


def _derived_property(facts: ClassFacts, name: str) -> cst.FunctionDef:
    """`self.vae_scale_factor = 2 ** (...)` in `__init__` -> a property computing it from the components.

    What `__init__` computes first for it is computed in the property first, and a constructor parameter it reads
    comes from the pipeline's config (a ModularPipeline takes no constructor arguments), defaulting as the
    constructor does:

        if select_layers is None:
            select_layers = (2, 5, 8)
        self.select_layers = tuple(select_layers)
    ->
        @property
        def select_layers(self):
            select_layers = self.config.get("select_layers", None)
            if select_layers is None:
                select_layers = (2, 5, 8)
            return tuple(select_layers)
    """
    derivation = facts.init.derivations[name]
    components = {c: cst.Attribute(cst.Name("self"), cst.Name(c)) for c in facts.init.components}
    from_config = {
        p.name: cst.parse_expression(f"self.config.get({p.name!r}, {p.default})") for p in derivation.parameters
    }
    if not derivation.statements and matches(derivation.expression, m.Name()):
        # `self.noise_gain = noise_gain`: the property returns the config value itself
        components.update(from_config)
        from_config = {}
    statements: list[cst.BaseStatement] = [
        cst.SimpleStatementLine(body=[cst.Assign(targets=[cst.AssignTarget(cst.Name(n))], value=value)])
        for n, value in from_config.items()
    ]
    # built as nodes, not re-indented text: a string continued over lines (`"...\` + newline + indented text)
    # keeps its value only if its lines are left as they are
    statements += [_without_leading_blank_lines(substitute_names(s, components)) for s in derivation.statements]
    expression = substitute_names(derivation.expression, components)
    statements.append(cst.SimpleStatementLine(body=[cst.Return(value=expression)]))
    template = cst.parse_statement(f"@property\ndef {name}(self):\n    pass\n")
    return template.with_changes(body=template.body.with_changes(body=statements))


def _sub_pipeline_property(facts: ClassFacts, name: str, sub: SubPipelinePlan) -> cst.FunctionDef:
    """`self.prior_pipe = KandinskyV22PriorPipeline(prior=prior_prior, ...)` in `__init__` -> a property handing
    back that pipeline's generated package on the same components, called as the standard pipeline is:

        @property
        def prior_pipe(self):
            return sub_pipeline(
                self, KandinskyV22PriorGeneratedBlocks, "diffusers.pipelines.kandinsky:KandinskyPriorPipelineOutput",
                prior=self.prior_prior, ...
            )
    """
    derived = _derived_property(facts, name)
    statements = list(derived.body.body)
    built = statements[-1].body[0].value
    output_class = cst.SimpleString(repr(sub.plan.output_class)) if sub.plan.output_class else cst.Name("None")
    arguments = [cst.Arg(cst.Name("self")), cst.Arg(cst.Name(sub.plan.blocks_class_name)), cst.Arg(output_class)]
    call = cst.Call(cst.Name(SUB_PIPELINE), [*arguments, *built.args])
    statements[-1] = cst.SimpleStatementLine([cst.Return(call)])
    return derived.with_changes(body=derived.body.with_changes(body=statements))


def _without_leading_blank_lines(statement: cst.BaseStatement) -> cst.BaseStatement:
    lines = list(statement.leading_lines)
    while lines and lines[0].comment is None:
        lines.pop(0)
    return statement.with_changes(leading_lines=lines)


def _local_assignments(facts: ClassFacts) -> dict[str, cst.SimpleStatementLine]:
    """`name = <expr>` statements of `__init__` (kept with its side effects), by the local they assign."""
    found = {}
    for statement in facts.init.adaptation:
        if matches(statement, m.SimpleStatementLine(body=[m.Assign(targets=[m.AssignTarget(m.Name())])])):
            found[statement.body[0].targets[0].target.value] = statement
    return found


def _is_display_only(statement: cst.BaseStatement) -> bool:
    """An `if` whose body only logs or warns: it changes nothing a pipeline computes."""
    if not isinstance(statement, cst.If) or statement.orelse is not None:
        return False
    for line in statement.body.body:
        if not matches(line, m.SimpleStatementLine(body=[m.Expr(value=m.Call())])):
            return False
        func = line.body[0].value.func
        root = func
        while isinstance(root, cst.Attribute):
            root = root.value
        if not (isinstance(root, cst.Name) and root.value in _DISPLAY_ONLY_CALL):
            return False
    return True


def _self_targets(node: cst.CSTNode) -> set[str]:
    """`self.<name>` a statement assigns."""
    targets = [a.target for a in findall(node, m.AssignTarget() | m.AugAssign() | m.AnnAssign())]
    return {t.attr.value for t in targets if matches(t, m.Attribute(value=m.Name("self"), attr=m.Name()))}


def _adaptation(
    context: Context, derived: set[str], package_components: set[str]
) -> tuple[cst.FunctionDef | None, tuple[str, ...], tuple[str, ...]]:
    """The side effects of the standard `__init__` on its components, as a method run on registration, the
    components it replaces (returned by the method, to be registered in place of the ones given), and the derived
    attributes it reads:

        scheduler = DDIMScheduler.from_config(scheduler.config)     (before `self.register_modules(...)`)

    ->

        def _adapt_components(self, unet, scheduler):
            scheduler = DDIMScheduler.from_config(scheduler.config)
            return {"scheduler": scheduler}
    """
    init = context.facts.init
    statements = []
    # a local only derived attributes read is computed by their properties instead, and so is one only such
    # locals read (`sys_message` for `sys_tokens = ...(sys_message)` for `self._drop_idx = len(sys_tokens[0])`)
    # A statement that only (re)assigns derived attributes no block reads goes too: ModelEditing's
    # `if self.with_to_k: self.projection_matrices = ...` serves a method `__call__` never reaches.
    assignments = list(_local_assignments(context.facts).items())
    unread: list[cst.BaseStatement] = []
    while True:
        kept = [s for s in init.adaptation if not any(s is u for u in unread)]
        read = {n for statement in kept for n in names_read(statement)}
        more = [s for name, s in assignments if name not in read and not any(s is u for u in unread)]
        for statement in kept:
            targets = _self_targets(statement)
            others = {n for s in kept if s is not statement for n in names_read(s)}
            if (
                targets
                and targets <= set(init.derived) - derived
                and others.isdisjoint(flow_of([statement]).writes)
                and not any(s is statement for s in more)
            ):
                more.append(statement)
        if not more:
            break
        unread += more
    for statement in init.adaptation:
        if any(statement is s for s in unread):
            continue
        if _is_display_only(statement):
            context.note(
                "dropped", statement, f"`{snippet(statement)}` in `__init__`", "only logs a warning", "display-only"
            )
            continue
        statements.append(statement)
    for name in init.config:
        context.note("dropped", init.node, f"config `{name}`", "registered config of the standard pipeline", "safe")
    for statement in statements:
        for call in findall(statement, m.Call(func=m.Attribute(value=m.Name("self"), attr=m.Name()))):
            if call.func.attr.value in context.facts.methods:
                raise context.source.refuse(
                    call,
                    f"`__init__` runs `self.{call.func.attr.value}()` on the components it is given: a method of "
                    "the standard pipeline that changes its components at construction, which the generated "
                    "pipeline does not carry",
                )
    if not statements:
        return None, (), ()
    reads = tuple(
        dict.fromkeys(
            a.attr.value
            for statement in statements
            for a in findall(statement, m.Attribute(value=m.Name("self"), attr=m.Name()))
            if a.attr.value in init.derived
        )
    )
    for statement in statements:
        context.note(
            "kept", statement, f"`{snippet(statement)}` in `__init__`", "reproduced on component registration"
        )
    written = flow_of(statements).writes
    rebound = tuple(name for name in init.components if name in written)
    statements = [_run_with_its_components(statement, init.components, package_components) for statement in statements]
    if rebound:
        pairs = ", ".join(f"{name!r}: {name}" for name in rebound)
        # a pipeline built from some of the blocks registers only the components it has
        statements.append(
            cst.parse_statement(
                f"return {{name: value for name, value in {{{pairs}}}.items() if name in self._component_specs}}\n"
            )
        )
    # Annotations are dropped: this is a registration hook, and its types would only add imports.
    params = init.node.params.with_changes(
        params=[p.with_changes(annotation=None) for p in init.node.params.params],
        kwonly_params=[p.with_changes(annotation=None) for p in init.node.params.kwonly_params],
    )
    statements[0] = statements[0].with_changes(leading_lines=[])
    function = cst.FunctionDef(
        name=cst.Name("_adapt_components"),
        params=params,
        body=cst.IndentedBlock(body=statements),
        leading_lines=[
            cst.EmptyLine(
                comment=cst.Comment(
                    f"# Copied from {context.origin}.__init__ (its side effects on components, each on a pipeline "
                    "that has the components it reads)"
                )
            )
        ],
    )
    return function, rebound, reads
