"""Settings of ``gradinvert capture``: the simulated client's model, data selection, update
(one gradient or FedAvg local training) and defenses."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from gradinvert.config.base import Settings
from gradinvert.io.update_schema import MAX_CLASSES, MAX_LOCAL_STEPS, MAX_SIDE


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
    seed: int = Field(0, description="Seed for shuffling, noise, dropout; recorded in the output.")
    device: str = Field("auto", description="auto (CUDA when present), cpu, cuda or cuda:N.")
