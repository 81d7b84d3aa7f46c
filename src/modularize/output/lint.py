"""Generated packages linted as a diffusers maintainer lints them: `ruff check` with diffusers' own rule selection.

    lint_packages(root)  ->  {"<package dir>": ("denoise.py:12:5: F841 Local variable `x` is assigned ...", ...)}

One ruff process for every package under `root` (a directory of package directories), run `--isolated` with the
selection on the command line, so no configuration of the user's changes the verdict.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from ..emit.format import ruff_binary

# diffusers' `[tool.ruff.lint]`: pycodestyle, pyflakes, mccabe and isort, with the rules it ignores
DIFFUSERS_RUFF = (
    "--isolated",
    "--line-length",
    "119",
    "--select",
    "C,E,F,I,W",
    "--ignore",
    "C901,E501,E741,F402,F823",
)


def lint_packages(root: Path) -> dict[str, tuple[str, ...]]:
    """The problems ruff finds in each package directory under `root` (packages without problems are absent)."""
    command = [ruff_binary(), "check", *DIFFUSERS_RUFF, "--no-cache", "--output-format", "json", "--exit-zero", "."]
    result = subprocess.run(command, cwd=root, capture_output=True, text=True, check=True)
    found: dict[str, list[str]] = {}
    for problem in json.loads(result.stdout or "[]"):
        path = Path(problem["filename"]).resolve().relative_to(root.resolve())
        where = f"{'/'.join(path.parts[1:])}:{problem['location']['row']}:{problem['location']['column']}"
        found.setdefault(path.parts[0], []).append(f"{where}: {problem['code']} {problem['message']}")
    return {package: tuple(problems) for package, problems in found.items()}
