"""Carry a helper method of the standard pipeline onto a block as a static method taking `components` first.

Before (a method of `StableDiffusionPipeline`):

    def prepare_latents(self, batch_size, num_channels_latents, height, width, dtype, device, generator, latents=None):
        shape = (batch_size, num_channels_latents, int(height) // self.vae_scale_factor, ...)
        ...
        latents = latents * self.scheduler.init_noise_sigma
        return latents

After (a member of the block that calls it, reached as `self.prepare_latents(components, ...)`):

    # Copied from diffusers...StableDiffusionPipeline.prepare_latents with self->components
    @staticmethod
    def prepare_latents(components, batch_size, num_channels_latents, height, width, dtype, device, generator, latents=None):
        shape = (batch_size, num_channels_latents, int(height) // components.vae_scale_factor, ...)
        ...
        latents = latents * components.scheduler.init_noise_sigma
        return latents

A helper calling another helper calls it through the owning block class (`<Block>.encode_image(components, ...)`).
A helper that was a static method already (`_pack_latents(latents, ...)`) gets the same `components` first
parameter, so every call site reads alike.
"""

from __future__ import annotations

from collections.abc import Callable

import libcst as cst
import libcst.matchers as m

from ..cst.match_filter import matches
from .self_to_components import self_to_components


def as_static_helper(
    function: cst.FunctionDef, meaning: Callable[[str], str], owner_class: str, header: str
) -> tuple[cst.FunctionDef, dict[str, dict[str, None]]]:
    """`header` is the comment above the copy (`Copied from <origin> with self->components`)."""
    static = [d for d in function.decorators if matches(d.decorator, m.Name("staticmethod"))]
    if static:  # already static (`_pack_latents`): it gets `components` first like every helper
        params = function.params
        first = cst.Param(cst.Name("components"))
        function = function.with_changes(
            params=params.with_changes(params=[first, *params.params]),
            decorators=[d for d in function.decorators if d not in static],
        )
    rewritten, used = self_to_components(function, meaning, {}, helper_owner=owner_class)
    comments = [
        line
        for line in rewritten.leading_lines
        if line.comment is None or not line.comment.value.lstrip("# ").startswith("Copied from")
    ]
    decorators = [cst.Decorator(cst.Name("staticmethod")), *rewritten.decorators]
    leading = [*comments, cst.EmptyLine(comment=cst.Comment(f"# {header}"))]
    return rewritten.with_changes(leading_lines=leading, decorators=decorators), used
