"""Settings of ``gradinvert capture``: the simulated client's model, data selection, update
(one gradient or FedAvg local training) and defenses."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from gradinvert.config.base import DEVICE_HELP, Settings
from gradinvert.io.update_schema import (
    MAX_CLASSES,
    MAX_CLIENTS,
    MAX_DATASET,
    MAX_LOCAL_STEPS,
    MAX_NOISE_MULTIPLIER,
    MAX_ROUNDS,
    MAX_SIDE,
)


class CaptureSettings(Settings):
    """Everything ``capture`` needs besides its input images and output files."""

    command: ClassVar[str] = "capture"

    model: str = Field(
        "convnet",
        description="lenet, convnet, cifar-resnet18, a torchvision classifier, or "
        "package.module:factory (your own code).",
    )
    num_classes: int = Field(10, ge=1, le=MAX_CLASSES, description="Classes of the model.")
    labels: str | None = Field(
        None,
        description="Labels: inline '0,1,1,3', a labels JSON file, or a JSON map of file names "
        "to labels (default: the folder's labels.json).",
    )
    size: int | None = Field(
        None, ge=1, le=MAX_SIDE, description="Resize the shorter side and center-crop."
    )
    batch_size: int | None = Field(None, ge=1, description="Use N images (from --start).")
    start: int = Field(0, ge=0, description="First image to use (0-based, sorted inputs).")
    normalize: Literal["imagenet", "cifar", "none"] = Field(
        "imagenet", description="Input normalization: imagenet, cifar or none."
    )
    init_seed: int = Field(0, description="Seed of the random init.")
    weights: str | None = Field(None, description="Model weights: .safetensors or state-dict .pt.")
    mode: Literal["train", "eval"] = Field("eval", description="BatchNorm mode: train or eval.")
    share_bn_stats: bool = Field(False, description="Also store each BN layer's batch statistics.")
    local_steps: int = Field(
        0, ge=0, le=MAX_LOCAL_STEPS, description="FedAvg: local SGD steps (0: one gradient)."
    )
    local_lr: float = Field(0.1, gt=0, description="FedAvg: local learning rate.")
    local_batch_size: int | None = Field(
        None, ge=1, description="FedAvg: minibatch size (default: whole batch)."
    )
    shuffle: bool = Field(
        False, description="FedAvg: seeded shuffled minibatches instead of slices."
    )
    clip: float | None = Field(None, gt=0, description="Clip the update's global L2 norm to C.")
    noise: float | None = Field(
        None, ge=0, description="Noise: Gaussian std, or Laplace scale b (std √2·b)."
    )
    noise_kind: Literal["gaussian", "laplace"] = Field(
        "gaussian", description="gaussian or laplace."
    )
    prune: float | None = Field(
        None, ge=0, lt=1, description="Fraction of each tensor's smallest entries set to zero."
    )
    sign: bool = Field(False, description="signSGD: share each entry's sign only (last step).")
    quantize: int | None = Field(
        None,
        ge=2,
        le=16,
        description="Stochastic uniform quantization per tensor to BITS (QSGD-style, unbiased, "
        "seeded): 1 sign bit and 2^(BITS-1)-1 levels of the tensor's largest magnitude.",
    )
    dp_clip: float | None = Field(
        None,
        gt=0,
        allow_inf_nan=False,
        description="DP-SGD: clip each example's gradient to L2 norm C, in every gradient step.",
    )
    dp_noise_multiplier: float | None = Field(
        None,
        ge=0,
        le=MAX_NOISE_MULTIPLIER,
        allow_inf_nan=False,
        description="DP-SGD: noise N(0, (z·C)²) per coordinate on the clipped sum (needs "
        "--dp-clip; default 0).",
    )
    dataset_size: int | None = Field(
        None,
        ge=1,
        le=MAX_DATASET,
        description="DP-SGD: the client's dataset size N (sampling rate = examples per step / "
        "N); without it no ε is computed.",
    )
    dp_delta: float = Field(
        1e-5, gt=0, lt=1, allow_inf_nan=False, description="DP-SGD: the δ of (ε, δ)."
    )
    rounds: int = Field(
        1,
        ge=1,
        le=MAX_ROUNDS,
        description="DP-SGD: FL rounds the budget covers (steps = rounds × local steps).",
    )
    dp_accountant: Literal["rdp", "prv"] = Field(
        "rdp", description="DP-SGD accountant (Opacus): rdp (Rényi DP) or prv."
    )
    clients: int = Field(
        1,
        ge=1,
        le=MAX_CLIENTS,
        description="Simulate M clients on consecutive batches of --batch-size (client i seeded "
        "--seed + i) and write their secure aggregate (the truth: their union).",
    )
    seed: int = Field(0, description="Seed for shuffling, noise, dropout; recorded in the output.")
    device: str = Field("auto", description=DEVICE_HELP)

    @model_validator(mode="after")
    def _defenses_consistent(self) -> CaptureSettings:
        problems = []
        if self.dp_noise_multiplier is not None and self.dp_clip is None:
            problems.append("--dp-noise-multiplier needs --dp-clip C")
        if self.dp_clip is None and (self.dataset_size is not None or self.rounds != 1):
            problems.append("--dataset-size and --rounds are DP-SGD's accounting: give --dp-clip")
        if self.sign and self.quantize is not None:
            problems.append("--sign and --quantize: a signed update is already 1 bit, choose one")
        if problems:
            raise ValueError("; ".join(problems))
        return self
