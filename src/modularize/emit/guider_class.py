"""Emit a guider subclass for a combine formula `ClassifierFreeGuidance` does not compute bit for bit.

QwenImagePipeline rescales the combined prediction to the conditional one's norm:

    comb_pred = neg_noise_pred + true_cfg_scale * (noise_pred - neg_noise_pred)
    cond_norm = torch.norm(noise_pred, dim=-1, keepdim=True)
    noise_norm = torch.norm(comb_pred, dim=-1, keepdim=True)
    noise_pred = comb_pred * (cond_norm / noise_norm)

becomes (only the arithmetic is the source's; `ClassifierFreeGuidance` still decides when CFG is on):

    # Copied from diffusers...QwenImagePipeline.__call__ (its guidance combine)
    class QwenImageGuidance(ClassifierFreeGuidance):
        def forward(self, pred_cond, pred_uncond=None):
            if not self._is_cfg_enabled():
                return GuiderOutput(pred=pred_cond, pred_cond=pred_cond, pred_uncond=pred_uncond)
            noise_pred = pred_cond
            neg_noise_pred = pred_uncond
            true_cfg_scale = self.guidance_scale
            comb_pred = neg_noise_pred + true_cfg_scale * (noise_pred - neg_noise_pred)
            ...
            return GuiderOutput(pred=noise_pred, pred_cond=pred_cond, pred_uncond=pred_uncond)
"""

from __future__ import annotations

import libcst as cst

from ..planning.plan import PipelinePlan
from .splice import BODY, splice


def guider_class(plan: PipelinePlan) -> list[cst.BaseStatement]:
    combine = plan.guidance.combine
    bindings = "".join(f"        {name} = {value}\n" for name, value in combine.bindings)
    output = f"GuiderOutput(pred={combine.result}, pred_cond=pred_cond, pred_uncond=pred_uncond)"
    if combine.off_statements:
        # with CFG off the source still did something to the prediction (its `else` branch): so does the guider
        off_bindings = "".join(f"            {name} = {value}\n" for name, value in combine.off_bindings)
        off = off_bindings + f"            {OFF}\n" + f"            return {output}\n"
    else:
        off = "            return GuiderOutput(pred=pred_cond, pred_cond=pred_cond, pred_uncond=pred_uncond)\n"
    text = (
        f"class {plan.guidance.guider}(ClassifierFreeGuidance):\n"
        f'    """`ClassifierFreeGuidance` with `{plan.class_name}`\'s own combine formula, which\n'
        "    `ClassifierFreeGuidance.forward` does not compute bit for bit.\n"
        '    """\n\n'
        "    def forward(self, pred_cond, pred_uncond=None):\n"
        "        if not self._is_cfg_enabled():\n" + off + bindings + f"        {BODY}\n"
        f"        return {output}\n"
    )
    origin = f"{plan.source_module or plan.source_label}.{plan.class_name}"
    header = cst.EmptyLine(comment=cst.Comment(f"# Copied from {origin}.__call__ (its guidance combine)"))
    (cls,) = splice(text, {BODY: list(combine.statements), OFF: list(combine.off_statements)})
    return [cls.with_changes(leading_lines=[header])]


OFF = "__modularize_off__"
