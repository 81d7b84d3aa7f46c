"""A value doubled for CFG halved after the statement that last computes it on the doubled batch.

    halving_after(line, ("control_image",), flag)
    # control_image = control_image * self.vae.config.scaling_factor
    # ->
    # control_image = control_image * self.vae.config.scaling_factor
    # if self.do_classifier_free_guidance:
    #     control_image = control_image[: control_image.shape[0] // 2]

The first half of a batch of two equal halves is one of them (see `analysis.guidance.kept_repeats`); `flag` is the
expression that made the helper repeat, so the halving happens exactly when the repeat did. Halves that differ (each
drew noise of its own) are split, each the value of its own guider batch:

    split_after(line, ("control_image",), ("negative_control_image",), flag, uncond_index=0)
    # control_image = control_image * self.vae.config.scaling_factor
    # ->
    # control_image = control_image * self.vae.config.scaling_factor
    # if self.do_classifier_free_guidance:
    #     negative_control_image, control_image = control_image.chunk(2)
    # else:
    #     negative_control_image = None
"""

from __future__ import annotations

from collections.abc import Sequence

import libcst as cst


def halving_after(
    statement: cst.BaseStatement, names: Sequence[str], flag: cst.BaseExpression, listed: bool = False
) -> cst.FlattenSentinel:
    """(`listed`: each name holds a list of doubled values, halved one by one)"""
    if listed:
        halvings = [
            cst.parse_statement(f"{name} = [item[: item.shape[0] // 2] for item in {name}]\n") for name in names
        ]
    else:
        halvings = [cst.parse_statement(f"{name} = {name}[: {name}.shape[0] // 2]\n") for name in names]
    halving = cst.If(test=flag.deep_clone(), body=cst.IndentedBlock(body=halvings))
    return cst.FlattenSentinel([statement, halving])


def split_after(
    statement: cst.BaseStatement,
    names: Sequence[str],
    negatives: Sequence[str],
    flag: cst.BaseExpression,
    uncond_index: int,
    listed: bool = False,
) -> cst.FlattenSentinel:
    """(`listed`: each name holds a list of doubled values, split one by one into two lists)"""
    splits = []
    for name, negative in zip(names, negatives, strict=True):
        if listed:
            splits.append(cst.parse_statement(f"{negative} = [item.chunk(2)[{uncond_index}] for item in {name}]\n"))
            splits.append(cst.parse_statement(f"{name} = [item.chunk(2)[{1 - uncond_index}] for item in {name}]\n"))
            continue
        halves = [name, name]
        halves[uncond_index] = negative
        splits.append(cst.parse_statement(f"{halves[0]}, {halves[1]} = {name}.chunk(2)\n"))
    unset = [cst.parse_statement(f"{negative} = None\n") for negative in negatives]
    split = cst.If(
        test=flag.deep_clone(),
        body=cst.IndentedBlock(body=splits),
        orelse=cst.Else(body=cst.IndentedBlock(body=unset)),
    )
    return cst.FlattenSentinel([statement, split])
