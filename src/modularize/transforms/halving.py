"""A value doubled for CFG halved after the statement that last computes it on the doubled batch.

    halving_after(line, ("control_image",), flag)
    # control_image = control_image * self.vae.config.scaling_factor
    # ->
    # control_image = control_image * self.vae.config.scaling_factor
    # if self.do_classifier_free_guidance:
    #     control_image = control_image[: control_image.shape[0] // 2]

The first half of a batch of two equal halves is one of them (see `analysis.guidance.kept_repeats`); `flag` is the
expression that made the helper repeat, so the halving happens exactly when the repeat did.
"""

from __future__ import annotations

from collections.abc import Sequence

import libcst as cst


def halving_after(statement: cst.BaseStatement, names: Sequence[str], flag: cst.BaseExpression) -> cst.FlattenSentinel:
    halvings = [cst.parse_statement(f"{name} = {name}[: {name}.shape[0] // 2]\n") for name in names]
    halving = cst.If(test=flag.deep_clone(), body=cst.IndentedBlock(body=halvings))
    return cst.FlattenSentinel([statement, halving])
