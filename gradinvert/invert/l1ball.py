"""Euclidean projection onto an ℓ1 ball, row by row (GIFD keeps each feature map inside one).

The sort-based algorithm of Duchi et al. (ICML 2008, "Efficient projections onto the
ℓ1-ball for learning in high dimensions"): for a row v with ||v||₁ > r, the projection is
sign(v)·max(|v| − θ, 0) with the threshold θ = (Σ_{j≤ρ} μ_j − r)/ρ, μ the magnitudes sorted in
decreasing order and ρ the largest j with μ_j > (Σ_{i≤j} μ_i − r)/j. Rows already inside the
ball are returned unchanged.
"""

from __future__ import annotations

import torch


def project_l1_ball(rows: torch.Tensor, radius: torch.Tensor | float) -> torch.Tensor:
    """Each row of ``rows`` (R×D, or any shape with rows first) projected onto the ℓ1 ball of
    ``radius`` (a float, or one value per row); radii ≤ 0 or infinite leave the row as is."""
    shape = rows.shape
    flat = rows.reshape(shape[0], -1)
    radii = torch.as_tensor(radius, dtype=flat.dtype, device=flat.device).expand(shape[0])
    magnitude = flat.abs()
    mu = magnitude.sort(dim=1, descending=True).values
    cumsum = mu.cumsum(dim=1)
    index = torch.arange(1, flat.shape[1] + 1, device=flat.device, dtype=flat.dtype)
    active = mu * index > cumsum - radii.unsqueeze(1)
    rho = (active * index).amax(dim=1).clamp_min(1)  # ≥ 1 whenever the row is outside
    theta = (cumsum.gather(1, rho.long().unsqueeze(1) - 1).squeeze(1) - radii) / rho
    projected = torch.sign(flat) * (magnitude - theta.unsqueeze(1)).clamp_min(0)
    bounded = (radii > 0) & torch.isfinite(radii)
    outside = bounded & (magnitude.sum(dim=1) > radii)
    return torch.where(outside.unsqueeze(1), projected, flat).reshape(shape)
