"""Settings of ``gradinvert demo``: how hard the demo's attack tries, and where it runs."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from gradinvert.config.base import DEVICE_HELP, Settings


class DemoSettings(Settings):
    """The demo's budget (defaults: about 5 minutes on 2 CPU cores)."""

    command: ClassVar[str] = "demo"

    iterations: int = Field(1000, ge=1, description="Iterations per seed.")
    seeds: int = Field(4, ge=1, description="Seeds optimized together.")
    seed: int = Field(0, description="Random seed; recorded in the outputs.")
    device: str = Field("auto", description=DEVICE_HELP)
