"""Image priors added to each seed's loss: TV, L2, BN statistics (DeepInversion), group.

Every function takes candidates with leading seed dimension(s), ``...×N×C×H×W``, and returns one
value per seed (the leading dimensions), so all seeds are scored in one call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from gradinvert.io.files import UpdateFile

_IMAGE_DIMS = (-4, -3, -2, -1)


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Anisotropic TV: mean |dx| + mean |dy| over each seed's batch (Inverting Gradients)."""
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().mean(dim=_IMAGE_DIMS)
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().mean(dim=_IMAGE_DIMS)
    return dx + dy


def l2_norm(x: torch.Tensor) -> torch.Tensor:
    """L2 norm of each seed's whole batch."""
    return torch.linalg.vector_norm(x, dim=_IMAGE_DIMS)


def group_distance(x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Σ over images of ||x̂_i − target_i||₂ per seed (GradInversion's group consistency)."""
    return torch.linalg.vector_norm(x - targets, dim=(-3, -2, -1)).sum(dim=-1)


@dataclass
class BnReference:
    """Per BN layer (in model order) the statistics candidates are pulled toward."""

    names: list[str]
    means: list[torch.Tensor]
    variances: list[torch.Tensor]
    source: str  # "shared batch statistics" | "running statistics" | a mix

    def to(self, device: torch.device | str) -> BnReference:
        """Move the statistics to ``device``."""
        return BnReference(
            self.names,
            [m.to(device) for m in self.means],
            [v.to(device) for v in self.variances],
            self.source,
        )


def bn_reference(update: UpdateFile, bn_names: Sequence[str]) -> BnReference:
    """Shared batch statistics where the update carries them, else the running statistics.

    The shared ones are exact (the true batch's own statistics); running statistics of the
    global model are only an approximation of the batch's.
    """
    means, variances, used = [], [], set()
    for name in bn_names:
        if name in update.bn_stats:
            mean, var = update.bn_stats[name]
            used.add("shared batch statistics")
        else:
            mean = update.buffers.get(f"{name}.running_mean")
            var = update.buffers.get(f"{name}.running_var")
            if mean is None or var is None:
                raise KeyError(name)
            used.add("running statistics")
        means.append(mean.float())
        variances.append(var.float())
    if len(used) == 2:
        source = "shared batch statistics (running statistics where not shared)"
    else:
        source = used.pop() if used else "none"
    return BnReference(list(bn_names), means, variances, source)


def bn_prior(
    means: Sequence[torch.Tensor],
    variances: Sequence[torch.Tensor],
    reference: BnReference,
    first_weight: float = 1.0,
) -> torch.Tensor:
    """Σ_l w_l (||μ_l − μ*_l||₂ + ||σ²_l − σ²*_l||₂), w = ``first_weight`` for the first layer.

    ``means[l]``/``variances[l]`` are the candidates' per-channel statistics, ``...×C_l``.
    """
    total = None
    for index, (mean, var, ref_mean, ref_var) in enumerate(
        zip(means, variances, reference.means, reference.variances, strict=True)
    ):
        term = torch.linalg.vector_norm(mean - ref_mean, dim=-1) + torch.linalg.vector_norm(
            var - ref_var, dim=-1
        )
        if index == 0:
            term = first_weight * term
        total = term if total is None else total + term
    if total is None:
        raise ValueError("the model has no BatchNorm layers")
    return total
