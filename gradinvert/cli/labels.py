"""`gradinvert labels`: restore the labels of the batch behind an update file."""

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
from gradinvert.cli.options import with_settings
from gradinvert.config.labels import LabelsSettings
from gradinvert.runtime.errors import UsageError


@handle_errors
@with_settings(LabelsSettings)
def labels(
    update: Annotated[Path, typer.Argument(help="Update file written by capture.")],
    *,
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
    model: ModelFactoryOption = None,
    trust_code: TrustCodeOption = False,
    config: LabelsSettings,
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
    from gradinvert.io.files import write_labels
    from gradinvert.io.outputs import refuse_clobbering
    from gradinvert.labels.pipeline import labels_file

    if out not in (None, "-") and Path(out).is_dir():
        raise UsageError(f"--out {out}: is a folder, give a file name")
    refuse_clobbering([update, truth], {"--out": out})
    document = labels_file(update, config, truth, log=lambda message: console.print(message))
    if out in (None, "-"):
        emit_json(document)
    else:
        write_labels(document, out)
        console.print(f"{len(document['labels'])} labels ({document['method']}) -> {out}")
