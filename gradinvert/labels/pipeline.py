"""``labels_file``: the library call behind ``gradinvert labels`` — bound the memory from the
update's header, restore the labels, and score them against a truth file when one is given."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from gradinvert.config.labels import LabelsSettings
from gradinvert.io.files import labels_document, load_batch, load_update, read_update_shapes
from gradinvert.labels.restore import multiset_accuracy, restore_labels
from gradinvert.models.footprint import update_footprint
from gradinvert.runtime.errors import InvalidInputError
from gradinvert.runtime.memory import estimate_labels
from gradinvert.runtime.resources import check_memory

Log = Callable[[str], None]


def labels_file(
    update_path: str | Path,
    settings: LabelsSettings,
    truth_path: str | Path | None = None,
    log: Log = print,
) -> dict[str, Any]:
    """The labels document (``labels``, ``method``, ``batch_size``, ``details``, ``config``;
    with a truth file also ``accuracy`` and ``truth``) of the update at ``update_path``."""
    shapes = read_update_shapes(update_path)  # the header: the estimate comes before any value
    batch_size = settings.batch_size
    size = batch_size if batch_size is not None and batch_size > 0 else shapes.batch_size
    check_memory(estimate_labels(shapes, update_footprint(shapes), size or 1), settings.max_memory)
    update = load_update(update_path)
    truth_labels = None
    if truth_path is not None:
        truth_labels = load_batch(truth_path).labels.tolist()
        if not truth_labels:
            raise InvalidInputError(f"{truth_path}: holds no labels")
    result = restore_labels(update, settings.method, batch_size)
    document = labels_document(result.labels, result.method, details=result.details)
    if settings.method == "auto":
        log(f"auto chose method {result.method} ({result.details['reason']})")
    else:
        log(f"method {result.method}")
    for line in result.details.get("assumes", []):
        log(f"assumes: {line}")
    if truth_labels is not None:
        accuracy = multiset_accuracy(result.labels, truth_labels)
        document["accuracy"] = accuracy
        document["truth"] = truth_labels
        matched = round(accuracy * len(truth_labels))
        log(
            f"label accuracy (multiset) {accuracy:.1%}: {matched} of {len(truth_labels)} "
            f"truth labels matched by {result.method}"
        )
    document["config"] = settings.record()
    return document
