"""Label restoration rules on the last linear layer's gradient (DESIGN.md §5.5).

Notation: a batch of K samples, C classes; the last layer computes logits z = W o + b from the
penultimate features o (non-negative after ReLU/avg-pool). For the mean cross-entropy,
K·∇W_c = Σ_n (p_nc − y_nc) o_n and K·∇b_c = Σ_n (p_nc − y_nc), with p the softmax and y one-hot.
All functions take float64 tensors and return plain Python ints or long tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from gradinvert.runtime.errors import UsageError

# Float slack when turning K·∇b into a hard lower bound on the counts.
LOWER_BOUND_TOLERANCE = 0.25
# Greedy count allocation hands out picks in bulk beyond this many (see _bulk_greedy).
BULK_FROM = 4096


@dataclass
class CountEstimate:
    """Integer per-class counts, the continuous estimate behind them, and diagnostics."""

    counts: torch.Tensor
    estimate: torch.Tensor | None = None
    details: dict[str, Any] = field(default_factory=dict)


def counts_to_labels(counts: torch.Tensor) -> list[int]:
    """Expand per-class counts into a sorted label list."""
    return [c for c in range(counts.numel()) for _ in range(int(counts[c]))]


def idlg_label(grad_w: torch.Tensor) -> int:
    """iDLG (batch of one): the class whose weight-gradient row sums to the most negative value."""
    return int(torch.argmin(grad_w.sum(dim=1)))


def yin_labels(grad_w: torch.Tensor, batch_size: int) -> list[int]:
    """GradInversion's rule for distinct labels: per class the minimum over features, B lowest."""
    num_classes = grad_w.shape[0]
    if batch_size > num_classes:
        raise UsageError(
            f"method yin returns distinct labels: batch size {batch_size} exceeds "
            f"{num_classes} classes (use ilrg or llg for repeated labels)"
        )
    minima = grad_w.min(dim=1).values
    order = torch.sort(minima, stable=True).indices
    return sorted(int(c) for c in order[:batch_size])


def integer_counts(
    estimate: torch.Tensor, batch_size: int, lower: torch.Tensor | None = None
) -> torch.Tensor:
    """Non-negative integer counts summing to ``batch_size`` close to a continuous estimate.

    Starts from ``lower`` (hard lower bounds; ignored when they already exceed the batch) and
    hands out the remaining samples one by one to the class whose estimate exceeds its current
    count the most. For an estimate near integers that sum to the batch size this is rounding.
    """
    estimate = torch.nan_to_num(estimate.double(), nan=0.0, posinf=0.0, neginf=0.0)
    counts = torch.zeros_like(estimate, dtype=torch.long)
    if lower is not None and int(lower.sum()) <= batch_size:
        counts = lower.long().clamp(min=0)
    gap = estimate - counts
    counts, gap = _bulk_greedy(counts, gap, batch_size - int(counts.sum()), 1.0)
    for _ in range(batch_size - int(counts.sum())):
        j = int(torch.argmax(gap))
        counts[j] += 1
        gap[j] -= 1
    return counts


def _bulk_greedy(
    counts: torch.Tensor, keys: torch.Tensor, remaining: int, step: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hand out most of ``remaining`` picks at once, exactly as one-by-one greedy picks would.

    The one-by-one rule gives each pick to the class with the largest key and lowers that key by
    ``step``; every key value above a threshold T is picked before any value at or below it. So
    the picks above the smallest T leaving at most ``remaining`` of them are given in bulk and
    fewer than about one per class are left to the loop. Only used for batches beyond
    ``BULK_FROM`` picks: below that the loop alone is fast and rounding stays as it was.
    """
    if remaining <= BULK_FROM or step <= 0:
        if step <= 0 and remaining > 0:  # keys never move: every pick goes to the largest
            counts = counts.clone()
            counts[int(torch.argmax(keys))] += remaining
        return counts, keys

    def above(threshold: float) -> torch.Tensor:
        return torch.ceil((keys - threshold) / step).clamp(min=0)

    low, high = float(keys.max()) - remaining * step, float(keys.max())
    for _ in range(200):
        middle = (low + high) / 2
        if middle in (low, high):
            break
        if float(above(middle).sum()) <= remaining:
            high = middle
        else:
            low = middle
    picks = above(high).long()
    return counts + picks, keys - picks.double() * step


def bias_lower_bound(grad_b: torch.Tensor, batch_size: int) -> torch.Tensor:
    """λ_c ≥ −K·∇b_c, exactly, because λ_c = Σ_n p_nc − K·∇b_c and Σ_n p_nc ≥ 0."""
    return torch.ceil(-batch_size * grad_b - LOWER_BOUND_TOLERANCE).clamp(min=0).long()


def present_classes(grad_w: torch.Tensor) -> torch.Tensor:
    """1 for every class whose weight-gradient row has a negative entry, else 0.

    With non-negative features an absent class's row Σ_n p_nc o_n / K is a sum of non-negative
    terms (also in floating point), so a negative entry proves the class is in the batch. Only
    valid for undefended updates of models whose last-layer input is non-negative.
    """
    return (grad_w.min(dim=1).values < 0).long()


def _lower_bound(
    grad_b: torch.Tensor, batch_size: int, present: torch.Tensor | None
) -> torch.Tensor:
    lower = bias_lower_bound(grad_b, batch_size)
    if present is not None:
        combined = torch.maximum(lower, present)
        if int(combined.sum()) <= batch_size:
            return combined
    return lower


def bias_counts(
    grad_b: torch.Tensor, batch_size: int, present: torch.Tensor | None = None
) -> CountEstimate:
    """Bias-only counts: λ_c = Σ_n p_nc − K·∇b_c with every softmax taken as uniform (1/C).

    ``present`` (from ``present_classes``) adds a lower bound of one for the classes it marks.
    """
    num_classes = grad_b.numel()
    estimate = batch_size / num_classes - batch_size * grad_b
    counts = integer_counts(estimate, batch_size, _lower_bound(grad_b, batch_size, present))
    return CountEstimate(counts, estimate)


def mean_embedding(grad_w: torch.Tensor, grad_b: torch.Tensor) -> torch.Tensor:
    """Least-squares fit of ∇W ≈ ∇b ōᵀ: the batch-mean feature when features are alike."""
    denominator = float(grad_b @ grad_b)
    if denominator == 0.0:
        raise UsageError("the bias gradient is all zeros: use a weight-only method (llg)")
    return (grad_b @ grad_w) / denominator


def mean_feature_confidence(
    grad_w: torch.Tensor, grad_b: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor
) -> float:
    """The model's top softmax probability at the estimated batch-mean feature.

    Near 1/C for an untrained model; high for a trained, confident one, where the class-mean
    approximation behind ``ilrg`` breaks down (the softmax of a mean is not the mean softmax).
    """
    return float(torch.softmax(weight @ mean_embedding(grad_w, grad_b) + bias, dim=0).max())


def class_mean_softmax(
    present: torch.Tensor,
    means: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    batch_size: float,
    trajectory: tuple[int, float] | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Σ_j λ_j s_j and Σ_j λ_j s_j e_jᵀ for the class-mean model, s_j = softmax(W e_j + b).

    With a ``trajectory`` (steps, lr) the two sums are averaged over a simulated local SGD run
    of the last layer alone, fed by the same class-mean batch (every minibatch taken to hold
    the batch's class proportions).
    """
    rows = present > 0.5
    row_means = means[rows]
    row_weights = present[rows]
    rest = float(present[~rows].sum())
    if rest > 0:  # classes below half a sample share the batch-mean feature; one row for all
        row_means = torch.cat([row_means, means[~rows][:1]])
        row_weights = torch.cat([row_weights, row_weights.new_tensor([rest])])
    class_sums = present[:, None] * means
    steps, lr = trajectory if trajectory is not None else (1, 0.0)
    total_lam = torch.zeros_like(present)
    total_sums = torch.zeros_like(means)
    for _ in range(steps):
        soft = torch.softmax(row_means @ weight.T + bias, dim=1)  # soft[row, c]
        lam_part = soft.T @ row_weights
        sums_part = soft.T @ (row_weights[:, None] * row_means)
        total_lam += lam_part
        total_sums += sums_part
        if lr:
            weight = weight - lr / batch_size * (sums_part - class_sums)
            bias = bias - lr / batch_size * (lam_part - present)
    return total_lam / steps, total_sums / steps


def ilrg_counts(
    grad_w: torch.Tensor,
    grad_b: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    batch_size: int,
    iterations: int = 50,
    trajectory: tuple[int, float] | None = None,
    present: torch.Tensor | None = None,
) -> CountEstimate:
    """Per-class counts from the weight and bias gradients (iLRG, Ma et al., ICLR 2023).

    λ_c = Σ_n p_nc − K·∇b_c holds exactly, so the counts hinge on the batch's summed softmax.
    iLRG replaces every sample of class j by the class-mean feature e_j, so that
    Σ_n p_nc ≈ Σ_j λ_j softmax(W e_j + b)_c, and reads e_j off ∇W_j / ∇b_j. That ratio is
    unstable when Σ_n p_nj ≈ λ_j (few classes, large batches); here the class sums
    m_j = λ_j e_j come instead from a fixed-point iteration of the two exact identities
        K·∇W_c = Σ_j s_jc m_j − m_c,   K·∇b_c = Σ_j s_jc λ_j − λ_c,   s_j = softmax(W e_j + b),
    started from the least-squares batch-mean feature. Integer counts then start from the
    exact lower bound λ_c ≥ −K·∇b_c and follow the continuous estimate.

    For a FedAvg delta pass the pseudo-gradient −Δ/(lr·steps), the global weights and
    ``trajectory=(steps, lr)``: the softmax sums are then averaged over a simulated local run.
    ``present`` (from ``present_classes``) adds a lower bound of one for the classes it marks.
    """
    k = float(batch_size)
    mean = mean_embedding(grad_w, grad_b)
    lam = k * torch.softmax(weight @ mean + bias, dim=0) - k * grad_b
    sums = lam.clamp(min=0)[:, None] * mean[None, :]
    steps_done = 0
    change: float | None = None
    for steps_done in range(1, iterations + 1):  # noqa: B007 (reported below)
        present = lam.clamp(0.0, k)
        safe = torch.where(present > 0.5, present, torch.ones_like(present))
        means = torch.where((present > 0.5)[:, None], sums / safe[:, None], mean[None, :])
        soft_lam, soft_sums = class_mean_softmax(present, means, weight, bias, k, trajectory)
        new_lam = soft_lam - k * grad_b
        new_sums = soft_sums - k * grad_w
        if not (torch.isfinite(new_lam).all() and torch.isfinite(new_sums).all()):
            break
        change = float((new_lam - lam).abs().max())
        lam, sums = new_lam, new_sums
        if change < 1e-6:
            break
    counts = integer_counts(lam, batch_size, _lower_bound(grad_b, batch_size, present))
    gap = float((lam - counts).abs().mean())
    return CountEstimate(
        counts,
        lam,
        {"iterations": steps_done, "last_change": change, "integrality_gap": round(gap, 4)},
    )


def llg_counts(
    grad_w: torch.Tensor, batch_size: int, present: torch.Tensor | None = None
) -> CountEstimate:
    """LLG-style greedy counts from the weight gradient alone (no bias needed).

    r_c = Σ_f ∇W_cf is negative for classes in the batch. One sample's impact m is estimated
    as the negative mass per sample, −Σ_c |r_c| / (2K) (Σ_c r_c = 0 exactly). Every class with
    r_c < 0 gets one label; then the class with the lowest r_c takes the next label, and each
    label taken adds −m to its class's r_c, until the batch is full. Classes marked by
    ``present`` (from ``present_classes``) also get their first label up front.
    """
    row = grad_w.sum(dim=1).clone()
    impact = -float(row.abs().sum()) / (2 * batch_size)
    counts = torch.zeros(row.numel(), dtype=torch.long)
    first = row < 0
    if present is not None:
        first = first | present.bool()
    negative = torch.nonzero(first).flatten()
    if negative.numel() > batch_size:
        negative = negative[torch.argsort(row[negative], stable=True)[:batch_size]]
    counts[negative] = 1
    row[negative] -= impact
    counts, keys = _bulk_greedy(counts, -row, batch_size - int(counts.sum()), -impact)
    row = -keys
    for _ in range(batch_size - int(counts.sum())):
        j = int(torch.argmin(row))
        counts[j] += 1
        row[j] -= impact
    return CountEstimate(counts, None, {"impact": impact})
