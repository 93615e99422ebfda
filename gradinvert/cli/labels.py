"""`gradinvert labels`: restore a batch's labels from its update."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gradinvert.cli.common import (
    ModelFactoryOption,
    TrustCodeOption,
    console,
    emit_json,
    handle_errors,
)
from gradinvert.io.files import (
    labels_document,
    load_batch,
    load_update,
    read_update_shapes,
    write_labels,
)
from gradinvert.io.outputs import refuse_clobbering
from gradinvert.labels import multiset_accuracy, restore_labels
from gradinvert.models.footprint import update_footprint
from gradinvert.runtime.errors import InvalidInputError, UsageError
from gradinvert.runtime.memory import estimate_labels
from gradinvert.runtime.resources import MaxMemoryOption, check_memory


@handle_errors
def labels(
    update: Annotated[Path, typer.Argument(help="Update file written by capture.")],
    method: Annotated[
        str,
        typer.Option("--method", help="auto, idlg, yin, ilrg, llg or bias (see below)."),
    ] = "auto",
    out: Annotated[
        str | None,
        typer.Option("--out", help="Labels JSON file to write (default or '-': stdout)."),
    ] = None,
    truth: Annotated[
        Path | None,
        typer.Option(
            "--truth", help="Ground-truth batch file: also score the multiset label accuracy."
        ),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option("--batch-size", help="Batch size, when the update does not record it."),
    ] = None,
    model: ModelFactoryOption = None,
    trust_code: TrustCodeOption = False,
    max_memory: MaxMemoryOption = None,
) -> None:
    """Restore the labels of the batch behind an update from its last linear layer.

    Methods: idlg (one sample), yin (distinct labels), ilrg (per-class counts from the weight
    and bias gradients; repeated labels), llg (greedy counts from the weight gradient; for a
    layer without bias), bias (bias gradient only), auto (idlg for one sample, ilrg when the
    last layer has a bias, else llg). Writes {"labels", "method", "batch_size", ...}; with
    --truth also "accuracy" (share of the truth multiset matched) and "truth".

    Exit codes: 0 done; 2 bad option, or batch size unknown (give --batch-size);
    65 not an update file, invalid metadata or tensors, the model has no linear output
    layer, or the file names code nobody vouched for (see --trust-code); 66 file missing;
    69 the estimated memory exceeds --max-memory.
    """
    if out not in (None, "-") and Path(out).is_dir():
        raise UsageError(f"--out {out}: is a folder, give a file name")
    refuse_clobbering([update, truth], {"--out": out})
    shapes = read_update_shapes(update)  # the header: the estimate comes before any value
    size = batch_size if batch_size is not None and batch_size > 0 else shapes.batch_size
    footprint = update_footprint(shapes)
    check_memory(estimate_labels(shapes, footprint, size or 1), max_memory)
    update_file = load_update(update)
    truth_labels = None
    if truth is not None:
        truth_labels = load_batch(truth).labels.tolist()
        if not truth_labels:
            raise InvalidInputError(f"{truth}: holds no labels")
    result = restore_labels(update_file, method, batch_size)
    document = labels_document(result.labels, result.method, details=result.details)
    if method == "auto":
        console.print(f"auto chose method {result.method} ({result.details['reason']})")
    else:
        console.print(f"method {result.method}")
    for line in result.details.get("assumes", []):
        console.print(f"assumes: {line}", soft_wrap=True)
    if truth_labels is not None:
        accuracy = multiset_accuracy(result.labels, truth_labels)
        document["accuracy"] = accuracy
        document["truth"] = truth_labels
        matched = round(accuracy * len(truth_labels))
        console.print(
            f"label accuracy (multiset) {accuracy:.1%}: {matched} of {len(truth_labels)} "
            f"truth labels matched by {result.method}"
        )
    if out in (None, "-"):
        emit_json(document)
    else:
        write_labels(document, out)
        console.print(f"{len(result.labels)} labels ({result.method}) -> {out}")
