"""Audit gates: ``--fail-above METRIC=VALUE`` trips when measured leakage passes a bar.

Leakage is "above the bar" when the summary figure shows *more* leakage than VALUE:
- psnr, psnr_registered, ssim: the batch mean is greater than VALUE;
- label_acc: the multiset label accuracy is greater than VALUE;
- iip: the image identifiability precision is greater than VALUE, in any feature space measured
  (pixels, and the model's penultimate features when an update was given);
- lpips: lower LPIPS means more leakage, so this gate trips when the mean LPIPS is *below* VALUE.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from gradinvert.runtime.errors import UsageError

# metric -> True when a larger value means more leakage
GATE_METRICS: dict[str, bool] = {
    "psnr": True,
    "psnr_registered": True,
    "ssim": True,
    "lpips": False,
    "label_acc": True,
    "iip": True,
}


@dataclass(frozen=True)
class Gate:
    """One leakage bar."""

    metric: str
    value: float

    def __str__(self) -> str:
        return f"{self.metric}={self.value:g}"


def parse_gate(text: str) -> Gate:
    """Parse ``METRIC=VALUE``; a malformed gate is a usage error (exit 2)."""
    metric, sep, raw = text.partition("=")
    metric = metric.strip().lower()
    if not sep or metric not in GATE_METRICS:
        raise UsageError(
            f"--fail-above {text!r}: expected METRIC=VALUE with METRIC one of "
            f"{', '.join(GATE_METRICS)}"
        )
    try:
        value = float(raw)
    except ValueError:
        raise UsageError(f"--fail-above {text!r}: {raw!r} is not a number") from None
    if not math.isfinite(value):
        raise UsageError(f"--fail-above {text!r}: the bar must be a finite number")
    return Gate(metric, value)


def gate_figure(summary: dict[str, Any], metric: str) -> float | None:
    """The summary figure a gate compares against (None when it was not measured)."""
    if metric == "iip":
        spaces = [v for v in (summary.get("iip_spaces") or {}).values() if v is not None]
        return max(spaces) if spaces else summary.get("iip")
    if metric == "label_acc":
        return summary.get("label_acc")
    block = summary.get(metric)
    return None if block is None else block["mean"]


def check_gates(summary: dict[str, Any], gates: list[Gate]) -> list[str]:
    """A message for every gate that tripped (empty when leakage stays under every bar).

    A gate whose figure was not measured (e.g. LPIPS unavailable) is reported as tripped: an
    audit must not pass on a figure it could not compute.
    """
    tripped = []
    for gate in gates:
        figure = gate_figure(summary, gate.metric)
        if figure is None:
            tripped.append(f"{gate}: {gate.metric} was not measured")
        elif GATE_METRICS[gate.metric] and figure > gate.value:
            tripped.append(f"{gate}: {gate.metric} {figure:.4g} > {gate.value:g}")
        elif not GATE_METRICS[gate.metric] and figure < gate.value:
            tripped.append(
                f"{gate}: {gate.metric} {figure:.4g} < {gate.value:g} (lower = more leak)"
            )
    return tripped
