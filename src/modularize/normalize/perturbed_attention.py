"""Read `__call__` with perturbed-attention guidance off: the guider does PAG (`analysis.guidance.perturbed_attention`
found where), so what is left is the pipeline's CFG, which the guidance detectors read as they read any other.

    if self.do_perturbed_attention_guidance:
        prompt_embeds = self._prepare_perturbed_attention_guidance(prompt_embeds, negative_prompt_embeds, cfg)
    elif self.do_classifier_free_guidance:
        prompt_embeds = torch.cat([negative_prompt_embeds, prompt_embeds])
    self._pag_scale = pag_scale
    ...
        latent_model_input = torch.cat([latents] * (prompt_embeds.shape[0] // latents.shape[0]))

becomes

    if self.do_classifier_free_guidance:
        prompt_embeds = torch.cat([negative_prompt_embeds, prompt_embeds])
    ...
        latent_model_input = (torch.cat([latents] * 2) if self.do_classifier_free_guidance else latents)

Each branch on the PAG flag gives way to its `elif` / `else` side (or to nothing). With PAG off, `prompt_embeds`
holds twice the rows of `latents` exactly when CFG is on, so the repeat to its batch is the CFG repeat; the
standard pipeline relies on the same (its prompt and latent batches agree).
"""

from __future__ import annotations

from collections.abc import Sequence

import libcst as cst

from ..analysis.guidance.perturbed_attention import PerturbedAttention, repeated_to_batch_of
from ..cst.substitute import Replacement, parse_expression, replace_with_origins


def without_perturbed_attention(
    body: Sequence[cst.BaseStatement], found: PerturbedAttention
) -> tuple[list[cst.BaseStatement], dict[cst.CSTNode, cst.CSTNode]]:
    """`body` with PAG off, and the origin of every new node ({new: old})."""
    replacements: dict[cst.CSTNode, Replacement] = {}
    for branch in found.branches:
        replacements[branch] = _off_side(branch)
    for statement in found.settings:
        replacements[statement] = cst.RemoveFromParent()
    for call in found.batch_ratio_repeats:
        repeated, _ = repeated_to_batch_of(call)
        doubled = call.with_changes(args=[cst.Arg(parse_expression(f"[{repeated.value}] * 2"))])
        replacements[call] = cst.IfExp(
            test=found.cfg_flag,
            body=doubled,
            orelse=repeated,
            lpar=[cst.LeftParen()],
            rpar=[cst.RightParen()],
        )
    new_body, origins = replace_with_origins(body, replacements)
    origins.update({new: old for old, new in replacements.items() if isinstance(new, cst.CSTNode)})
    return new_body, origins


def _off_side(branch: cst.If | cst.IfExp) -> Replacement:
    if isinstance(branch, cst.IfExp):
        return branch.orelse
    if branch.orelse is None:
        return cst.RemoveFromParent()
    if isinstance(branch.orelse, cst.If):
        return branch.orelse.with_changes(leading_lines=branch.leading_lines)
    return cst.FlattenSentinel(branch.orelse.body.body)
