"""`libcst.matchers.matches`, the same answers at a fraction of the cost where most nodes do not match.

LibCST's `matches` builds capture dictionaries and walks every field of the matcher through several layers of
`isinstance` dispatch, for every node it is asked about: ~5 us a node, most of them rejected on their class or on
a name. The analysis asks it tens of thousands of times per conversion. Here each matcher is read once into a
*necessary condition* -- a plain predicate over the parts LibCST would reject on first: the node's class name and,
field by field, exact strings, `None`, booleans, nested node matchers and sequences of them -- and LibCST's
`matches` is asked only about the nodes that pass it:

    matcher = m.Call(func=m.Attribute(value=m.Name("self")))
    matches(node, matcher)     # False for a `Name` at once; for a `Call` of `self.x`, whatever LibCST says

Everything else a matcher can hold (`MatchIfTrue`, wildcards in sequences, `AllOf`, `DoesNotMatch`,
`SaveMatchedNode`, metadata) adds no condition: the predicate only ever rejects what LibCST rejects, so the answer
is always LibCST's. A matcher holding nothing else (`m.Attribute(value=m.Name("self"))`) is the predicate alone:
what LibCST would check, field by field, is exactly what it checks.
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Callable

import libcst as cst
import libcst.matchers as m

Predicate = Callable[[object], bool]

# per matcher class: the fields LibCST compares (all but its dataclass bookkeeping)
_FIELDS: dict[type, tuple[str, ...]] = {}
# the conditions of the matchers alive, by id: an entry goes with its matcher (a weak reference's callback), so a
# matcher made for one search (`m.MatchIfTrue(lambda n: n in found)`) does not keep what it was made with, the
# nodes of a whole conversion, while a module's own matchers are read once a process
_RECENT: dict[int, tuple[weakref.ref, Predicate | None, bool]] = {}
_MOST_RECENT = 4096


def matches(node: object, matcher: m.BaseMatcherNode) -> bool:
    """`libcst.matchers.matches(node, matcher)`."""
    condition, exact = necessary_condition(matcher)
    if condition is None:
        return m.matches(node, matcher)
    return condition(node) and (exact or m.matches(node, matcher))


def matcher_test(matcher: m.BaseMatcherNode) -> Predicate:
    """`lambda node: matches(node, matcher)`, with the matcher read once: for asking about many nodes."""
    condition, exact = necessary_condition(matcher)
    if condition is None:
        return lambda node: m.matches(node, matcher)
    if exact:
        return condition
    return lambda node: condition(node) and m.matches(node, matcher)


def necessary_condition(matcher: m.BaseMatcherNode) -> tuple[Predicate | None, bool]:
    """(a predicate every node `matcher` matches satisfies, or None when the matcher gives none; whether the
    predicate is the whole match: the matcher holds nothing but what the predicate checks)."""
    key = id(matcher)
    found = _RECENT.get(key)
    if found is not None and found[0]() is matcher:
        return found[1], found[2]
    if len(_RECENT) >= _MOST_RECENT:
        _RECENT.clear()
    condition, exact = _top_level(matcher)
    try:
        reference = weakref.ref(matcher, lambda _, key=key: _forget(key))
    except TypeError:  # (a matcher that cannot be referenced weakly: not remembered)
        return condition, exact
    _RECENT[key] = (reference, condition, exact)
    return condition, exact


def _forget(key: int) -> None:
    _RECENT.pop(key, None)


def _top_level(matcher: object) -> tuple[Predicate | None, bool]:
    if isinstance(matcher, m.OneOf):
        return _any_of([_node(option) for option in matcher.options])
    return _node(matcher)


def _node(matcher: object) -> tuple[Predicate | None, bool]:
    """A node matcher (`m.Call(...)`): the node's class has its name, and each field meets its condition."""
    if not isinstance(matcher, m.BaseMatcherNode) or not dataclasses.is_dataclass(matcher):
        return None, False
    if not isinstance(getattr(cst, type(matcher).__name__, None), type):
        return None, False  # (a special matcher: `OneOf`, `AllOf`, ...)
    name = type(matcher).__name__
    checks = []
    exact = True
    for field in _fields(type(matcher)):
        desired = getattr(matcher, field)
        if isinstance(desired, m.DoNotCareSentinel):
            continue
        condition, field_exact = (None, False) if field == "metadata" else _attribute(desired)
        exact = exact and field_exact
        if condition is not None:
            checks.append((field, condition))
    if not checks:
        return (lambda node: node.__class__.__name__ == name), exact
    if len(checks) == 1:
        ((field, condition),) = checks
        return (lambda node: node.__class__.__name__ == name and condition(getattr(node, field))), exact
    return (
        lambda node: node.__class__.__name__ == name and all(condition(getattr(node, f)) for f, condition in checks)
    ), exact


def _attribute(desired: object) -> tuple[Predicate | None, bool]:
    """What LibCST's `_attribute_matches` requires of a field's value for `desired`, where it says so simply."""
    if desired is None:
        return (lambda value: value is None), True
    if isinstance(desired, bool):
        return (lambda value: value is desired), True
    if isinstance(desired, str):
        return (lambda value: value == desired), True
    if isinstance(desired, m.OneOf):
        if all(isinstance(option, m.BaseMatcherNode) for option in desired.options):
            return _any_of([_node(option) for option in desired.options])
        return None, False
    if isinstance(desired, (list, tuple)):
        return _sequence(desired)
    return _node(desired)


def _sequence(desired: list | tuple) -> tuple[Predicate | None, bool]:
    """A sequence of node matchers and `DoNotCare()`s, no wildcard: LibCST matches a sequence of as many nodes,
    each to its matcher (and nothing that is not a sequence):

        m.SimpleStatementLine(body=[m.Assign()])     # body: one statement, an assignment
    """
    elements: list[Predicate | None] = []
    exact = True
    for element in desired:
        if isinstance(element, m.DoNotCareSentinel):
            elements.append(None)
            continue
        condition, element_exact = (
            _any_of([_node(o) for o in element.options]) if isinstance(element, m.OneOf) else _node(element)
        )
        if condition is None:  # (a wildcard, a captured node, a predicate: how many nodes it takes is LibCST's)
            return None, False
        elements.append(condition)
        exact = exact and element_exact
    count = len(elements)

    def matches_sequence(value: object) -> bool:
        if type(value) is not tuple and type(value) is not list:
            return False
        if len(value) != count:
            return False
        return all(condition is None or condition(item) for condition, item in zip(elements, value, strict=True))

    return matches_sequence, exact


def _any_of(conditions: list[tuple[Predicate | None, bool]]) -> tuple[Predicate | None, bool]:
    if not conditions or any(condition is None for condition, _ in conditions):
        return None, False
    predicates = [condition for condition, _ in conditions]
    return (lambda node: any(condition(node) for condition in predicates)), all(exact for _, exact in conditions)


def _fields(cls: type) -> tuple[str, ...]:
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(f.name for f in dataclasses.fields(cls) if f.name != "_metadata")
    return names
