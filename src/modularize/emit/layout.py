"""The file layout of a generated package, as diffusers lays out its own `modular_pipelines/<model>/`."""

from __future__ import annotations

from ..kinds import StageKind

LEAF_FILES = ("encoders.py", "before_denoise.py", "denoise.py", "decoders.py")
FIXED_FILES = ("__init__.py", "modular_pipeline.py", *LEAF_FILES)
BLOCKS_FILE_PREFIX = "modular_blocks_"  # + "<model>.py"

FILE_OF_KIND = {
    StageKind.INPUT: "before_denoise.py",
    StageKind.ENCODE: "encoders.py",
    StageKind.BEFORE_DENOISE: "before_denoise.py",
    StageKind.DENOISE: "denoise.py",
    StageKind.DECODE: "decoders.py",
}


def blocks_file(package: str) -> str:
    """`modular_stable_diffusion` -> `modular_blocks_stable_diffusion.py`."""
    return f"{BLOCKS_FILE_PREFIX}{package[len('modular_') :]}.py"


def is_complete(names: set[str]) -> bool:
    """Every fixed file and exactly one blocks file."""
    blocks = [name for name in names if name.startswith(BLOCKS_FILE_PREFIX)]
    return set(FIXED_FILES) <= names and len(blocks) == 1
