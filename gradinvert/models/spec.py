"""Plain descriptions of a model and its input, stored in update-file metadata."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NORMALIZATIONS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
    "cifar": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "none": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
}


@dataclass
class ModelSpec:
    """Architecture id, class count and constructor keyword arguments.

    ``origin``: the file the description was read from (None: a caller wrote it); it names the
    file in messages and is not stored.
    """

    arch: str
    num_classes: int
    kwargs: dict[str, Any] = field(default_factory=dict)
    origin: str | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"arch": self.arch, "num_classes": self.num_classes, "kwargs": self.kwargs}

    @classmethod
    def from_dict(cls, data: dict[str, Any], origin: str | None = None) -> ModelSpec:
        kwargs = dict(data.get("kwargs") or {})
        return cls(str(data["arch"]), int(data["num_classes"]), kwargs, origin)


@dataclass
class InputSpec:
    """Input shape (C, H, W) and the normalization applied before the model."""

    shape: tuple[int, int, int]
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD

    def to_dict(self) -> dict[str, Any]:
        return {"shape": list(self.shape), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InputSpec:
        shape = tuple(int(x) for x in data["shape"])
        if len(shape) != 3:
            raise ValueError("input shape must be C,H,W")
        return cls(shape, tuple(data["mean"]), tuple(data["std"]))  # type: ignore[arg-type]

    def normalize(self, images01: Any) -> Any:
        """Map [0, 1] pixels to the model's input space."""
        mean, std = self._stats_like(images01)
        return (images01 - mean) / std

    def denormalize(self, inputs: Any) -> Any:
        """Map model inputs back to [0, 1] pixel space (no clamping)."""
        mean, std = self._stats_like(inputs)
        return inputs * std + mean

    def _stats_like(self, x: Any) -> tuple[Any, Any]:
        import torch

        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
        return mean, std
