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

A source splitting its prediction into more parts (InstructPix2Pix: three) gets a guider with one batch per part,
conditional first (`emit.runtime.many_batches.ManyBatchGuidance`):

    class StableDiffusionInstructPix2PixGuidance(ManyBatchGuidance):
        _input_predictions = ["pred_cond", "pred_uncond", "pred_uncond_2"]

        def forward(self, pred_cond, pred_uncond=None, pred_uncond_2=None):
            ...
            noise_pred = torch.cat([pred_cond, pred_uncond, pred_uncond_2])
            noise_pred_text, noise_pred_image, noise_pred_uncond = noise_pred.chunk(3)
            ...
"""

from __future__ import annotations

import libcst as cst

from ..planning.plan import PipelinePlan, batch_identifiers
from .splice import BODY, Emitted, printed_class


def guider_class(plan: PipelinePlan) -> Emitted:
    combine = plan.guidance.combine
    bindings = "".join(f"        {name} = {value}\n" for name, value in combine.bindings)
    output = f"GuiderOutput(pred={combine.result}, pred_cond=pred_cond, pred_uncond=pred_uncond)"
    if combine.off_statements:
        # with CFG off the source still did something to the prediction (its `else` branch): so does the guider
        off_bindings = "".join(f"            {name} = {value}\n" for name, value in combine.off_bindings)
        off = off_bindings + f"            {OFF}\n" + f"            return {output}\n"
    else:
        off = "            return GuiderOutput(pred=pred_cond, pred_cond=pred_cond, pred_uncond=pred_uncond)\n"
    batches = sorted(plan.guidance.batch_order, key=batch_identifiers(len(plan.guidance.batch_order)).index)
    if len(batches) > 2:
        base, predictions = "ManyBatchGuidance", f"    _input_predictions = {batches!r}\n\n"
        docstring = (
            f"    `ClassifierFreeGuidance` over the {len(batches)} parts `{plan.class_name}` splits its prediction\n"
            "    into, one batch each (the conditional one first), combined by its own formula.\n"
        )
    else:
        base, predictions = "ClassifierFreeGuidance", ""
        docstring = (
            f"    `ClassifierFreeGuidance` with `{plan.class_name}`'s own combine formula, which\n"
            "    `ClassifierFreeGuidance.forward` does not compute bit for bit.\n"
        )
    text = (
        f"class {plan.guidance.guider}({base}):\n"
        '    """'
        + docstring.removeprefix("    ")
        + '    """\n\n'
        + predictions
        + f"    def forward(self, {', '.join(batches[:1] + [f'{name}=None' for name in batches[1:]])}):\n"
        "        if not self._is_cfg_enabled():\n" + off + bindings + f"        {BODY}\n"
        f"        return {output}\n"
    )
    origin = f"{plan.source_module or plan.source_label}.{plan.class_name}"
    header = cst.EmptyLine(comment=cst.Comment(f"# Copied from {origin}.__call__ (its guidance combine)"))
    printed = printed_class(text, {BODY: list(combine.statements), OFF: list(combine.off_statements)})
    (cls,) = printed.statements
    return Emitted([cls.with_changes(leading_lines=[header])], printed.bodies)


OFF = "__modularize_off__"
