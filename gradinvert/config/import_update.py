"""Settings of ``gradinvert import``: what the deployment's state dicts do not say — the model,
its input, and the client's local training when known."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from gradinvert.config.base import MAX_MEMORY_HELP, Settings
from gradinvert.io.update_schema import MAX_CLASSES, MAX_LOCAL_STEPS, MAX_SIDE


class ImportSettings(Settings):
    """Everything ``import`` needs besides its state-dict files and output file."""

    command: ClassVar[str] = "import"

    model: str | None = Field(None, description="The deployed architecture (as in capture).")
    input_shape: str | None = Field(None, description="The model's input C,H,W, e.g. 3,32,32.")
    num_classes: int = Field(10, ge=1, le=MAX_CLASSES, description="Classes of the model.")
    normalize: Literal["imagenet", "cifar", "none"] = Field(
        "imagenet", description="Input normalization: imagenet, cifar or none."
    )
    mode: Literal["train", "eval"] = Field("eval", description="BatchNorm mode: train or eval.")
    batch_size: int | None = Field(None, ge=1, description="The client's batch size, if known.")
    local_steps: int | None = Field(
        None, ge=1, le=MAX_LOCAL_STEPS, description="Delta: the client's local SGD steps."
    )
    local_lr: float | None = Field(None, gt=0, description="Delta: the local learning rate.")
    local_batch_size: int | None = Field(
        None, ge=1, description="Delta: minibatch size (default: --batch-size)."
    )
    shuffle: bool = Field(False, description="Delta: the client shuffled its minibatches.")
    init_seed: int = Field(0, description="Gradient without --before: the seeded init.")
    max_memory: str | None = Field(
        None,
        description=MAX_MEMORY_HELP,
    )

    @field_validator("input_shape")
    @classmethod
    def _shape(cls, text: str | None) -> str | None:
        if text is not None:
            parse_shape(text)
        return text

    @model_validator(mode="after")
    def _complete(self) -> ImportSettings:
        problems = [f"--{name.replace('_', '-')} is required" for name in
                    ("model", "input_shape") if getattr(self, name) is None]  # fmt: skip
        local = (self.local_steps, self.local_lr, self.local_batch_size)
        if any(value is not None for value in local) or self.shuffle:
            if self.local_steps is None or self.local_lr is None:
                problems.append(
                    "give both --local-steps and --local-lr (or no local flags: unknown)"
                )
            elif self.local_batch_size is None and self.batch_size is None:
                problems.append("local training needs --local-batch-size or --batch-size")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def shape(self) -> tuple[int, int, int]:
        """The input shape C, H, W."""
        return parse_shape(self.input_shape or "")


def parse_shape(text: str) -> tuple[int, int, int]:
    """``C,H,W`` as three positive integers (sides ≤ the update schema's bound)."""
    try:
        shape = tuple(int(part) for part in text.replace(" ", "").split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1 or max(shape[1:]) > MAX_SIDE or shape[0] > 4:
        raise ValueError(f"--input-shape {text!r}: give C,H,W, e.g. 3,32,32")
    return shape  # type: ignore[return-value]
