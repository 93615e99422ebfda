"""What an attack that knows the defense does to each candidate's update (``--adapt-defense``).

The deterministic part of the recorded defense is applied to every candidate's simulated update
before it is matched to the shared one; noise is never simulated. Per entry of the defense list:

- ``dp-sgd``: each example's gradient is clipped to C in every simulated gradient step
  (differentiable, vmapped over the candidate's examples). Exact.
- ``prune`` (top-k): the candidate's update is multiplied by the target's support (its non-zero
  entries), as GIAS evaluates sparsified gradients. Exact when nothing after the pruning moves
  the zeros (noise or quantization does; a secure aggregate shows only the members' union).
- ``clip`` (global norm): the candidate's update is clipped the same way. Exact when every
  tensor is matched (the norm runs over all of them).
- ``sign``: the candidate's update is replaced by its sign, with a straight-through gradient
  (the value is exact; the sign's own derivative is zero almost everywhere).
- ``noise``, ``quantize``: random and unbiased: not simulated.
- ``secure-aggregation``: not a transform: the simulator runs every member's client on its own
  slice of the candidate batch and takes the weighted mean (always, adapted or not); clipping
  and sign are applied per member before the mean.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

Tensors = dict[str, torch.Tensor]


@dataclass
class Adaptation:
    """The candidate-side defense: per-example clipping inside the gradient steps, then
    ``transforms`` on each member's update in order: ("mask", {name: mask}), ("clip", C),
    ("sign", None)."""

    dp_clip: float | None = None
    transforms: list[tuple[str, Any]] = field(default_factory=list)
    applied: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return self.dp_clip is not None or bool(self.transforms)

    def to_dict(self) -> dict[str, Any]:
        return {"applied": list(self.applied), "not_applied": list(self.skipped)}


def plan_adaptation(
    defense: list[dict[str, Any]],
    targets: Tensors,
    matched: list[str],
    trainable: list[str],
    enabled: bool = True,
) -> Adaptation:
    """The adaptation for an update's defense list; ``targets``: the matched target tensors as
    the simulator compares them (trimmed to live kernel taps)."""
    plan = Adaptation()
    if all(entry.get("name") == "secure-aggregation" for entry in defense):
        return plan  # nothing to transform: the simulator runs the members
    if not enabled:
        plan.skipped.append("--no-adapt-defense: the defended target is matched as it is")
        return plan
    names = [str(entry.get("name")) for entry in defense]
    aggregate = "secure-aggregation" in names
    for index, entry in enumerate(defense):
        name = names[index]
        later = set(names[index + 1 :])
        if name == "dp-sgd":
            plan.dp_clip = float(entry["clip"])
            plan.applied.append(f"dp-sgd: per-example clipping to C = {plan.dp_clip:g}")
        elif name == "prune":
            blockers = sorted(later & {"noise", "quantize"})
            if aggregate:
                plan.skipped.append(
                    "prune: each member pruned its own update; the aggregate shows only the "
                    "union of their supports"
                )
            elif blockers:
                plan.skipped.append(f"prune: {', '.join(blockers)} after it hides the support")
            else:
                masks = {n: (targets[n] != 0).to(targets[n].dtype) for n in matched}
                kept = sum(int(m.sum()) for m in masks.values())
                total = sum(m.numel() for m in masks.values())
                plan.transforms.append(("mask", masks))
                plan.applied.append(f"prune: the target's support ({kept} of {total} entries)")
        elif name == "clip":
            if set(matched) != set(trainable):
                plan.skipped.append("clip: the global norm needs every tensor (--layers all)")
            else:
                plan.transforms.append(("clip", float(entry["max_norm"])))
                plan.applied.append(f"clip: global norm to {float(entry['max_norm']):g}")
        elif name == "sign":
            plan.transforms.append(("sign", None))
            plan.applied.append("sign: the candidate's sign (straight-through gradient)")
        elif name in ("noise", "quantize"):
            plan.skipped.append(f"{name}: random, not simulated")
    return plan


def straight_through_sign(value: torch.Tensor) -> torch.Tensor:
    """sign(value) in the forward pass, the identity's gradient in the backward pass."""
    return value + (torch.sign(value) - value).detach()


def apply_transforms(tensors: Tensors, transforms: list[tuple[str, Any]]) -> Tensors:
    """One member's update after the planned transforms, in order (differentiable)."""
    out = dict(tensors)
    for kind, argument in transforms:
        if kind == "mask":
            out = {n: v * argument[n] for n, v in out.items()}
        elif kind == "clip":
            norm = torch.sqrt(sum(v.square().sum() for v in out.values()))
            scale = torch.clamp(argument / norm.clamp_min(1e-30), max=1.0)
            out = {n: v * scale for n, v in out.items()}
        elif kind == "sign":
            out = {n: straight_through_sign(v) for n, v in out.items()}
    return out
