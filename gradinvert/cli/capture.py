"""`gradinvert capture`: simulate one client and write its update and the ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gradinvert.cli.common import console, handle_errors
from gradinvert.cli.options import with_settings
from gradinvert.config.capture import CaptureSettings
from gradinvert.runtime.errors import UsageError


@handle_errors
@with_settings(CaptureSettings)
def capture(
    *,
    images: Annotated[
        list[Path] | None,
        typer.Option("--images", help="Image files, folders, or one batch file (repeatable)."),
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Update file to write.")] = None,
    truth: Annotated[
        Path | None, typer.Option("--truth", help="Also write the ground-truth batch file here.")
    ] = None,
    config: CaptureSettings,
    given: dict[str, object],
) -> None:
    """Simulate one FL client on a batch: write its update file and the ground-truth batch.

    --start I --batch-size N takes images I … I+N−1 of the inputs (folders in sorted order),
    so a shell loop can make a stream of client batches. A folder's images get their labels
    from --labels MAP.json ({"0000.png": 0, ...}) or, without --labels, from a labels.json map
    inside the folder.

    By default the update is one gradient of the mean cross-entropy. With --local-steps the
    client runs plain SGD and shares the weight delta (new − old); minibatches are consecutive
    slices of the batch in order, wrapping around, unless --shuffle is given.

    Defenses, in this order: DP-SGD (--dp-clip, --dp-noise-multiplier: per-example clipping
    and noise in every gradient step, ε from Opacus's accountant), --prune, --clip, --noise,
    then --sign or --quantize; --clients M then shows only the M clients' secure aggregate.
    """
    from gradinvert.client.pipeline import capture_files, describe_capture
    from gradinvert.io.describe import privacy_lines
    from gradinvert.io.files import save_batch, save_update
    from gradinvert.io.outputs import refuse_clobbering

    if not images or out is None:
        raise UsageError("--images and --out are required")
    refuse_clobbering([*images, config.labels, config.weights], {"--out": out, "--truth": truth})
    update, batch = capture_files(images, config, lambda message: console.print(message))
    save_update(update, out)
    if truth is not None:
        batch.metadata["update"] = str(out)
        save_batch(batch, truth)
    console.print(
        f"{describe_capture(update, batch.images.shape[0])} -> {out}"
        + (f", truth -> {truth}" if truth else "")
    )
    for line in privacy_lines(update.defense):
        console.print(line, soft_wrap=True)
