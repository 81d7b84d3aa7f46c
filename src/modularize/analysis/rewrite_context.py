"""What every rewrite of the analyze pass shares: the facts, the replacements found so far and the notes.

A `Context` rewrites statements for a block in one go (replacements by original node, callback arguments to
`None`, `self` to `components`) and remembers what the rewritten code uses, so helpers, components and derived
attributes can be collected per block:

    context.rewrite([stmt])  ->  Rewritten(body=[...], used={"component": {"unet": None}, "helper": {...}})
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import libcst as cst
import libcst.matchers as m

from ..cst.dataflow import names_read
from ..cst.match_filter import matches
from ..cst.substitute import Replacement, rewrite_statements
from ..cst.tree_walk import findall, names_in
from ..frontend.class_facts import ClassFacts, docstring_of
from ..frontend.parse import SourceModule
from ..planning.naming import Naming
from ..planning.plan import Helper, Note
from ..transforms.helpers import as_static_helper
from ..transforms.self_to_components import self_to_components
from .runtime_plumbing import CALLBACK_ARGUMENTS, without_callbacks

# Members a ModularPipeline provides itself; `self.<x>` of these are `components.<x>` without further ado.
MODULAR_PIPELINE_MEMBERS = ("_execution_device", "device", "dtype", "components", "config")
# Static helpers a standard pipeline inherits from `DiffusionPipeline` that a ModularPipeline lacks; generated code
# calls the same function from `diffusers.utils` (the emitter imports it).
DIFFUSION_PIPELINE_UTILITIES = ("numpy_to_pil",)
# Names generated block code binds itself; a source that uses them as variables would collide.
BLOCK_NAMES = frozenset({"self", "components", "state", "block_state", "progress_bar"})
# ... and the names a guider-driven denoiser binds besides: free for a source whose loop has no CFG to rewrite (one
# that runs a guider itself, `guider_state = guider.prepare_inputs(...)`, keeps its own code and names)
GUIDER_LOOP_NAMES = frozenset(
    {"guider_state", "guider_state_batch", "guider_batches", "denoiser_calls", "denoiser_output"}
)
RESERVED_NAMES = BLOCK_NAMES | GUIDER_LOOP_NAMES


@dataclass
class Rewritten:
    """Statements rewritten for one block, with what they use."""

    body: list[cst.BaseStatement]
    used: dict[str, dict[str, None]] = field(default_factory=dict)

    def merge(self, used: dict[str, dict[str, None]]) -> None:
        for kind, names in used.items():
            for name in names:
                self.used.setdefault(kind, {}).setdefault(name, None)


class Context:
    """What every rewrite needs: the facts, the replacements and the notes gathered so far."""

    def __init__(self, source: SourceModule, facts: ClassFacts, naming: Naming):
        self.source = source
        self.facts = facts
        self.naming = naming
        self.replacements: dict[cst.CSTNode, Replacement] = {}
        self.notes: list[Note] = []
        self.helper_usage = Rewritten([])  # what copied helpers use (components, derived attributes, ...)
        self.condition_name: str | None = None  # the CFG property, the one per-call state helpers may read
        self.reserved_names = RESERVED_NAMES  # names generated code binds: BLOCK_NAMES alone when no CFG is rewritten
        self.helper_headers: dict[str, str] = {}  # helpers that are not verbatim copies say what they are
        self.callback_defaults = {p.name: p.default for p in facts.call_parameters}
        origin_module = source.module_name or source.label
        self.origin = f"{origin_module}.{facts.name}"

    def note(self, action: str, node: cst.CSTNode | None, what: str, why: str, safety: str = "safe") -> None:
        start = self.source.start(node) if node is not None else None
        line = start.line if start is not None else 0
        self.notes.append(Note(action, what, why, line, safety))

    def meaning(self, attribute: str) -> str:
        if attribute in MODULAR_PIPELINE_MEMBERS:
            return "modular"
        if attribute in DIFFUSION_PIPELINE_UTILITIES and self.facts.kind_of(attribute) == "inherited":
            return "utility"
        if attribute == self.condition_name and attribute not in self.facts.per_call_properties:
            return "guider"  # the generated pipeline's guider-backed CFG flag (the source had a local)
        return self.facts.kind_of(attribute)

    def rewrite(self, statements: Sequence[cst.BaseStatement], keep_on_self: Sequence[str] = ()) -> Rewritten:
        result = Rewritten([])
        for statement in rewrite_statements(list(statements), self.replacements):
            # both rewrites copy a statement they cannot change (the statements here are fresh copies already):
            # one walk for the names they act on spares most statements two rebuilding visits
            names = names_in(statement)
            if not names.isdisjoint(CALLBACK_ARGUMENTS):
                statement = without_callbacks(statement, self.callback_defaults)
            if "self" in names:
                statement, used = self_to_components(
                    statement, self.meaning, self.facts.per_call, "self", keep_on_self
                )
                result.merge(used)
            result.body.append(statement)
        return result


def call_body(facts: ClassFacts) -> list[cst.BaseStatement]:
    body = list(facts.call.body.body)
    if body and docstring_of(facts.call):
        body = body[1:]
    return body


def _check_helper(context: Context, function: cst.FunctionDef) -> None:
    """A helper becomes a static method taking `components` first: refuse the ones that cannot."""
    name = function.name.value
    for decorator in function.decorators:
        if matches(decorator.decorator, m.Name("classmethod")):
            raise context.source.refuse(
                decorator, f"`@classmethod` helper `{name}`: blocks carry helpers as static methods on `components`"
            )
    if function.asynchronous is not None:
        raise context.source.refuse(function, f"`async def {name}`: blocks run synchronously and cannot await it")
    if not any(matches(d.decorator, m.Name("staticmethod")) for d in function.decorators):
        return
    parameters = [*function.params.posonly_params, *function.params.params]
    for parameter in parameters:
        if parameter.name.value in ("self", "components"):
            raise context.source.refuse(
                parameter,
                f"`@staticmethod` helper `{name}` has a parameter named `{parameter.name.value}`: its copy binds that "
                "name to the pipeline's components",
                fix=f"rename the parameter, or drop `@staticmethod` if `{name}` is meant to be a method",
            )


@dataclass(frozen=True)
class Needs:
    """What a block's code needs besides its inputs: helpers to copy, components, config values."""

    helpers: tuple[Helper, ...]
    components: tuple[str, ...]
    configs: tuple[tuple[str, str], ...]  # (name, default) of `self.config.<name>` the code reads
    # the code reads the CFG flag, which the generated pipeline answers from its guider: the block declares the
    # guider so that it runs alone (a pipeline built from it alone has the guider to ask)
    reads_guider: bool = False


def helpers_and_components(context: Context, used: dict[str, dict[str, None]], owner: str) -> Needs:
    facts = context.facts
    helpers: dict[str, Helper] = {}
    components: dict[str, None] = dict.fromkeys(used.get("component", {}))
    derived: dict[str, None] = dict(used.get("derived", {}))
    configs: dict[str, None] = dict(used.get("config", {}))
    pending = list(used.get("helper", {}))
    helpers_used: list[dict[str, dict[str, None]]] = []
    while pending:
        name = pending.pop(0)
        if name in helpers:
            continue
        origin = f"{context.origin}.{name}"
        header = context.helper_headers.get(name, f"Copied from {origin} with self->components")
        _check_helper(context, facts.methods[name])
        function, helper_used = as_static_helper(facts.methods[name], context.meaning, owner, header)
        check_per_call_use(context, facts.methods[name], helper_used)
        context.helper_usage.merge(helper_used)
        helpers_used.append(helper_used)
        helpers[name] = Helper(name, function, origin)
        components.update(dict.fromkeys(helper_used.get("component", {})))
        derived.update(helper_used.get("derived", {}))
        configs.update(helper_used.get("config", {}))
        pending += [h for h in helper_used.get("helper", {}) if h not in helpers]
    parameters: dict[str, str] = {}
    for name in derived_closure(facts, derived):
        derivation = facts.init.derivations[name]
        for node in (derivation.expression, *derivation.statements):
            for attribute in findall(node, m.Attribute(value=m.Name("self"), attr=m.Name())):
                if attribute.attr.value in facts.init.components:
                    components.setdefault(attribute.attr.value, None)
            for parameter in names_read(node):
                if parameter in facts.init.components:
                    components.setdefault(parameter, None)
        parameters.update((p.name, p.default or "None") for p in derivation.parameters)
    adapted = facts.init.adapted_attributes
    for names in (used, *helpers_used):
        for attribute in (a for kind in names.values() for a in kind if a in adapted):
            components.update(dict.fromkeys(adapted[attribute]))
    rebuilt_from = facts.init.rebuilt_from
    for name in list(components):
        components.update(dict.fromkeys(rebuilt_from.get(name, ())))
    ordered = tuple(n for n in facts.init.components if n in components)
    defaults = {p.name: p.default or "None" for p in facts.init.parameters}
    registered = {n: defaults.get(n, "None") for n in facts.init.config if n in configs}
    # constructor parameters become config values a user can set (`update_components(patch_size=...)`), read with
    # the constructor's default by the properties that need them
    registered.update((n, d) for n, d in parameters.items() if n not in registered)
    return Needs(
        tuple(helpers[n] for n in sorted(helpers)),
        ordered,
        tuple(registered.items()),
        _reads_guider(context, used, helpers_used),
    )


def _reads_guider(context: Context, used: dict[str, dict[str, None]], helpers_used) -> bool:
    """Whether code reads the CFG flag the generated pipeline answers from its guider. A flag the source keeps per
    call is the block's local in the block's own code (`self_to_components`), a pipeline attribute in helpers."""
    flag = context.condition_name
    if flag is None:
        return False
    in_block = flag not in context.facts.per_call and any(flag in names for names in used.values())
    return in_block or any(flag in names for helper in helpers_used for names in helper.values())


def check_per_call_use(context: Context, node: cst.CSTNode, used: dict[str, dict[str, None]]) -> None:
    for attribute in used.get("per_call", {}):
        if attribute != context.condition_name:
            raise context.source.refuse(node, f"a helper reads per-call state `self.{attribute}`")


def derived_closure(facts: ClassFacts, names: dict[str, None]) -> list[str]:
    result: list[str] = []
    pending = [n for n in names if n in facts.init.derived]
    while pending:
        name = pending.pop(0)
        if name in result:
            continue
        result.append(name)
        expression = facts.init.derived[name]
        for attribute in findall(expression, m.Attribute(value=m.Name("self"), attr=m.Name())):
            if attribute.attr.value in facts.init.derived:
                pending.append(attribute.attr.value)
    return [n for n in facts.init.derived if n in result]


def merged_usage(results: Sequence[Rewritten]) -> dict[str, dict[str, None]]:
    merged = Rewritten([])
    for result in results:
        merged.merge(result.used)
    return merged.used
