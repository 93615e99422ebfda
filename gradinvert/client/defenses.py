"""Defenses a client applies to its shared update: clipping, noise, pruning."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch

from gradinvert.runtime.errors import UsageError

Tensors = dict[str, torch.Tensor]


@dataclass
class DefenseConfig:
    """What to apply, in this order: prune, clip, noise.

    ``noise`` is the Gaussian standard deviation, or the Laplace scale ``b`` (std = √2·b).
    ``prune`` is the fraction of entries of each tensor set to zero (the smallest magnitudes).
    """

    clip: float | None = None
    noise: float | None = None
    noise_kind: Literal["gaussian", "laplace"] = "gaussian"
    prune: float | None = None

    def validate(self) -> None:
        if self.clip is not None and self.clip <= 0:
            raise UsageError("--clip must be positive")
        if self.noise is not None and self.noise < 0:
            raise UsageError("--noise must be non-negative")
        if self.prune is not None and not 0.0 <= self.prune < 1.0:
            raise UsageError("--prune is the fraction removed: 0 <= FRACTION < 1")
        if self.noise_kind not in ("gaussian", "laplace"):
            raise UsageError("--noise-kind must be gaussian or laplace")


def global_norm(tensors: Tensors) -> torch.Tensor:
    """L2 norm of all tensors concatenated."""
    return torch.sqrt(sum((t.double() ** 2).sum() for t in tensors.values()))


def clip_global_norm(tensors: Tensors, max_norm: float) -> tuple[Tensors, float]:
    """Scale all tensors by min(1, max_norm / norm); return them and the original norm."""
    norm = float(global_norm(tensors))
    scale = min(1.0, max_norm / norm) if norm > 0 else 1.0
    return {k: v * scale for k, v in tensors.items()}, norm


def prune_smallest(tensors: Tensors, fraction: float) -> Tensors:
    """Zero the ``fraction`` of entries with the smallest magnitude in each tensor."""
    pruned = {}
    for name, value in tensors.items():
        count = int(fraction * value.numel())
        if count == 0:
            pruned[name] = value.clone()
            continue
        flat = value.flatten()
        order = flat.abs().argsort(stable=True)
        keep = torch.ones_like(flat, dtype=torch.bool)
        keep[order[:count]] = False
        pruned[name] = (flat * keep).view_as(value)
    return pruned


def add_noise(tensors: Tensors, scale: float, kind: str, generator: torch.Generator) -> Tensors:
    """Add i.i.d. Gaussian (std ``scale``) or Laplace (scale ``scale``) noise, drawn on the CPU."""
    noisy = {}
    for name, value in tensors.items():
        if kind == "gaussian":
            noise = torch.randn(value.shape, generator=generator, dtype=torch.float64) * scale
        else:
            # Inverse-CDF sampling keeps the draw on our seeded generator.
            u = torch.rand(value.shape, generator=generator, dtype=torch.float64) - 0.5
            u = u.clamp(-0.5 + 1e-12, 0.5 - 1e-12)
            noise = -scale * torch.sign(u) * torch.log1p(-2 * u.abs())
        noisy[name] = value + noise.to(value.dtype).to(value.device)
    return noisy


def apply_defenses(
    tensors: Tensors, config: DefenseConfig, seed: int | None
) -> tuple[Tensors, list[dict[str, Any]]]:
    """Apply the configured defenses; return the defended tensors and a record of each step."""
    config.validate()
    record: list[dict[str, Any]] = []
    if config.prune:
        tensors = prune_smallest(tensors, config.prune)
        record.append({"name": "prune", "fraction_removed": config.prune, "scope": "per-tensor"})
    if config.clip is not None:
        tensors, norm = clip_global_norm(tensors, config.clip)
        record.append({"name": "clip", "max_norm": config.clip, "norm_before": norm})
    if config.noise:
        generator = torch.Generator().manual_seed(0 if seed is None else seed + 1)
        tensors = add_noise(tensors, config.noise, config.noise_kind, generator)
        key = "std" if config.noise_kind == "gaussian" else "scale"
        record.append({"name": "noise", "kind": config.noise_kind, key: config.noise})
    return tensors, record
