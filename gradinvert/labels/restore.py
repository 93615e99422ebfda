"""`restore_labels`: pick a method for an update and restore the batch's labels."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from gradinvert.io.files import UpdateFile
from gradinvert.labels.assume import label_assumptions, signs_survive
from gradinvert.labels.layer import LastLayerUpdate, last_layer_update
from gradinvert.labels.methods import (
    bias_counts,
    counts_to_labels,
    idlg_label,
    ilrg_counts,
    llg_counts,
    mean_feature_confidence,
    present_classes,
    yin_labels,
)
from gradinvert.runtime.errors import UsageError

# auto leaves ilrg for the bias-only estimate when the model's top softmax probability at the
# batch-mean feature reaches this (or 3/C): the mark of a trained, confident model, where the
# class-mean softmax of ilrg errs more than a uniform one (benchmarks/results/labels.md).
CONFIDENT = 0.3

METHODS: dict[str, str] = {
    "auto": "idlg for one sample; with a bias ilrg, or bias when the model is confident; else llg",
    "idlg": "batch of one: most negative weight-gradient row sum (Zhao et al. 2020)",
    "yin": "distinct labels: B most negative per-class feature minima (Yin et al. 2021)",
    "ilrg": "per-class counts from weight and bias gradients (Ma et al. 2023), repeats allowed",
    "llg": "greedy counts from weight-gradient row sums (LLG-style), no bias needed",
    "bias": "counts from the bias gradient with a uniform softmax (auto's choice when confident)",
}


@dataclass
class LabelResult:
    """Restored labels (sorted), the method actually used, and method diagnostics."""

    labels: list[int]
    method: str
    details: dict[str, Any] = field(default_factory=dict)


def multiset_accuracy(predicted: list[int], truth: list[int]) -> float:
    """Share of the truth multiset matched: Σ_c min(#pred_c, #truth_c) / len(truth)."""
    if not truth:
        raise ValueError("the truth holds no labels")
    pred_counts, truth_counts = Counter(predicted), Counter(truth)
    return sum(min(n, pred_counts[c]) for c, n in truth_counts.items()) / len(truth)


def _batch_size_error(method: str) -> UsageError:
    return UsageError(
        f"method {method}: the batch size is unknown (the update does not record it); "
        "give it with --batch-size N"
    )


def _choose(method: str, data: LastLayerUpdate, batch_size: int | None) -> tuple[str, str]:
    """Resolve ``auto`` and check that the method fits the update; return (method, reason)."""
    layer = data.layer.module
    has_bias = data.grad_b is not None
    if method == "auto":
        if batch_size is None:
            raise _batch_size_error(method)
        if batch_size == 1:
            return "idlg", "batch of one"
        if has_bias and data.scale_known:
            assert data.grad_b is not None and data.bias is not None
            confidence = mean_feature_confidence(data.grad_w, data.grad_b, data.weight, data.bias)
            if confidence >= max(CONFIDENT, 3 / data.layer.num_classes):
                return "bias", (
                    f"last layer {layer!r} has a bias; the model is confident (top softmax "
                    f"{confidence:.2f} at the batch-mean feature); batch size {batch_size}"
                )
            return "ilrg", f"last layer {layer!r} has a bias; batch size {batch_size}"
        why = f"last layer {layer!r} has no bias" if not has_bias else "delta scale unknown"
        return "llg", f"{why}; batch size {batch_size}"
    if method == "idlg":
        if batch_size not in (None, 1):
            raise UsageError(f"method idlg restores one label; the batch size is {batch_size}")
        return method, "requested"
    if batch_size is None:
        raise _batch_size_error(method)
    if method in ("ilrg", "bias"):
        if not has_bias:
            raise UsageError(
                f"method {method} needs the last layer's bias gradient; {layer!r} has none "
                "(use llg or yin)"
            )
        if not data.scale_known:
            raise UsageError(
                f"method {method} needs the delta's scale, but the update records no local "
                "learning rate and steps (use llg or yin)"
            )
    return method, "requested"


def restore_labels(
    update: UpdateFile, method: str = "auto", batch_size: int | None = None
) -> LabelResult:
    """Restore the labels of the batch behind ``update`` from its last linear layer.

    ``batch_size`` overrides the batch size recorded in the update. Raises ``UsageError`` for an
    unknown method, a method the update does not allow, or an unknown batch size, and
    ``InvalidInputError`` when the model has no linear output layer.
    """
    if method not in METHODS:
        raise UsageError(f"unknown label method {method!r}: use one of {', '.join(METHODS)}")
    if batch_size is not None and batch_size < 1:
        raise UsageError(f"batch size must be at least 1, got {batch_size}")
    size = batch_size if batch_size is not None else update.batch_size
    data = last_layer_update(update)
    chosen, reason = _choose(method, data, size)
    details: dict[str, Any] = {
        "layer": data.layer.module,
        "kind": update.kind,
        "reason": reason,
        "batch_size_source": "argument" if batch_size is not None else "update",
    }
    if update.kind == "delta":
        details["delta_scale"] = data.scale if data.scale_known else None
    if update.defense:
        details["warning"] = (
            "the update was defended ("
            + ", ".join(str(d.get("name", d)) for d in update.defense)
            + "): count-based estimates assume an unaltered gradient"
        )
        details["assumes"] = label_assumptions(update.defense)
    present = None
    if data.layer.nonnegative_features and signs_survive(update.defense):
        present = present_classes(data.grad_w)
    details["presence_test"] = present is not None
    if chosen == "idlg":
        labels = [idlg_label(data.grad_w)]
    elif chosen == "yin":
        assert size is not None
        labels = yin_labels(data.grad_w, size)
    else:
        assert size is not None
        if chosen == "ilrg":
            assert data.grad_b is not None and data.bias is not None
            result = ilrg_counts(
                data.grad_w,
                data.grad_b,
                data.weight,
                data.bias,
                size,
                trajectory=data.trajectory,
                present=present,
            )
        elif chosen == "bias":
            assert data.grad_b is not None
            result = bias_counts(data.grad_b, size, present)
        else:
            result = llg_counts(data.grad_w, size, present)
        labels = counts_to_labels(result.counts)
        details.update(result.details)
    details["counts"] = {str(c): n for c, n in sorted(Counter(labels).items())}
    return LabelResult(sorted(labels), chosen, details)
