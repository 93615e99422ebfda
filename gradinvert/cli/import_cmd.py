"""`gradinvert import`: an update file from a real deployment's state dicts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gradinvert.cli.common import console, handle_errors
from gradinvert.cli.options import with_settings
from gradinvert.config.import_update import ImportSettings
from gradinvert.runtime.errors import UsageError


@handle_errors
@with_settings(ImportSettings)
def import_command(
    *,
    out: Annotated[Path | None, typer.Option("--out", help="Update file to write.")] = None,
    before: Annotated[
        Path | None,
        typer.Option("--before", help="Global model the client received (.pt or .safetensors)."),
    ] = None,
    after: Annotated[
        Path | None,
        typer.Option("--after", help="Client model after local training: gives a FedAvg delta."),
    ] = None,
    gradient: Annotated[
        Path | None,
        typer.Option("--gradient", help="State dict of the parameter gradients a client sent."),
    ] = None,
    config: ImportSettings,
) -> None:
    """Write an update file from state dicts a real FL deployment keeps.

    --before GLOBAL --after CLIENT: the FedAvg delta after − before. Give the client's local
    training (--local-steps, --local-lr, --local-batch-size, --shuffle) when known; without
    them it is recorded as unknown and `invert` says what it assumes. --gradient GRADS: a
    gradient update, at the weights of --before (else the seeded init, as in capture).

    Every tensor must fit the model (names, shapes, dtypes, finite values); all mismatches are
    reported at once (exit 65) and nothing is written. A .pt file is read without running code
    or reading values first: a tensor that declares more than the bytes it stores, or that
    overlaps another's bytes, is refused (65). Exit 69: more memory needed than --max-memory.
    """
    from gradinvert.client.pipeline import import_files
    from gradinvert.io.files import save_update
    from gradinvert.io.outputs import refuse_clobbering

    if out is None:
        raise UsageError("--out FILE is required (the update file to write)")
    refuse_clobbering([before, after, gradient], {"--out": out})
    update = import_files(before, after, gradient, config, lambda message: console.print(message))
    save_update(update, out)
    what = "gradient" if update.kind == "gradient" else "FedAvg delta"
    if update.kind == "delta" and update.local is None:
        what += " (local training unknown)"
    console.print(f"imported {what} of {update.model.arch} -> {out}", soft_wrap=True)
