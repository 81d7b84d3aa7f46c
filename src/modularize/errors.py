"""Errors the converter reports to users.

Refusals are values, not crashes: every problem the user can act on is a `ModularizeError` carrying where it was
found and what to do about it. The CLI prints `str(error)` as one line and exits with `error.exit_code`; nothing
else ever reaches the user as a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass

EXIT_OK = 0
EXIT_FAILED = 1  # a check or verification ran and found differences
EXIT_USAGE = 2  # bad command line or bad input file
EXIT_REFUSED = 3  # the input is valid Python but uses a construct the converter cannot convert yet
EXIT_INTERNAL = 70  # a bug in modularize itself (EX_SOFTWARE)


@dataclass(frozen=True)
class Location:
    path: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        if self.line:
            return f"{self.path}:{self.line}:{self.column + 1}"
        return self.path


class ModularizeError(Exception):
    """A user-facing error: one line naming where, what and the fix."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, location: Location | None = None, fix: str | None = None):
        super().__init__(message)
        self.message = message
        self.location = location
        self.fix = fix

    def __str__(self) -> str:
        parts = []
        if self.location is not None:
            parts.append(f"{self.location}: ")
        parts.append(self.message)
        if self.fix:
            parts.append(f" (fix: {self.fix})")
        return "".join(parts)


class InputError(ModularizeError):
    """The input cannot be read or is not a pipeline module (missing file, syntax error, no pipeline class)."""


class OutputError(ModularizeError):
    """The output location cannot be written safely (hand-edited or foreign files in the way)."""


class ConversionError(ModularizeError):
    """A construct the converter cannot handle: where it is, what it is and why."""

    exit_code = EXIT_REFUSED

    def __init__(self, message: str, location: Location | None = None, construct: str = "", fix: str | None = None):
        super().__init__(message, location, fix)
        self.construct = construct

    def __str__(self) -> str:
        text = super().__str__()
        if self.construct:
            text += f" [construct: {self.construct}]"
        return text
