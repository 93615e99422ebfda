"""Scale-free loss weights (``--calibrate start``): each model-dependent term's pull on the
search parameters is measured once, at the seeds' start point, and its weight divided by it.

The gradient distance D and the BN-statistics prior R_BN are in the units of the model's
gradients and activations, which differ by orders of magnitude between models (GradInversion's
α_G = 1e-3 was set for ImageNet ResNet-50; a small convnet needs α_G ≈ 1). What decides how the
terms trade off under Adam is how hard each one pulls the pixels, so with calibration the loss is

    α_G·D(x)/‖∇D(x₀)‖ + bn·(bn_first·R₁(x)/‖∇R₁(x₀)‖ + R_rest(x)/‖∇R_rest(x₀)‖) + TV + L2 + group

with x₀ the seeds' fresh start, ∇ the gradient with respect to what is optimized (the pixels, or
a generator's latents / weights), norms averaged over the seeds, R₁ the first BN layer's term and
R_rest the other layers' sum: at the start each calibrated term pulls with exactly its weight,
whatever the model's scale. The attacker computes all of it from the shared update and its own
random start; the truth never enters. TV, image L2 and the group term are in pixel units, which do
not depend on the model, and keep their absolute weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

from gradinvert.config.attack import AttackConfig
from gradinvert.invert.priors import BnReference

TERMS = ("gradient", "bn_first", "bn_rest")


@dataclass(frozen=True)
class StartPull:
    """‖∇ term‖ of the model-dependent terms at the start point, mean over the seeds."""

    gradient: float  # ‖∇D(x₀)‖
    bn_first: float  # ‖∇R₁(x₀)‖, R₁ = ||μ₁ − μ₁*||₂ + ||σ²₁ − σ²₁*||₂ of the first BN layer
    bn_rest: float  # ‖∇R_rest(x₀)‖, the same summed over the other BN layers

    def to_dict(self) -> dict[str, float]:
        """JSON-ready values (recorded in the output's metadata)."""
        return asdict(self)


def bn_terms(
    means: Sequence[torch.Tensor], variances: Sequence[torch.Tensor], reference: BnReference
) -> tuple[torch.Tensor, torch.Tensor]:
    """The BN prior split in R₁ (first layer) and R_rest (the others), per leading index."""
    terms = [
        torch.linalg.vector_norm(m - rm, dim=-1) + torch.linalg.vector_norm(v - rv, dim=-1)
        for m, v, rm, rv in zip(means, variances, reference.means, reference.variances, strict=True)
    ]
    rest = sum(terms[1:], torch.zeros_like(terms[0]))
    return terms[0], rest


def calibrated_weights(config: AttackConfig, pull: StartPull) -> tuple[float, float, float]:
    """The absolute ``(gradient_weight, bn, bn_first)`` that make each term pull with its
    relative weight at the start (a term that does not pull there keeps its weight as given)."""
    gradient = config.gradient_weight / pull.gradient if pull.gradient > 0 else None
    first = config.bn * config.bn_first / pull.bn_first if pull.bn_first > 0 else None
    bn = config.bn / pull.bn_rest if pull.bn_rest > 0 else config.bn
    bn_first = first / bn if first is not None and bn > 0 else config.bn_first
    return (config.gradient_weight if gradient is None else gradient), bn, bn_first
