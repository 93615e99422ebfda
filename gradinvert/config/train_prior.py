"""Settings of ``gradinvert train-prior``: the DCGAN recipe's defaults (Radford et al. 2016;
PyTorch's DCGAN example): 25 epochs of batch 64, Adam lr 2e-4, betas 0.5, 0.999, width 64."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

from gradinvert.config.base import DEVICE_HELP, MAX_MEMORY_HELP, SEED_HELP, Settings

Size = Literal[32, 64]  # generators.dcgan.SIZES
Upsample = Literal["transpose", "nearest", "bilinear"]  # generators.dcgan.UPSAMPLES
DEFAULT_UPSAMPLE = "transpose"
MAX_NGF = 256  # a 64 px generator of this width has 57 M parameters
Beta = Annotated[float, Field(ge=0, lt=1)]
# The settings a checkpoint must share with the run resuming it: not ``epochs`` (a finished run
# may be trained further), nor how the result is stored or the machine.
RUN_IDENTITY = ("size", "batch_size", "lr", "betas", "seed", "ngf", "channels", "upsample")


class TrainPriorSettings(Settings):
    """Everything ``train-prior`` needs besides its images and outputs."""

    command: ClassVar[str] = "train-prior"

    size: Size = Field(32, description="Image size: 32 or 64 px.")
    epochs: int = Field(25, ge=1, description="Passes over the images.")
    batch_size: int = Field(64, ge=1, description="Images per step.")
    lr: float = Field(2e-4, gt=0, allow_inf_nan=False, description="Adam learning rate (G and D).")
    betas: list[Beta] = Field(
        default_factory=lambda: [0.5, 0.999],
        min_length=2,
        max_length=2,
        description="Adam betas (G and D): two numbers in [0, 1), e.g. 0.5,0.999.",
    )
    seed: int = Field(0, description=SEED_HELP)
    upsample: Upsample = Field(
        DEFAULT_UPSAMPLE,
        description="Generator up-stages: transpose, nearest or bilinear (+ 3×3 conv).",
    )
    ngf: int = Field(
        64, ge=1, le=MAX_NGF, description="Generator (and discriminator) width; DCGAN: 64."
    )
    channels: Literal[1, 3] = Field(3, description="Image channels: 3 (RGB) or 1 (grey).")
    half: bool = Field(False, description="Store float16 weights (half the file size).")
    device: str = Field("auto", description=DEVICE_HELP)
    max_memory: str | None = Field(None, description=MAX_MEMORY_HELP)

    def fingerprint_fields(self) -> dict[str, Any]:
        """The settings that make a run what it is (see ``RUN_IDENTITY``); ``upsample`` only
        when it is not the default, so checkpoints from before the option still resume."""
        fields = {name: getattr(self, name) for name in RUN_IDENTITY}
        if self.upsample == DEFAULT_UPSAMPLE:
            del fields["upsample"]
        return fields
