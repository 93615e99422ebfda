"""Error types that carry the exit code a shell script can branch on (see README, "Exit codes")."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Documented process exit codes (sysexits-style)."""

    OK = 0
    GATE_TRIPPED = 1
    USAGE = 2
    INVALID_INPUT = 65
    MISSING_INPUT = 66
    UNAVAILABLE = 69
    INTERNAL = 70
    INTERRUPTED = 130
    TERMINATED = 143


class GradinvertError(Exception):
    """Base class: a user-facing problem with a one-line message and an exit code."""

    exit_code: ExitCode = ExitCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(GradinvertError):
    """The command line asks for something inconsistent."""

    exit_code = ExitCode.USAGE


class InvalidInputError(GradinvertError):
    """An input file is corrupt, of the wrong schema, or does not fit the model."""

    exit_code = ExitCode.INVALID_INPUT


class MissingInputError(GradinvertError):
    """An input file or folder does not exist."""

    exit_code = ExitCode.MISSING_INPUT


class UnavailableError(GradinvertError):
    """A needed resource (e.g. LPIPS backbone weights, a CUDA device) is unavailable."""

    exit_code = ExitCode.UNAVAILABLE


def one_line(text: str, limit: int = 160) -> str:
    """``text`` (e.g. a library's exception message) on one line of at most ``limit``
    characters, for an error message that must stay one stderr line."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
