"""Split a helper's CFG-doubled result where `__call__` receives it, so that the concatenation the batched-CFG
detector undoes for the guider's batches is in `__call__`, where it can be undone:

    prompt_embeds = self._encode_prompt(prompt, device, do_classifier_free_guidance)

where `_encode_prompt` returns `torch.cat([negative_prompt_embeds, prompt_embeds])` when its flag holds, becomes

    prompt_embeds = self._encode_prompt(prompt, device, do_classifier_free_guidance)
    negative_prompt_embeds = None
    if do_classifier_free_guidance:
        negative_prompt_embeds, prompt_embeds = prompt_embeds.chunk(2)
        prompt_embeds = torch.cat([negative_prompt_embeds, prompt_embeds])

The same values: the halves of a batch concatenation of two equal-sized tensors are those two tensors (the
denoiser's batched call needs them equal-sized), and concatenating them again gives the batch back. The detector
then removes the concatenation (the guider pairs the halves) and keeps the split: the helper runs verbatim.

Which half is the unconditional one follows the prediction's chunks (the doubled batch goes to the denoiser in
that order). The uncond local is named `negative_<name>` (an argument of that name has been handed to the helper by
then), or a fresh variant when `__call__` reads that name after the call. A batch of more parts (three-way guidance:
`torch.cat([embeds, negative, negative])`) splits the same way into as many parts, the further ones named
`negative_<name>_2`, ...:

    if do_classifier_free_guidance:
        prompt_embeds, negative_prompt_embeds, negative_prompt_embeds_2 = prompt_embeds.chunk(3)
        prompt_embeds = torch.cat([prompt_embeds, negative_prompt_embeds, negative_prompt_embeds_2])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import libcst as cst

from ..analysis.loop_header import fresh_name
from ..cst.substitute import indented, replace_with_origins
from ..cst.tree_walk import walk


class HelperDoublesResults(Exception):  # noqa: N818 - a signal to the analysis, not an error
    """Raised by the batched-CFG detector when a helper returns results doubled for CFG: the analysis splits them
    where they are received (`with_halved_results`) and starts again."""

    def __init__(
        self,
        line: cst.SimpleStatementLine,
        names: Sequence[str],
        condition: cst.BaseExpression,
        positions: Sequence[int],
        at: object = None,
        listed: Sequence[str] = (),
    ):
        """`positions`: the part of the batch each guider batch takes, conditional first (`(1, 0)`: the source puts
        the unconditional values first). `at`: the line's source position, which finds the statement `line` stands
        for when the analysis rewrote it (an image encode split off the helper)."""
        super().__init__("a helper returns results doubled for CFG")
        self.line, self.names, self.condition, self.positions = line, tuple(names), condition, tuple(positions)
        self.at = at
        self.listed = tuple(listed)  # names holding lists of doubled values (one per IP-Adapter), split item by item


def with_halved_results(
    body: Sequence[cst.BaseStatement], found: HelperDoublesResults, taken: set[str], positions: Mapping = {}
) -> tuple[list[cst.BaseStatement], dict[cst.CSTNode, cst.CSTNode]]:
    """`body` with the split after `line` (one of its statements, or the one at its source position
    `found.at` in `positions`), and the origin of every new node ({new: old}: the line)."""
    position = next((at for at, statement in enumerate(body) if statement is found.line), None)
    line = body[position] if position is not None else None
    if position is None:
        # a line inside a top-level statement (under an input's test), or one the analysis rebuilt
        for at, statement in enumerate(body):
            lines = [n for n in walk(statement) if isinstance(n, cst.SimpleStatementLine)]
            inner = next((n for n in lines if n is found.line), None) or next(
                (n for n in lines if positions.get(n) == found.at), None
            )
            if inner is not None:
                position, line = at, inner
                break
    read_later = {node.value for s in body[position + 1 :] for node in walk(s) if isinstance(node, cst.Name)}
    everywhere = {node.value for s in body for node in walk(s) if isinstance(node, cst.Name)}
    added: list[cst.BaseStatement] = []
    split: list[cst.BaseStatement] = []
    for name in found.names:
        parts = [name] * len(found.positions)
        for batch, part in enumerate(found.positions[1:], start=1):
            if batch == 1:
                preferred = f"negative_{name}"
                uncond = preferred if preferred not in read_later else fresh_name(preferred, taken | everywhere)
            else:
                uncond = fresh_name(f"negative_{name}", taken | everywhere | set(parts))
            taken.add(uncond)
            parts[part] = uncond
            added.append(cst.parse_statement(f"{uncond} = None"))
        halves = ", ".join(parts)
        if name in found.listed:
            # each item split, then concatenated again item by item (`batched.paired_per_item` undoes that)
            uncond = parts[found.positions[1]]
            split.append(cst.parse_statement(f"{uncond} = [item.chunk(2)[{found.positions[1]}] for item in {name}]"))
            split.append(cst.parse_statement(f"{name} = [item.chunk(2)[{found.positions[0]}] for item in {name}]"))
            items = ["item", "item"]
            items[found.positions[1]] = f"{uncond}[index]"
            split.append(
                cst.parse_statement(
                    f"for index, item in enumerate({name}):\n    {name}[index] = torch.cat([{', '.join(items)}])\n"
                )
            )
            continue
        split.append(cst.parse_statement(f"{halves} = {name}.chunk({len(parts)})"))
        split.append(cst.parse_statement(f"{name} = torch.cat([{halves}])"))
    branch = cst.If(test=found.condition.deep_clone(), body=indented(split))
    new_statements = [*added, branch]
    replaced, origins = replace_with_origins(body, {line: cst.FlattenSentinel([line, *new_statements])})
    for statement in new_statements:
        origins.update({node: line for node in walk(statement)})
    return replaced, origins
