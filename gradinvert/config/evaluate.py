"""Settings of ``gradinvert evaluate``: how reconstructions are matched and scored, and the
gates that make the exit code a verdict."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, Field, model_validator

from gradinvert.config.base import DEVICE_HELP, Settings


def _parse_gates(value: list[str]) -> list[str]:
    """Every ``METRIC=VALUE`` gate must parse (all problems at once)."""
    from gradinvert.metrics.gates import parse_gate
    from gradinvert.runtime.errors import UsageError

    problems = []
    for text in value:
        try:
            parse_gate(text)
        except UsageError as exc:
            problems.append(exc.message)
    if problems:
        raise ValueError("; ".join(problems))
    return value


Gates = Annotated[list[str], AfterValidator(_parse_gates)]


class EvaluateSettings(Settings):
    """Everything ``evaluate`` needs besides its input and output files."""

    command: ClassVar[str] = "evaluate"

    match: Literal["mse", "lpips", "none"] = Field(
        "mse", description="Match reconstructions to originals by mse, lpips or none."
    )
    lpips: Literal["alex", "vgg", "off"] | None = Field(
        None,
        description="LPIPS backbone: alex, vgg or off. Default: alex when its weights are "
        "available, otherwise LPIPS is reported as null with a warning.",
    )
    lpips_weights: str | None = Field(
        None,
        description="torchvision AlexNet/VGG-16 weights file (.pth or .safetensors) for LPIPS.",
    )
    fail_above: Gates = Field(
        default_factory=list,
        description="METRIC=VALUE (repeatable): exit 1 when leakage passes the bar. Metrics: "
        "psnr, psnr_registered, ssim, label_acc, iip (figure > VALUE) and lpips (mean < VALUE, "
        "since lower LPIPS is more leakage).",
    )
    device: str = Field("auto", description=DEVICE_HELP)

    @model_validator(mode="after")
    def _lpips_consistent(self) -> EvaluateSettings:
        needs = self.match == "lpips" or any(
            g.partition("=")[0].strip().lower() == "lpips" for g in self.fail_above
        )
        if self.lpips == "off" and needs:
            raise ValueError("--lpips off conflicts with --match lpips / --fail-above lpips=...")
        return self

    def lpips_needed(self) -> bool:
        """Whether the settings ask for LPIPS (so missing backbone weights are an error)."""
        return (
            self.lpips not in (None, "off")
            or self.match == "lpips"
            or any(g.partition("=")[0].strip().lower() == "lpips" for g in self.fail_above)
        )
