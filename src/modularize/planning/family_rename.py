"""A call argument of one workflow under another name in its family: two workflows that both need an argument of
the same name (SDXL image-to-image's init `image`, SDXL ControlNet's control `image`) cannot both be selected by it.

    with_renamed_argument(controlnet_plan, "image", "controlnet_image")
    -> the same plan, where the blocks that took the call's `image` take `controlnet_image` and bind it to the local
       their code reads:

           InputParam("image", ...)               ->  InputParam("controlnet_image", ...)
           image = block_state.image              ->  image = block_state.controlnet_image

       what those blocks compute from it keeps its name (`image = self.prepare_image(image, ...)` still outputs
       `image`), and the plan's call arguments and block arguments name `controlnet_image`.

Only the name a call gives the value by changes: the blocks' code, their outputs and everything downstream are
the workflow's own, as converted. A standard call of that workflow names it `image`; the family's pipeline
translates it (`FamilyPipeline.translate_standard_call(workflow=...)`).
"""

from __future__ import annotations

import dataclasses

from .plan import BlockPlan, LoopPlan, LoopStepPlan, Param, PipelinePlan


def renamable(plan: PipelinePlan, name: str) -> bool:
    """Whether the blocks take `name` from the call as a plain input: not through the guider, which reads it by its
    own name (`negative_prompt`), and not an argument the package only checks or drops."""
    guider = {p.name for p in plan.guidance.arguments}
    guided = {
        p.name
        for part in plan.block_parts
        if isinstance(part, LoopStepPlan)
        for p in part.inputs
        if p.name in part.guided and p.producer is None
    }
    return name in plan.block_arguments and name not in guider and name not in guided


def names_taken(plan: PipelinePlan) -> set[str]:
    """Every name a call or a block of the plan gives a value by: a new argument name must be none of them."""
    names = {p.name for p in plan.call_arguments}
    for part in plan.block_parts:
        names |= {p.name for p in part.inputs} | {o.name for o in part.outputs}
    return names


def with_renamed_argument(plan: PipelinePlan, old: str, new: str) -> PipelinePlan:
    """The plan whose calls give `old` as `new` (see the module's docstring)."""
    blocks = tuple(_block_renamed(block, old, new) for block in plan.blocks)
    call_arguments = tuple(_param_renamed(p, old, new) for p in plan.call_arguments)
    block_arguments = tuple(new if name == old else name for name in plan.block_arguments)
    return dataclasses.replace(plan, blocks=blocks, call_arguments=call_arguments, block_arguments=block_arguments)


def _block_renamed(block: BlockPlan | LoopPlan | LoopStepPlan, old: str, new: str):
    inputs = tuple(_input_renamed(p, old, new) for p in block.inputs)
    if isinstance(block, LoopPlan):
        steps = tuple(_block_renamed(step, old, new) for step in block.steps)
        return dataclasses.replace(block, inputs=inputs, steps=steps)
    return dataclasses.replace(block, inputs=inputs)


def _input_renamed(param: Param, old: str, new: str) -> Param:
    """An input the call gives (no block produces it) named `old`: `new`, bound to the local `old`."""
    if param.name != old or param.producer is not None:
        return param
    return dataclasses.replace(param, name=new, local=old)


def _param_renamed(param: Param, old: str, new: str) -> Param:
    return dataclasses.replace(param, name=new) if param.name == old else param
