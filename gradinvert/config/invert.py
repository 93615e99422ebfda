"""Settings of ``gradinvert invert``: the attack (:class:`AttackConfig`) plus how the run is
given its labels and where it runs."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, field_validator

from gradinvert.config.attack import PRESETS, AttackConfig
from gradinvert.config.base import DEVICE_HELP, MAX_MEMORY_HELP

LEARNED = "git"  # one forward pass of a learned inverter: no preset, no iterative settings
RUN_FIELDS = ("attack", "inverter", "labels", "seed", "device", "max_memory", "checkpoint_every")


class InvertSettings(AttackConfig):
    """Everything ``invert`` needs besides its input and output files."""

    command: ClassVar[str] = "invert"

    attack: str = Field(
        "gradinversion",
        description=f"Preset: {', '.join(PRESETS)}, or {LEARNED} (a learned inverter).",
    )
    labels: list[int] | None = Field(
        None, description="Labels: inline '3,3,7,1' or a labels JSON file."
    )
    device: str = Field("auto", description=DEVICE_HELP)
    max_memory: str | None = Field(None, description=MAX_MEMORY_HELP)
    checkpoint_every: int = Field(100, ge=1, description="Iterations between checkpoints.")

    @field_validator("attack")
    @classmethod
    def _known_attack(cls, value: str) -> str:
        if value not in PRESETS and value != LEARNED:
            raise ValueError(f"choose one of {', '.join([*PRESETS, LEARNED])}")
        return value

    @classmethod
    def layer(
        cls, file_values: dict[str, Any], cli_values: dict[str, Any], notes: list[str]
    ) -> dict[str, Any]:
        given = {**file_values, **cli_values}
        if given.get("attack", cls.model_fields["attack"].default) != LEARNED:
            return super().layer(file_values, cli_values, notes)
        defaults = AttackConfig.model_fields
        iterative = [
            name
            for name, value in given.items()
            if name in defaults and name not in RUN_FIELDS and value != defaults[name].default
        ]
        if iterative:
            names = ", ".join("--" + name.replace("_", "-") for name in iterative)
            raise ValueError(
                f"--attack {LEARNED} is one forward pass of --inverter: {names} set an "
                f"iterative search (use --init git with an iterative --attack for that)"
            )
        return given

    def record(self) -> dict[str, Any]:
        """The settings a replay needs: all of them, or for ``git`` only those it reads."""
        values = super().record()
        if self.attack == LEARNED:
            values = {k: v for k, v in values.items() if k in (*RUN_FIELDS, "schema_version")}
        return values
