"""Analyze pass, part 1: what a standard pipeline class is made of.

Reads the pipeline class once and sorts every `self.<x>` the code can mean into what it will become:

    __init__(self, vae: AutoencoderKL, ...)     -> components (`register_modules`), typed from the signature
    self.vae_scale_factor = 2 ** ...           -> derived attributes (properties of the ModularPipeline subclass)
    if scheduler.config.steps_offset != 1: ... -> adaptation statements (side effects on components)
    self._guidance_scale = guidance_scale      -> per-call state, read back through `self.guidance_scale`
    def encode_prompt(self, ...)               -> helper methods (copied onto the blocks that call them)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import libcst as cst
import libcst.matchers as m

from ..cst.match_filter import matches
from ..cst.tree_walk import findall
from ..errors import ConversionError
from .parse import SourceModule, base_names, code

if TYPE_CHECKING:
    from .derivation import Derivation

SELF = m.Name("self")


@dataclass(frozen=True)
class Parameter:
    name: str
    annotation: str | None  # source text
    default: str | None  # source text; None when the parameter has no default
    star: str = ""  # "*" or "**" for variadic parameters


@dataclass(frozen=True)
class InitFacts:
    parameters: tuple[Parameter, ...]
    components: tuple[str, ...]  # registered with `register_modules`, in registration order
    config: tuple[str, ...]  # registered with `register_to_config`
    derived: Mapping[str, cst.BaseExpression]  # `self.<name> = <expr>`, in assignment order
    adaptation: tuple[cst.BaseStatement, ...]  # every other statement: side effects on the components
    node: cst.FunctionDef | None

    @property
    def models(self) -> tuple[str, ...]:
        """Components a loop may call as its denoiser: not the scheduler, not a guider (a pipeline that runs its
        own guider, `guider: ClassifierFreeGuidance`, calls it to combine predictions)."""
        annotations = {p.name: p.annotation or "" for p in self.parameters}
        return tuple(
            name
            for name in self.components
            if name != "scheduler"
            and not name.endswith("guider")
            and not any(word in annotations.get(name, "") for word in ("Guidance", "Guider"))
        )

    # What `__init__` derives depends on `__init__` alone: computed once per class, on first use (every block that
    # reads a derived attribute or a rebuilt component asks). `derivation` imports this module, hence the imports.
    @cached_property
    def derivations(self) -> Mapping[str, Derivation]:
        """Each derived attribute's `derivation.derivation_of`."""
        from .derivation import derivation_of

        return {name: derivation_of(self, name) for name in self.derived}

    @cached_property
    def rebuilt_from(self) -> Mapping[str, tuple[str, ...]]:
        """`derivation.component_inputs`: rebuilt component -> the components it is rebuilt from."""
        from .derivation import component_inputs

        return component_inputs(self)

    @cached_property
    def adapted_attributes(self) -> Mapping[str, tuple[str, ...]]:
        """`derivation.adapted_attributes`: attribute set by `__init__`'s own statements -> components they read."""
        from .derivation import adapted_attributes

        return adapted_attributes(self)


@dataclass(frozen=True)
class ClassFacts:
    node: cst.ClassDef
    name: str
    bases: tuple[str, ...]
    methods: Mapping[str, cst.FunctionDef]  # helper methods (not `__init__`, `__call__` or properties)
    properties: Mapping[str, cst.FunctionDef]
    class_attributes: Mapping[str, cst.SimpleStatementLine]
    init: InitFacts
    call: cst.FunctionDef
    call_parameters: tuple[Parameter, ...]
    call_docstring: str
    per_call: Mapping[str, str]  # `_guidance_scale` / `guidance_scale` -> local name `guidance_scale`
    per_call_properties: Mapping[str, cst.BaseExpression]  # properties computed from per-call state

    @cached_property
    def kept_attributes(self) -> tuple[str, ...]:
        """Derived attributes `__call__` or a helper assigns anew (`self._warn_has_been_called = True`,
        `self.empty_text_embedding = ...` over `__init__`'s `None`): values the pipeline keeps from call to call."""
        target = m.AssignTarget(m.Attribute(SELF, m.Name())) | m.AugAssign(m.Attribute(SELF, m.Name()))
        assigned = {
            node.target.attr.value
            for function in (self.call, *self.methods.values())
            for node in findall(function.body, target)
        }
        return tuple(name for name in self.init.derived if name in assigned and name not in self.per_call)

    def kind_of(self, attribute: str) -> str:
        """What `self.<attribute>` means in this class."""
        if attribute in self.init.components:
            return "component"
        if attribute in self.per_call or attribute in self.per_call_properties:
            return "per_call"
        if attribute in self.methods:
            return "helper"
        if attribute in self.init.derived:
            return "derived"
        if attribute in self.properties:
            return "property"
        if attribute in self.class_attributes:
            return "class_attribute"
        return "inherited"


def parameters_of(function: cst.FunctionDef) -> tuple[Parameter, ...]:
    params = function.params
    result = []
    for param in (*params.posonly_params, *params.params, *params.kwonly_params):
        if param.name.value == "self":
            continue
        annotation = code(param.annotation.annotation) if param.annotation else None
        default = code(param.default) if param.default is not None else None
        result.append(Parameter(param.name.value, annotation, default))
    if isinstance(params.star_arg, cst.Param):
        result.append(Parameter(params.star_arg.name.value, None, None, "*"))
    if params.star_kwarg is not None:
        result.append(Parameter(params.star_kwarg.name.value, None, None, "**"))
    return tuple(result)


def docstring_of(function: cst.FunctionDef) -> str:
    body = function.body.body
    if body and matches(body[0], m.SimpleStatementLine(body=[m.Expr(value=m.SimpleString())])):
        value = body[0].body[0].value.evaluated_value
        return value if isinstance(value, str) else ""
    return ""


def is_property(function: cst.FunctionDef) -> bool:
    return any(matches(d.decorator, m.Name("property")) for d in function.decorators)


def self_attribute_assigned(statement: cst.CSTNode) -> str | None:
    """`self.<name> = value` (a single target) -> name."""
    if not matches(statement, m.SimpleStatementLine(body=[m.Assign(targets=[m.AssignTarget()])])):
        return None
    target = statement.body[0].targets[0].target
    if matches(target, m.Attribute(value=SELF)):
        return target.attr.value
    return None


def _self_method_call(statement: cst.CSTNode, name: str) -> cst.Call | None:
    pattern = m.SimpleStatementLine(body=[m.Expr(value=m.Call(func=m.Attribute(value=SELF, attr=m.Name(name))))])
    return statement.body[0].value if matches(statement, pattern) else None


def _keyword_names(call: cst.Call) -> list[str]:
    return [arg.keyword.value for arg in call.args if arg.keyword is not None]


def analyze_init(node: cst.FunctionDef | None) -> InitFacts:
    if node is None:
        return InitFacts((), (), (), {}, (), None)
    components: list[str] = []
    config: list[str] = []
    derived: dict[str, cst.BaseExpression] = {}
    adaptation: list[cst.BaseStatement] = []
    body = node.body.body
    if body and matches(body[0], m.SimpleStatementLine(body=[m.Expr(value=m.SimpleString())])):
        body = body[1:]
    super_init = m.SimpleStatementLine(
        body=[m.Expr(value=m.Call(func=m.Attribute(value=m.Call(func=m.Name("super")), attr=m.Name("__init__"))))]
    )
    for statement in body:
        if matches(statement, super_init):
            continue
        registered = _self_method_call(statement, "register_modules")
        if registered is not None:
            components.extend(_keyword_names(registered))
            continue
        configured = _self_method_call(statement, "register_to_config")
        if configured is not None:
            config.extend(_keyword_names(configured))
            continue
        attribute = self_attribute_assigned(statement)
        if attribute is not None:
            derived[attribute] = statement.body[0].value
            continue
        adaptation.append(statement)
    return InitFacts(parameters_of(node), tuple(components), tuple(config), derived, tuple(adaptation), node)


def _property_expression(function: cst.FunctionDef) -> cst.BaseExpression | None:
    """The returned expression of a one-statement property (`return <expr>`), after an optional docstring."""
    body = [s for s in function.body.body if not matches(s, m.SimpleStatementLine(body=[m.Expr(m.SimpleString())]))]
    if len(body) == 1 and matches(body[0], m.SimpleStatementLine(body=[m.Return(value=m.DoNotCare())])):
        return body[0].body[0].value
    return None


def _per_call_state(call: cst.FunctionDef, properties: Mapping[str, cst.FunctionDef], init: InitFacts):
    """Attributes `__call__` assigns on `self` (`self._guidance_scale = ...`) and the properties reading them.

    Components and derived attributes are not per-call state even when `__call__` reassigns them
    (`self.vae = self.vae.to(latents.dtype)`): they stay members of the pipeline. A derived attribute `__call__`
    sets as a statement of its own before anything reads it, directly or through a property
    (`self._guidance_scale = guidance_scale` over `__init__`'s placeholder `self._guidance_scale = 1.0`), is
    per-call state: no call reads the placeholder.
    """
    pattern = m.Assign(targets=[m.AssignTarget(target=m.Attribute(value=SELF))])
    assignments = findall(call.body, pattern)
    placeholders = {a.targets[0].target.attr.value for a in assignments} & set(init.derived)
    set_first = _set_before_read(call, properties, pattern) if placeholders else set()
    assigned: dict[str, str] = {}
    for assign in assignments:
        attribute = assign.targets[0].target.attr.value
        if attribute in init.components or (attribute in init.derived and attribute not in set_first):
            continue
        assigned[attribute] = attribute.lstrip("_") or attribute
    per_call = dict(assigned)
    expressions = {name: _property_expression(function) for name, function in properties.items()}
    for name, expression in expressions.items():
        if matches(expression, m.Attribute(value=SELF)) and expression.attr.value in assigned:
            per_call[name] = assigned[expression.attr.value]
    per_call_properties: dict[str, cst.BaseExpression] = {}
    for name, expression in expressions.items():
        if expression is None or name in per_call:
            continue
        # (over the state itself or over properties returning it: `self.guidance_scale > 1 and self.image_...`)
        reads = {a.attr.value for a in findall(expression, m.Attribute(value=SELF))}
        if reads & (set(assigned) | set(per_call)):
            per_call_properties[name] = expression
    return per_call, per_call_properties


def _set_before_read(
    call: cst.FunctionDef, properties: Mapping[str, cst.FunctionDef], assignment: m.Assign
) -> set[str]:
    """Attributes a top-level statement of `__call__` assigns before any statement reads them."""
    attribute = m.Attribute(value=SELF, attr=m.Name())
    through: dict[str, set[str]] = {}  # a property reads what its expression reads
    for name, function in properties.items():
        expression = _property_expression(function)
        if expression is not None:
            through[name] = {a.attr.value for a in findall(expression, attribute)}
    read: set[str] = set()
    found: set[str] = set()
    for statement in call.body.body:
        attributes = {a.attr.value for a in findall(statement, attribute)}
        for name in list(attributes):
            attributes |= through.get(name, set())
        if matches(statement, m.SimpleStatementLine(body=[assignment])):
            target = statement.body[0].targets[0].target.attr.value
            value_reads = {a.attr.value for a in findall(statement.body[0].value, m.Attribute(value=SELF))}
            if target not in read and target not in value_reads:
                found.add(target)
            attributes -= {target} - value_reads
        read |= attributes
    return found


def analyze_class(source: SourceModule, node: cst.ClassDef) -> ClassFacts:
    methods: dict[str, cst.FunctionDef] = {}
    properties: dict[str, cst.FunctionDef] = {}
    class_attributes: dict[str, cst.SimpleStatementLine] = {}
    for statement in node.body.body:
        if isinstance(statement, cst.FunctionDef):
            if statement.name.value in ("__init__", "__call__"):
                continue
            (properties if is_property(statement) else methods)[statement.name.value] = statement
        elif matches(statement, m.SimpleStatementLine(body=[m.Assign(targets=[m.AssignTarget(m.Name())])])):
            class_attributes[statement.body[0].targets[0].target.value] = statement
        elif matches(statement, m.SimpleStatementLine(body=[m.AnnAssign(target=m.Name())])):
            class_attributes[statement.body[0].target.value] = statement
    call = next(s for s in node.body.body if isinstance(s, cst.FunctionDef) and s.name.value == "__call__")
    if call.asynchronous is not None:
        raise ConversionError(
            "`async def __call__`: modular pipeline blocks run synchronously, so the blocks cannot await",
            source.location(call.asynchronous),
            construct="async def __call__(...)",
            fix="convert a synchronous `__call__`",
        )
    for decorator in call.decorators:
        if matches(decorator.decorator, m.Name("staticmethod") | m.Name("classmethod") | m.Name("property")):
            raise source.refuse(decorator, "a decorator that makes `__call__` no plain method")
    init = next((s for s in node.body.body if isinstance(s, cst.FunctionDef) and s.name.value == "__init__"), None)
    init_facts = analyze_init(init)
    per_call, per_call_properties = _per_call_state(call, properties, init_facts)
    return ClassFacts(
        node=node,
        name=node.name.value,
        bases=tuple(base_names(node)),
        methods=methods,
        properties={k: v for k, v in properties.items() if k not in per_call and k not in per_call_properties},
        class_attributes=class_attributes,
        init=init_facts,
        call=call,
        call_parameters=parameters_of(call),
        call_docstring=docstring_of(call),
        per_call=per_call,
        per_call_properties=per_call_properties,
    )
