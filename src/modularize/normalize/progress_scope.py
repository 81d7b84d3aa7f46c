"""Move what a progress bar's `with` block holds besides the denoising loop out of the block, so that the loop is the
block's one compound statement, the shape the stage segmentation reads:

    with self.progress_bar(total=num_inference_steps) as progress_bar:
        for i, t in enumerate(timesteps):
            ...
            progress_bar.update()
        if not output_type == "latent":
            image = self.movq.decode(latents, force_not_quantize=True)["sample"]

becomes

    with self.progress_bar(total=num_inference_steps) as progress_bar:
        for i, t in enumerate(timesteps):
            ...
            progress_bar.update()
    if not output_type == "latent":
        image = self.movq.decode(latents, force_not_quantize=True)["sample"]

The same values: a progress bar only displays, entering and leaving it computes nothing the statements read, so
running them outside it changes what is shown when, not what is computed. Only statements that do not read the
name the bar is bound to move, and only from a `with` whose items are all `self.progress_bar(...)`; statements
before the loop move above the block, statements after it below.
"""

from __future__ import annotations

from collections.abc import Sequence

import libcst as cst
import libcst.matchers as m

from ..analysis.segment import is_timestep_loop
from ..cst.dataflow import names_read
from ..cst.match_filter import matches

_PROGRESS_BAR = m.WithItem(item=m.Call(func=m.Attribute(value=m.Name("self"), attr=m.Name("progress_bar"))))


def progress_scopes(body: Sequence[cst.BaseStatement]) -> list[cst.With]:
    """The top-level progress-bar blocks holding the loop over timesteps and other compound statements."""
    found = []
    for statement in body:
        if not isinstance(statement, cst.With) or not all(matches(i, _PROGRESS_BAR) for i in statement.items):
            continue
        inner = list(statement.body.body)
        loops = [s for s in inner if is_timestep_loop(s)]
        others = [s for s in inner if s not in loops]
        if len(loops) == 1 and any(not isinstance(s, cst.SimpleStatementLine) for s in others):
            found.append(statement)
    return found


def moved_out(block: cst.With) -> list[cst.BaseStatement] | None:
    """[what moves above, the block holding the loop, what moves below], or None when a statement to move reads
    the bar."""
    inner = list(block.body.body)
    at = next(index for index, statement in enumerate(inner) if is_timestep_loop(statement))
    bars = {item.asname.name.value for item in block.items if item.asname and isinstance(item.asname.name, cst.Name)}
    before, after = inner[:at], inner[at + 1 :]
    if any(bars & set(names_read(statement)) for statement in (*before, *after)):
        return None
    kept = block.with_changes(body=block.body.with_changes(body=[inner[at]]))
    return [*before, kept, *after]
