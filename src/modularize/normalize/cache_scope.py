"""Narrow a model's `cache_context` block to the model call and what it does to the call's output, so that what
follows the call (a guidance combine) is a statement of its own, the shape the separate-passes detector reads:

    if self.do_classifier_free_guidance:
        with current_model.cache_context("uncond"):
            noise_uncond = current_model(hidden_states=latent_model_input, ...)[0]
            noise_pred = noise_uncond + current_guidance_scale * (noise_pred - noise_uncond)

becomes

    if self.do_classifier_free_guidance:
        with current_model.cache_context("uncond"):
            noise_uncond = current_model(hidden_states=latent_model_input, ...)[0]
        noise_pred = noise_uncond + current_guidance_scale * (noise_pred - noise_uncond)

The same values: a cache context names the model calls made inside it (for caching hooks); a statement that calls
no model computes the same inside or outside it. Only statements after the block's first one that call nothing
(`noise_pred = u + s * (c - u)`) move, and only from a `with` whose one item is `<x>.cache_context("<label>")`;
the call's own post-processing (`out = out[:, :n]`) stays inside, as the source wrote it.
"""

from __future__ import annotations

from collections.abc import Sequence

import libcst as cst
import libcst.matchers as m

from ..cst.dataflow import flow_of
from ..cst.tree_walk import findall

_CACHE_CONTEXT = m.With(
    items=[m.WithItem(item=m.Call(func=m.Attribute(attr=m.Name("cache_context")), args=[m.Arg(m.SimpleString())]))]
)


def wide_cache_scopes(body: Sequence[cst.BaseStatement]) -> list[cst.With]:
    """The cache-context blocks (at any depth) holding, after their first statement, statements that call nothing."""
    found = []
    for statement in body:
        for block in findall(statement, _CACHE_CONTEXT):
            if _moved(block) is not None:
                found.append(block)
    return found


def narrowed(block: cst.With) -> list[cst.BaseStatement]:
    """[the block holding its call and the call's post-processing, the statements moved after it]."""
    kept, moved = _moved(block)
    return [block.with_changes(body=block.body.with_changes(body=kept)), *moved]


def _moved(block: cst.With) -> tuple[list[cst.BaseStatement], list[cst.BaseStatement]] | None:
    inner = list(block.body.body)
    if len(inner) < 2 or not findall(inner[0], m.Call()):
        return None
    output = set(flow_of([inner[0]]).writes)
    at = 1
    # the call's own post-processing: reassigning its output
    while at < len(inner) and set(flow_of([inner[at]]).writes) <= output and not _calls_model(inner[at]):
        at += 1
    rest = inner[at:]
    if not rest or any(_calls_model(statement) for statement in rest):
        return None
    return inner[:at], rest


def _calls_model(statement: cst.BaseStatement) -> bool:
    """A call of something other than a method of a value (`x.chunk(2)`, `torch.norm(x)` are not model calls)."""
    return bool(findall(statement, m.Call(func=m.Name()) | m.Call(func=m.Attribute(value=m.Name("self")))))
