"""The converter's vocabulary of kinds: every decision that picks one of a fixed set of options is an `Enum`.

Members are `str`-valued (Python 3.10 has no `StrEnum`): they compare, hash, format and serialize to JSON as their
value, so `modularize plan --json` and generated text read the same as before, while code compares members:

    StageKind.DENOISE == "denoise"            -> True
    f"{StageKind.BEFORE_DENOISE}"             -> "before_denoise"
    json.dumps({"kind": StageKind.ENCODE})    -> '{"kind": "encode"}'
"""

from __future__ import annotations

from enum import Enum


class Kind(str, Enum):
    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class StageKind(Kind):
    """Which part of `__call__` a stage is; it decides the block's file (`emit.layout.FILE_OF_KIND`)."""

    INPUT = "input"
    ENCODE = "encode"
    BEFORE_DENOISE = "before_denoise"
    DENOISE = "denoise"
    DECODE = "decode"


class CfgKind(Kind):
    """How the source runs its guidance batches, which decides how the generated denoiser runs guider batches."""

    BATCHED = "batched"  # one model call on `torch.cat([uncond, cond])`: merged calls when the guider allows
    BRANCHED = "branched"  # batched, but each condition prepares its own arguments in its own branch
    SEPARATE = "separate"  # one model call per condition


class GuidancePattern(Kind):
    """The pattern `modularize plan` names (its `guidance:` line, before any `+custom-combine` / `+distilled`)."""

    BATCHED_CFG = "batched-cfg"
    SEPARATE_PASSES = "separate-passes"
    NONE = "none"


class DefinitionKind(Kind):
    """What a module-level statement of the source is, for copying it into a generated file."""

    IMPORT = "import"
    FUNCTION = "function"
    CLASS = "class"
    STATEMENT = "statement"
