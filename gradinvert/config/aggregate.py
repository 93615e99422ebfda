"""Settings of ``gradinvert aggregate``: what bounds the run (the members and the output are
files named on the command line)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from gradinvert.config.base import Settings


class AggregateSettings(Settings):
    """Everything ``aggregate`` needs besides its input and output files."""

    command: ClassVar[str] = "aggregate"

    max_memory: str | None = Field(
        None,
        description="Refuse (exit 69) runs estimated to need more memory than this, e.g. 8GB, "
        "512MiB or none (no bound). Default: 80% of the RAM.",
    )
