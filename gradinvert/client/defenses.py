"""Defenses a client applies to its shared update after computing it: top-k pruning, a global
clip, noise, then compression (sign or quantization). DP-SGD acts inside the gradient
computation instead (:mod:`gradinvert.client.dpsgd`)."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any, Literal

import torch

from gradinvert.client.compress import MAX_BITS, MIN_BITS, quantize_stochastic, sign_compress
from gradinvert.runtime.errors import UsageError

Tensors = dict[str, torch.Tensor]


@dataclass
class DefenseConfig:
    """What to apply, in this order: prune (top-k), clip, noise, then sign or quantize.

    ``noise`` is the Gaussian standard deviation, or the Laplace scale ``b`` (std = √2·b).
    ``prune`` is the fraction of entries of each tensor set to zero (the smallest magnitudes).
    ``sign``: signSGD; ``quantize``: bits of stochastic uniform quantization.
    """

    clip: float | None = None
    noise: float | None = None
    noise_kind: Literal["gaussian", "laplace"] = "gaussian"
    prune: float | None = None
    sign: bool = False
    quantize: int | None = None

    def problems(self) -> list[str]:
        """Every invalid setting (NaN and infinities included), as ``--option value: why``."""
        found = []
        if self.clip is not None and not (math.isfinite(self.clip) and self.clip > 0):
            found.append(f"--clip {self.clip}: must be a positive number")
        if self.noise is not None and not (math.isfinite(self.noise) and self.noise >= 0):
            found.append(f"--noise {self.noise}: must be 0 or more")
        if self.prune is not None and not 0.0 <= self.prune < 1.0:
            found.append(f"--prune {self.prune}: the fraction removed, 0 <= FRACTION < 1")
        if self.noise_kind not in ("gaussian", "laplace"):
            found.append(f"--noise-kind {self.noise_kind}: must be gaussian or laplace")
        if self.quantize is not None and not MIN_BITS <= self.quantize <= MAX_BITS:
            found.append(f"--quantize {self.quantize}: bits from {MIN_BITS} to {MAX_BITS}")
        if self.sign and self.quantize is not None:
            found.append("--sign and --quantize: a signed update is already 1 bit, choose one")
        return found

    def validate(self) -> None:
        found = self.problems()
        if found:
            raise UsageError("; ".join(found))


def stream_seed(seed: int | None, purpose: str) -> int:
    """A seed for one random stream of a client (``purpose``: "dp-sgd", "quantize", ...),
    apart from its other streams and from other clients' (seed + i) streams."""
    digest = hashlib.sha256(f"{0 if seed is None else seed}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


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
    if config.sign:
        tensors = sign_compress(tensors)
        record.append({"name": "sign"})
    if config.quantize is not None:
        generator = torch.Generator().manual_seed(stream_seed(seed, "quantize"))
        tensors = quantize_stochastic(tensors, config.quantize, generator)
        record.append(
            {"name": "quantize", "bits": config.quantize, "rounding": "stochastic", "scale": "max"}
        )
    return tensors, record
