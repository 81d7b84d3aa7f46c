"""What every command prints with: one-line messages on stderr, paths relative to where the user is."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def relative(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)
