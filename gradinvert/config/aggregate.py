"""Settings of ``gradinvert aggregate``: what bounds the run (the members and the output are
files named on the command line)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from gradinvert.config.base import MAX_MEMORY_HELP, Settings


class AggregateSettings(Settings):
    """Everything ``aggregate`` needs besides its input and output files."""

    command: ClassVar[str] = "aggregate"

    max_memory: str | None = Field(
        None,
        description=MAX_MEMORY_HELP,
    )
