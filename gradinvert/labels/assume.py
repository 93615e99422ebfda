"""What the label-restoration methods assume of a defended update (one line per defense)."""

from __future__ import annotations

from typing import Any

# Defenses that only rescale each example's (or the whole update's) contribution by a positive
# factor: the signs the presence test reads survive them.
POSITIVE_SCALINGS = {"clip", "secure-aggregation"}

ASSUMES: dict[str, str] = {
    "dp-sgd": (
        "DP-SGD: each example's terms in the bias and weight gradients are scaled by its clip "
        "factor min(1, C/||g_n||) <= 1 and N(0, (zC/B)^2) noise is added: count methods (ilrg, "
        "bias) undercount examples that were clipped, and every method needs the per-class terms "
        "to stand above the noise"
    ),
    "prune": (
        "top-k: entries pruned to zero carry no evidence; the last layer's bias gradient of the "
        "present classes is usually among the largest entries and survives"
    ),
    "clip": (
        "global clip: one positive scale for the whole update: signs and ratios hold, absolute "
        "counts (ilrg, bias) shrink with it"
    ),
    "noise": "noise: estimates are read through the added noise",
    "sign": (
        "signSGD: only signs remain: magnitudes, hence counts (ilrg, bias, llg), are not "
        "recoverable; a negative bias-gradient sign still marks a present class"
    ),
    "quantize": (
        "stochastic quantization: unbiased, with rounding noise up to max|g|/(2^(bits-1)-1) "
        "per entry"
    ),
    "secure-aggregation": (
        "secure aggregate: the labels restored are those of the members' union batch (the "
        "weighted mean of their mean-loss gradients is the union's mean-loss gradient)"
    ),
}


def label_assumptions(defense: list[dict[str, Any]]) -> list[str]:
    """One line per defense entry: what restoration assumes under it."""
    return [ASSUMES.get(str(e.get("name")), f"{e.get('name')}: unknown defense") for e in defense]


def signs_survive(defense: list[dict[str, Any]]) -> bool:
    """True when every defense keeps the signs of the gradient's per-class terms (no noise,
    no pruning or compression; DP-SGD only without noise)."""
    for entry in defense:
        name = entry.get("name")
        if name == "dp-sgd" and float(entry.get("noise_multiplier", 1)) == 0:
            continue
        if name not in POSITIVE_SCALINGS:
            return False
    return True
