"""Guidance over more than two batches: InstructPix2Pix guides with text and image at once.

    prompt_embeds = torch.cat([prompt_embeds, negative_prompt_embeds, negative_prompt_embeds])   # in a helper
    image_latents = torch.cat([image_latents, image_latents, uncond_image_latents])              # in a helper
    for i, t in enumerate(timesteps):
        latent_model_input = torch.cat([latents] * 3) if self.do_classifier_free_guidance else latents
        noise_pred = self.unet(torch.cat([latent_model_input, image_latents], dim=1), t, prompt_embeds)[0]
        if self.do_classifier_free_guidance:
            noise_pred_text, noise_pred_image, noise_pred_uncond = noise_pred.chunk(3)
            noise_pred = (
                noise_pred_uncond
                + self.guidance_scale * (noise_pred_text - noise_pred_image)
                + self.image_guidance_scale * (noise_pred_image - noise_pred_uncond)
            )

The denoiser runs on a batch of three parts and its prediction is split into three. No formula is assumed: the
branch runs verbatim in a guider subclass with one batch per part (`emit.runtime.many_batches`), and what this
module decides is which part is the conditional one, the part CFG off computes alone. That is data flow, not
names: in `x = torch.cat([x, a, b])` under the flag, the value `x` had is what CFG off uses, so the part holding
it is conditional. Every concatenation narrows the candidates (`[image, image, uncond]` says part 0 or 1, the
prompt's `[prompt, negative, negative]` part 0); exactly one part must remain.

The guider's batches are that part first, then the others in the source's order (`batch_order`): with guidance
on the fields hand each batch its part, with it off the first batch alone runs, on the values CFG off used.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import libcst as cst
import libcst.matchers as m

from ...cst.dataflow import flow_of
from ...cst.match_filter import matches
from ...cst.substitute import same_expression
from ...planning.plan import batch_identifiers
from .doubled_batch import split_batch

# `a, b, c = x.chunk(3)`: names only
_SPLIT_LINE = m.SimpleStatementLine(
    body=[m.Assign(targets=[m.AssignTarget(target=m.Tuple(elements=[m.AtLeastN(m.Element(m.Name()), n=2)]))])]
)


def split_parts(statement: cst.CSTNode) -> tuple[str, tuple[str, ...]] | None:
    """`a, b, c = x.chunk(3)` -> ("x", ("a", "b", "c")): a prediction split into as many parts as names."""
    if not matches(statement, _SPLIT_LINE):
        return None
    assign = statement.body[0]
    found = split_batch(assign.value)
    names = tuple(element.value.value for element in assign.targets[0].target.elements)
    if found is None or found[1] != len(names):
        return None
    return found[0], names


def many_batch_branch(inner: Sequence[cst.BaseStatement]) -> tuple[str, tuple[str, ...], str] | None:
    """(model output, parts, result) of a CFG branch splitting the prediction into three or more parts and
    handing on what it computes under the model output's name; None otherwise."""
    splits = [found for found in map(split_parts, inner) if found is not None]
    if len(splits) != 1 or len(splits[0][1]) < 3:
        return None
    model_output, parts = splits[0]
    if model_output not in flow_of(list(inner)).writes:
        return None
    return model_output, parts, model_output


def conditional_positions(elements: Sequence[cst.BaseExpression], kept: cst.BaseExpression) -> frozenset[int]:
    """The parts of a concatenation that hold `kept`, the value CFG off uses (`[x, n, n]`, `x` -> {0})."""
    return frozenset(at for at, element in enumerate(elements) if same_expression(element, kept))


def conditional_part(constraints: Iterable[frozenset[int]], ways: int) -> int | None:
    """The one part every concatenation allows as the conditional one, or None (none says, or they disagree).

    A concatenation holding the kept value in every part (a repeat) or in none says nothing."""
    candidates = set(range(ways))
    said = False
    for positions in constraints:
        if 0 < len(positions) < ways:
            candidates &= positions
            said = True
    return candidates.pop() if said and len(candidates) == 1 else None


def guider_positions(conditional: int, ways: int) -> tuple[int, ...]:
    """The part each guider batch takes: the conditional one first, then the others in the source's order."""
    return (conditional, *(at for at in range(ways) if at != conditional))


def in_source_order(positions: Sequence[int]) -> tuple[str, ...]:
    """The guider's batch identifiers in the order the source concatenates the parts (`batch_order`)."""
    identifiers = batch_identifiers(len(positions))
    return tuple(identifiers[positions.index(at)] for at in range(len(positions)))
