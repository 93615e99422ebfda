"""Settings of ``gradinvert labels``: the restoration method and what the update leaves out."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from gradinvert.config.base import MAX_MEMORY_HELP, Settings

Method = Literal["auto", "idlg", "yin", "ilrg", "llg", "bias"]


class LabelsSettings(Settings):
    """Everything ``labels`` needs besides its input and output files."""

    command: ClassVar[str] = "labels"

    method: Method = Field("auto", description="auto, idlg, yin, ilrg, llg or bias (see below).")
    batch_size: int | None = Field(
        None, ge=0, description="Batch size, when the update does not record it."
    )
    max_memory: str | None = Field(
        None,
        description=MAX_MEMORY_HELP,
    )
