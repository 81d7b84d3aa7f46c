"""Rewrite `self.<x>` of a standard pipeline for a modular block.

Before (a statement of `__call__`):

    device = self._execution_device
    prompt_embeds, negative_prompt_embeds = self.encode_prompt(prompt, device, clip_skip=self.clip_skip)
    if isinstance(self, TextualInversionLoaderMixin):
        prompt = self.maybe_convert_prompt(prompt, self.tokenizer)

After:

    device = components._execution_device
    prompt_embeds, negative_prompt_embeds = self.encode_prompt(components, prompt, device, clip_skip=clip_skip)
    if isinstance(components, TextualInversionLoaderMixin):
        prompt = components.maybe_convert_prompt(prompt, components.tokenizer)

An inherited static helper a ModularPipeline lacks becomes the `diffusers.utils` function it wraps:

    image = self.numpy_to_pil(image)      ->      image = numpy_to_pil(image)

Components, derived attributes, class attributes and inherited members move to `components` (the
`ModularPipeline`); per-call state (`self.clip_skip` over `self._clip_skip`) becomes the local it was set from;
helper methods become static methods of the block that take `components` first (called as `self.helper(...)` from
a block's `__call__`, as `<Block>.helper(...)` from another helper).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping

import libcst as cst
import libcst.matchers as m

from ..cst.match_filter import matches
from ..cst.tree_walk import paths_to

_SELF = m.Name("self")
_SELF_CONFIG = m.Attribute(value=_SELF, attr=m.Name("config"))
_SELF_ATTRIBUTE = m.Attribute(value=_SELF)


class SelfToComponents(cst.CSTTransformer):
    def __init__(
        self,
        meaning: Callable[[str], str],
        per_call_locals: Mapping[str, str],
        helper_owner: str = "self",
        keep_on_self: Collection[str] = (),
    ):
        super().__init__()
        self._meaning = meaning
        self._locals = per_call_locals
        self._owner = helper_owner
        self._keep = set(keep_on_self)
        # What the rewritten code uses, by kind: {"component": {"unet", ...}, "helper": {...}, ...}
        self.used: dict[str, dict[str, None]] = {}

    paths: set[int] | None = None  # ids of the nodes to descend into (None: all)

    def on_visit(self, node: cst.CSTNode) -> bool:
        if self.paths is not None and id(node) not in self.paths:
            return False
        return super().on_visit(node)

    def _use(self, kind: str, name: str) -> None:
        self.used.setdefault(kind, {}).setdefault(name, None)

    def leave_Attribute(self, original_node: cst.Attribute, updated_node: cst.Attribute) -> cst.BaseExpression:
        if matches(original_node.value, _SELF_CONFIG):
            self._use("config", original_node.attr.value)  # `self.config.<x>`: a config value the block needs
        if not matches(original_node.value, _SELF):
            return updated_node
        attribute = original_node.attr.value
        if attribute in self._keep:
            return original_node
        kind = self._meaning(attribute)
        self._use(kind, attribute)
        if kind == "helper":
            return updated_node.with_changes(value=cst.Name(self._owner))
        if kind == "utility":
            return cst.Name(attribute, lpar=updated_node.lpar, rpar=updated_node.rpar)
        if kind == "per_call" and attribute in self._locals:
            return cst.Name(self._locals[attribute], lpar=updated_node.lpar, rpar=updated_node.rpar)
        return updated_node.with_changes(value=cst.Name("components"))

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.Call:
        func = original_node.func
        if matches(func, _SELF_ATTRIBUTE) and self._meaning(func.attr.value) == "helper":
            first = cst.Arg(cst.Name("components"))
            return updated_node.with_changes(args=[first, *updated_node.args])
        return updated_node

    def leave_Name(self, original_node: cst.Name, updated_node: cst.Name) -> cst.Name:
        # Attributes of `self` are rebuilt in leave_Attribute from the original node; a bare `self` (passed to
        # `isinstance`, a mixin method, ...) is the pipeline, which a block reaches as `components`.
        return cst.Name("components") if original_node.value == "self" else updated_node


def self_to_components(
    node: cst.CSTNode,
    meaning: Callable[[str], str],
    per_call_locals: Mapping[str, str],
    helper_owner: str = "self",
    keep_on_self: Collection[str] = (),
) -> tuple[cst.CSTNode, dict[str, dict[str, None]]]:
    transformer = SelfToComponents(meaning, per_call_locals, helper_owner, keep_on_self)
    # every rewrite here is of a node holding the name `self`: the visit descends only along the paths to those
    # (a subtree without `self` comes out as it went in, not rebuilt)
    transformer.paths = paths_to([node], lambda found: found.value == "self", among=cst.Name)
    return node.visit(transformer), transformer.used
