"""Settings of ``gradinvert report``: the audit's bars and the page's title."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from gradinvert.config.base import Settings
from gradinvert.config.evaluate import Gates


class ReportSettings(Settings):
    """Everything ``report`` needs besides its scores files and output file."""

    command: ClassVar[str] = "report"

    fail_above: Gates = Field(
        default_factory=list,
        description="The audit's bars (as in evaluate): each run's verdict is shown.",
    )
    title: str = Field("gradinvert audit", description="The page's title.")
