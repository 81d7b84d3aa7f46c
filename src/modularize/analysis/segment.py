"""Split the top-level statements of `__call__` into stages.

Stage boundaries are the numbered comments diffusers pipelines put above their steps (`# 4. Prepare timesteps`),
matched by *label*, not number: the loop is numbered anywhere from 5 to 10 and some pipelines prepare timesteps
after latents. Where comments are missing, anchors decide: `self.encode_prompt(...)`, `retrieve_timesteps` /
`set_timesteps`, `self.prepare_latents`, the loop over timesteps, `self.vae.decode`.

    # 3. Encode input prompt            -> Segment(label="3. Encode input prompt", kind=StageKind.ENCODE, ...)
    prompt_embeds, ... = self.encode_prompt(...)
    # 4. Prepare timesteps              -> Segment(label="4. Prepare timesteps", kind=StageKind.BEFORE_DENOISE, ...)
    timesteps, ... = retrieve_timesteps(...)

Statements after the denoising loop become their own `decode` segment.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import libcst as cst
import libcst.matchers as m

from ..cst.match_filter import matches
from ..cst.tree_walk import findall, walk
from ..frontend.parse import SourceModule, snippet
from ..kinds import StageKind


@dataclass(frozen=True)
class Segment:
    label: str  # the stage comment without `#`, or a name given by an anchor
    kind: StageKind
    statements: tuple[cst.BaseStatement, ...]
    loop: cst.BaseCompoundStatement | None = None  # the denoising loop statement, for the denoise segment
    key: str | None = None  # the block's name when not derived from the label


def stage_label(statement: cst.CSTNode) -> str | None:
    """The numbered stage comment above a statement (`# 4. Prepare timesteps` -> `4. Prepare timesteps`)."""
    for line in getattr(statement, "leading_lines", ()):
        if line.comment is None:
            continue
        text = line.comment.value.lstrip("#").strip()
        number, rest = _number_and_title(text)
        if number and rest:
            return f"{number} {rest}"
    return None


def _number_and_title(text: str) -> tuple[str, str]:
    """`4. Prepare timesteps` and `4.Prepare timesteps` -> ("4.", "Prepare timesteps"); `Encode` -> ("", "Encode")."""
    end = 0
    while end < len(text) and (text[end].isdigit() or text[end] == "."):
        end += 1
    number, rest = text[:end], text[end:]
    if not any(c.isdigit() for c in number) or not (number.endswith(".") or rest.startswith(" ")):
        return "", text
    return number, rest.strip()


def label_title(label: str) -> str:
    """`6. Prepare extra step kwargs. TODO: ...` -> `Prepare extra step kwargs`."""
    rest = _number_and_title(label)[1] or label
    return rest.split(". ")[0].split(":")[0].strip().rstrip(".")


def kind_of_label(label: str) -> StageKind:
    title = label_title(label).lower()
    if "denois" in title or "loop" in title:
        return StageKind.DENOISE
    if "decode" in title or "post-process" in title or "postprocess" in title:
        return StageKind.DECODE
    if "encode" in title:
        return StageKind.ENCODE
    if "check" in title or "call param" in title or "default height" in title or "define" in title:
        return StageKind.INPUT
    return StageKind.BEFORE_DENOISE


def is_timestep_loop(node: cst.CSTNode) -> bool:
    """A loop over timesteps, recognized by what it does, whatever it iterates over: its own body steps a
    scheduler (`for t in ticks: ... x = self.clock.step(pred, t, x).prev_sample`); or, as diffusers spells it, it
    iterates over something named `timesteps` (`for i, t in enumerate(self.progress_bar(timesteps))`)."""
    if not isinstance(node, cst.For):
        return False
    return "timesteps" in cst.Module(body=[]).code_for_node(node.iter) or _steps_in_own_body(node)


_INNER_SCOPES = (cst.For, cst.While, cst.FunctionDef, cst.ClassDef, cst.Lambda)
_CALL = m.Call()
_STEP_CALL = m.Call(func=m.Attribute(attr=m.Name("step")), args=[m.AtLeastN(n=1)])


def _steps_in_own_body(loop: cst.For | cst.While) -> bool:
    """A `<scheduler>.step(...)` call in the loop's body outside the loops and functions nested in it (an outer
    loop around the denoising loop does not step the scheduler itself)."""
    inner = walk(loop.body, skip=lambda n: type(n) in _INNER_SCOPES)
    return any(isinstance(n, cst.Call) and matches(n, _STEP_CALL) for n in inner)


def find_timestep_loop(statement: cst.CSTNode) -> cst.For | None:
    """The loop over timesteps at the top of a statement, looking through `with` wrappers and outer loops.

    An outer loop around it (FreeInit's iterations, an ensemble's members) holds it in one statement of its body;
    its other statements run once per outer iteration, around the denoising loop (`outer_loop_statements`):

        for free_init_iter in range(num_free_init_iters):        <- the statement
            latents, timesteps = self._apply_free_init(...)
            with self.progress_bar(total=n) as progress_bar:
                for i, t in enumerate(timesteps):                 <- the loop over timesteps
    """
    node = statement
    while not is_timestep_loop(node):
        if not (isinstance(node, cst.With) or (isinstance(node, cst.For) and node.orelse is None)):
            return None
        inner = [s for s in node.body.body if find_timestep_loop(s) is not None]
        if len(inner) != 1:
            return None
        node = inner[0]
    return node


def runs_around(statement: cst.CSTNode, loop: cst.For) -> bool:
    """Whether `statement` runs more than the loop and the set-up before it: an outer loop, or statements after the
    loop inside the `with` blocks around it (what `find_timestep_loop` looked through). Those run in the loop
    wrapper between the steps' runs, on what the steps computed."""
    node = statement
    while node is not loop:
        if isinstance(node, cst.For):
            return True
        body = list(node.body.body)
        at = next(i for i, s in enumerate(body) if any(n is loop for n in walk(s)))
        if body[at + 1 :] or any(not isinstance(s, cst.SimpleStatementLine) for s in body[:at]):
            return True
        node = body[at]
    return False


class _CalledNames:
    """What a statement calls, by the last name of the callee (`self.encode_prompt(...)` -> `encode_prompt`)."""

    def __init__(self, statement: cst.CSTNode) -> None:
        self.own: set[str] = set()  # `self.<name>(...)`
        self.attributes: set[str] = set()  # `<anything>.<name>(...)`
        self.functions: set[str] = set()  # `<name>(...)`
        for node in findall(statement, _CALL):  # (the calls listed by class: no walk over every node)
            func = node.func
            if type(func) is cst.Attribute:
                self.attributes.add(func.attr.value)
                if type(func.value) is cst.Name and func.value.value == "self":
                    self.own.add(func.attr.value)
            elif type(func) is cst.Name:
                self.functions.add(func.value)


def _nested_timestep_loop(body: Sequence[cst.BaseStatement]) -> tuple[cst.BaseStatement, cst.For] | None:
    """(the top-level statement holding it, the loop) for the first loop over timesteps that steps the scheduler."""
    for statement in body:
        for loop in findall(statement, m.For()):
            if is_timestep_loop(loop) and _steps_scheduler(loop):
                return statement, loop
    return None


def _steps_scheduler(statement: cst.CSTNode) -> bool:
    called = _CalledNames(statement)
    return "step" in called.attributes


def _anchor_kind(statement: cst.CSTNode) -> StageKind | None:
    called = _CalledNames(statement)
    if "encode_prompt" in called.own:
        return StageKind.ENCODE
    if "retrieve_timesteps" in called.functions or "set_timesteps" in called.attributes:
        return StageKind.BEFORE_DENOISE
    if "prepare_latents" in called.own:
        return StageKind.BEFORE_DENOISE
    if "decode" in called.attributes:
        return StageKind.DECODE
    return None


def segment_call(
    source: SourceModule, body: Sequence[cst.BaseStatement], built: frozenset[str] = frozenset()
) -> list[Segment]:
    """Group `__call__`'s top-level statements into labelled stages in source order. In a `__call__` without a
    denoising loop, a statement calling a pipeline `__init__` built (`built`: `self.prior_pipe`) is a stage of its
    own, named by the attribute: a block a user can swap."""
    groups: list[tuple[str | None, list[cst.BaseStatement]]] = []
    for statement in body:
        label = stage_label(statement)
        if label is not None or not groups:
            groups.append((label, [statement]))
        else:
            groups[-1][1].append(statement)

    loops = [(g, s) for g, (_, statements) in enumerate(groups) for s in statements if find_timestep_loop(s)]
    # a loop over timesteps that never steps the scheduler prepares something per step (ControlNet's
    # `controlnet_keep`): an ordinary statement, not a second denoising loop
    stepping = [(g, s) for g, s in loops if _steps_scheduler(s)]
    loops = stepping or loops
    if not loops:
        nested = _nested_timestep_loop(body)
        if nested is not None:
            outer, loop = nested
            raise source.refuse(
                loop,
                f"the denoising loop is not a top-level statement of `__call__`: it sits inside `{snippet(outer, 60)}`"
                " (an outer loop, a branch, or a `with` that also holds other statements)",
            )
        stepping_while = next((w for s in body for w in findall(s, m.While()) if _steps_in_own_body(w)), None)
        if stepping_while is not None:
            raise source.refuse(
                stepping_while,
                "the denoising loop is a `while` loop (it steps the scheduler); only a `for` loop over the timesteps"
                " can become the denoise loop's blocks",
            )
        # no denoising loop at all: the pipeline's stages are plain blocks (the analysis decides whether that is
        # the whole pipeline or its loop hides in a helper)
        segments: list[Segment] = []
        after = None  # the built pipeline the last call went to: what follows it prepares its results
        for label, statements in groups:
            for run in _runs_around_built_calls(statements, built):
                first = run[0] is statements[0]
                segments += _loopless_segments(label if first else None, run, built, after)
                after = (_calls_built(run[0], built) if len(run) == 1 else None) or after
        return segments
    if len(loops) > 1:
        raise source.refuse(loops[1][1], "more than one loop over timesteps in `__call__` (nested or chained loops)")
    loop_group, loop_statement = loops[0]

    segments: list[Segment] = []
    after_loop = False
    for index, (label, statements) in enumerate(groups):
        if index == loop_group:
            position = statements.index(loop_statement)
            before = statements[:position]
            if before and (label is None or kind_of_label(label) != StageKind.DENOISE):
                # an unlabelled `__call__` (or a stage that happens to hold the loop): its statements before the
                # loop are stages of their own, cut at the anchors, rather than part of the denoise block
                kind = (
                    kind_of_label(label) if label is not None else (segments[-1].kind if segments else StageKind.INPUT)
                )
                parts = _split_at_anchors(label, kind if kind in _PROGRESSION else StageKind.BEFORE_DENOISE, before)
                segments.extend(Segment(part_label, part_kind, tuple(part)) for part_label, part_kind, part in parts)
                label, before = None, []
            segments.append(
                Segment(label or "Denoising loop", StageKind.DENOISE, (*before, loop_statement), loop_statement)
            )
            rest = statements[position + 1 :]
            if rest:
                segments.append(Segment("Decode", StageKind.DECODE, tuple(rest)))
            after_loop = True
            continue
        if after_loop:
            segments.append(Segment(label or "Decode", StageKind.DECODE, tuple(statements)))
            continue
        if label is not None:
            kind = kind_of_label(label)
            if kind in (StageKind.DENOISE, StageKind.DECODE):
                kind = StageKind.BEFORE_DENOISE  # only the loop itself is the denoise stage; decoding happens after it
            parts = (
                _split_at_anchors(label, kind, statements) if kind == StageKind.INPUT else [(label, kind, statements)]
            )
        else:
            parts = _split_at_anchors(None, segments[-1].kind if segments else StageKind.INPUT, statements)
        segments.extend(Segment(part_label, part_kind, tuple(part)) for part_label, part_kind, part in parts)
    return segments


_PROGRESSION = (StageKind.INPUT, StageKind.ENCODE, StageKind.BEFORE_DENOISE)


def _calls_built(statement: cst.BaseStatement, built: frozenset[str]) -> str | None:
    """The built pipeline a statement calls (`self.prior_pipe(...)` -> "prior_pipe"), or None."""
    if not built:
        return None
    for call in findall(statement, m.Call(func=m.Attribute(value=m.Name("self"), attr=m.Name()))):
        if call.func.attr.value in built:
            return call.func.attr.value
    return None


def _runs_around_built_calls(statements: Sequence[cst.BaseStatement], built: frozenset[str]) -> list[list]:
    """The statements cut before and after each one calling a built pipeline."""
    runs: list[list] = [[]]
    for statement in statements:
        if _calls_built(statement, built) is not None:
            runs += [[statement], []]
        else:
            runs[-1].append(statement)
    return [run for run in runs if run] or [list(statements)]


def _loopless_segments(
    label: str | None, run: Sequence[cst.BaseStatement], built: frozenset[str], after: str | None
) -> list[Segment]:
    """A run of statements of a `__call__` without a denoising loop: one calling a built pipeline (a stage named
    by it), statements after such a call (what it returned, prepared for what follows), or stages by anchors."""
    called = _calls_built(run[0], built) if len(run) == 1 else None
    if called is not None:
        return [Segment(label or f"Call {called}", StageKind.BEFORE_DENOISE, tuple(run), key=called)]
    if label is None and after is not None:
        return [Segment(f"After {after}", StageKind.BEFORE_DENOISE, tuple(run))]
    return [
        Segment(part_label, part_kind, tuple(part))
        for part_label, part_kind, part in _split_at_anchors(label, _loopless_kind(label), run)
    ]


def _loopless_kind(label: str | None) -> StageKind:
    """A stage of a `__call__` without a denoising loop: a stage named like one (`# 5. Denoise`) prepares."""
    kind = kind_of_label(label) if label is not None else StageKind.INPUT
    return StageKind.BEFORE_DENOISE if kind == StageKind.DENOISE else kind


def _split_at_anchors(label: str | None, kind: StageKind, statements: Sequence[cst.BaseStatement]):
    """Cut a stage where an anchor moves it on (input -> encode -> prepare), so a stage labelled `2. Define call
    parameters` that also encodes the prompt gives an input block and an encode block:

        # 2. Define call parameters          -> ("2. Define call parameters", StageKind.INPUT, [batch_size = ..., ...])
        batch_size = ...
        prompt_embeds = self.encode_prompt(...)  -> ("Encode input prompt", StageKind.ENCODE, [prompt_embeds = ..., ...])

    Anchors only move forward; a later anchor of an earlier kind stays in the current part."""
    parts: list[tuple[str, str, list[cst.BaseStatement]]] = []
    current_label, current_kind, current = label, kind, []
    for statement in statements:
        anchored = _anchor_kind(statement)
        moves_on = anchored in _PROGRESSION and current_kind in _PROGRESSION
        if moves_on and _PROGRESSION.index(anchored) > _PROGRESSION.index(current_kind):
            if current:
                parts.append((current_label or _anchor_label(current_kind), current_kind, current))
            current_label, current_kind, current = None, anchored, []
        current.append(statement)
    parts.append((current_label or _anchor_label(current_kind), current_kind, current))
    return parts


def _anchor_label(kind: StageKind) -> str:
    return _ANCHOR_LABELS.get(kind, str(kind))


_ANCHOR_LABELS = {
    StageKind.INPUT: "Inputs",
    StageKind.ENCODE: "Encode input prompt",
    StageKind.BEFORE_DENOISE: "Prepare",
    StageKind.DECODE: "Decode",
}
