"""Turn a branch that hands the CFG flag to a helper defined outside the pipeline's file into an error, so that
the path the package can serve is written as plain statements the guidance detectors read:

    if self.free_noise_enabled:
        prompt_embeds, negative_prompt_embeds = self._encode_prompt_free_noise(
            prompt, num_frames, device, self.do_classifier_free_guidance
        )
    else:
        prompt_embeds, negative_prompt_embeds = self.encode_prompt(prompt, device)
        if self.do_classifier_free_guidance:
            prompt_embeds = torch.cat([negative_prompt_embeds, prompt_embeds])

becomes

    if self.free_noise_enabled:
        raise ValueError("`self.free_noise_enabled` holds: AnimateDiffPipeline._encode_prompt_free_noise ...")
    prompt_embeds, negative_prompt_embeds = self.encode_prompt(prompt, device)
    if self.do_classifier_free_guidance:
        prompt_embeds = torch.cat([negative_prompt_embeds, prompt_embeds])

The helper (a mixin's or a base class's method) is not in the file, so whether it batches its results for CFG
cannot be seen; given the flag, it may, and a guider needs each condition's value on its own. The package raises
where the source would call it, naming the standard pipeline to use instead; with the test false, both run the
`else` side, now the statements after the `if`, unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import libcst as cst

from ..cst.substitute import replace_with_origins
from ..frontend.parse import code


class HelperOutsideTheFile(Exception):  # noqa: N818 - a signal to the analysis, not an error
    """Raised by the batched-CFG detector when a top-level `if` calls, with the CFG flag, a helper the pipeline's
    file does not define: the analysis turns the branch into an error (`with_branch_raising`) and starts again."""

    def __init__(self, branch: cst.If, helper: str, pipeline: str):
        super().__init__("a helper defined outside the file is given the CFG flag")
        self.branch, self.helper, self.pipeline = branch, helper, pipeline

    @property
    def message(self) -> str:
        test = code(self.branch.test).strip()
        return (
            f"`{test}` holds (in {self.pipeline}.__call__): {self.pipeline}.{self.helper}, defined outside the "
            "pipeline's file, is given the "
            "classifier-free-guidance flag and may batch its results for it, which this generated package cannot "
            f"pair for a guider. Use {self.pipeline} for this."
        )


def with_branch_raising(
    body: Sequence[cst.BaseStatement], found: HelperOutsideTheFile
) -> tuple[list[cst.BaseStatement], dict[cst.CSTNode, cst.CSTNode]]:
    """`body` with `found.branch` raising and its `else` side (if any) after it, and the origin of every new node
    ({new: old})."""
    branch = found.branch
    raising = branch.with_changes(
        body=cst.IndentedBlock(body=[cst.parse_statement(f"raise ValueError({found.message!r})\n")]),
        orelse=None,
    )
    rest: list[cst.BaseStatement] = []
    if isinstance(branch.orelse, cst.Else):
        rest = list(branch.orelse.body.body)
    elif isinstance(branch.orelse, cst.If):
        rest = [branch.orelse.with_changes(leading_lines=())]
    statements, origins = replace_with_origins(body, {branch: cst.FlattenSentinel([raising, *rest])})
    return statements, {**origins, raising: branch}
