"""Settings of ``gradinvert train-inverter``: defaults a 2-core CPU trains in minutes (GIT) or
LTI's (the MLP baseline)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from gradinvert.config.base import DEVICE_HELP, MAX_MEMORY_HELP, SEED_HELP, Settings

DEFAULT_LR = {"git": 1e-3, "mlp": 1e-4}
# What makes a training run (its run_id, the pairs cache's key, the inverter file's record):
# not the images' --size (the images are fingerprinted as given to training) nor the machine.
TRAINING_FIELDS = (
    "arch",
    "pairs",
    "epochs",
    "batch",
    "lr",
    "val_fraction",
    "patience",
    "augment",
    "seed",
    "width",
    "max_channels",
    "hidden",
    "max_inputs",
)


class TrainInverterSettings(Settings):
    """Everything ``train-inverter`` needs besides its template, images and outputs."""

    command: ClassVar[str] = "train-inverter"

    size: int | None = Field(None, ge=1, description="Resize the shorter side and center-crop.")
    arch: Literal["git", "mlp"] = Field("git", description="git or mlp.")
    pairs: int = Field(1000, ge=1, description="Training pairs.")
    epochs: int = Field(20, ge=1, description="Passes over the pairs.")
    batch: int = Field(32, ge=1, description="Pairs per optimizer step.")
    lr: float | None = Field(
        None, gt=0, allow_inf_nan=False, description="Adam lr (default: git 1e-3, mlp 1e-4)."
    )
    val_fraction: float = Field(
        0.1, gt=0, lt=1, description="Share of the images kept for validation."
    )
    patience: int = Field(5, ge=1, description="Epochs without improvement before stopping.")
    augment: str = Field("", description="Defenses on every pair: noise:0.1,prune:0.99,...")
    width: int = Field(32, ge=1, description="git: refine-block channels.")
    max_channels: int = Field(8, ge=1, description="git: project larger layers' ∇W to this many.")
    hidden: int = Field(3000, ge=1, description="mlp: hidden units.")
    max_inputs: int = Field(2**16, ge=16, description="mlp: count-sketch longer updates to this.")
    seed: int = Field(0, description=SEED_HELP)
    device: str = Field("auto", description=DEVICE_HELP)
    max_memory: str | None = Field(None, description=MAX_MEMORY_HELP)

    @field_validator("augment")
    @classmethod
    def _known_defenses(cls, value: str) -> str:
        if value:
            from gradinvert.inverter.train import parse_augment
            from gradinvert.runtime.errors import UsageError

            try:
                parse_augment(value)
            except UsageError as exc:
                raise ValueError(exc.message) from None
        return value

    def training_fields(self) -> dict[str, Any]:
        """The settings that make a training run (see ``TRAINING_FIELDS``)."""
        return {name: getattr(self, name) for name in TRAINING_FIELDS}

    def learning_rate(self) -> float:
        """``lr``, or the architecture's default."""
        return self.lr if self.lr is not None else DEFAULT_LR[self.arch]

    def inverter_settings(self) -> dict[str, Any]:
        """The inverter's constructor settings."""
        if self.arch == "git":
            return {"width": self.width, "max_channels": self.max_channels, "seed": self.seed}
        return {"hidden": self.hidden, "max_inputs": self.max_inputs, "seed": self.seed}
