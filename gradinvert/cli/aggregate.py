"""`gradinvert aggregate`: what a server sees under secure aggregation — the mean of M clients'
updates of one round."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gradinvert.cli.common import console, handle_errors
from gradinvert.cli.options import with_settings
from gradinvert.config.aggregate import AggregateSettings
from gradinvert.runtime.errors import UsageError


@handle_errors
@with_settings(AggregateSettings)
def aggregate(
    updates: Annotated[
        list[Path], typer.Argument(help="The clients' update files of one round (2 or more).")
    ],
    *,
    out: Annotated[
        Path | None, typer.Option("--out", help="Aggregated update file to write.")
    ] = None,
    truth: Annotated[
        list[Path] | None,
        typer.Option(
            "--truth",
            help="Each client's truth batch, in the order of the updates (repeat; with "
            "--truth-out).",
        ),
    ] = None,
    truth_out: Annotated[
        Path | None,
        typer.Option("--truth-out", help="Write the union of the --truth batches here."),
    ] = None,
    config: AggregateSettings,
) -> None:
    """Secure aggregation: write the FedAvg-weighted mean (weights: batch sizes) of M clients'
    updates of the same model and round, as the server sees it under SecAgg.

    The file records each member's batch size, local training and seed, so labels, invert and
    evaluate treat it as what it is: gradients are one batch of ΣB images; FedAvg deltas are M
    clients' local trainings, each simulated on its own slice of the candidate batch.

    Exit codes: 2 bad options; 65 an update is invalid, or the updates are not of one model,
    round (global state), kind, loss, BN mode, defense or local training (every mismatch is
    named); 66 a file is missing; 69 more memory needed than --max-memory.
    """
    from gradinvert.client.aggregate import aggregate_updates, members_of, union_truth
    from gradinvert.io.files import load_batch, load_update, save_batch, save_update
    from gradinvert.io.outputs import refuse_clobbering
    from gradinvert.io.tensorfile import read_header
    from gradinvert.runtime.errors import InvalidInputError
    from gradinvert.runtime.memory import estimate_inspect
    from gradinvert.runtime.resources import Estimate, check_memory

    if out is None:
        raise UsageError("--out is required")
    if len(updates) < 2:
        raise UsageError("aggregate needs 2 or more update files")
    if truth_out is not None and len(truth or []) != len(updates):
        raise UsageError(
            f"--truth-out needs one --truth per update ({len(updates)}), got {len(truth or [])}"
        )
    if truth and truth_out is None:
        raise UsageError("--truth names the members' truth batches for --truth-out: give it")
    refuse_clobbering([*updates, *(truth or [])], {"--out": out, "--truth-out": truth_out})
    estimates = [estimate_inspect(read_header(path)) for path in updates]
    need = sum(e.bytes for e in estimates) * 2  # the members and their mean
    check_memory(Estimate("aggregate", need, f"{len(updates)} update files", ""), config.max_memory)
    names = [str(path) for path in updates]
    result = aggregate_updates([load_update(path) for path in updates], names)
    result.config = config.record()
    if truth_out is not None:
        batches = [load_batch(path) for path in truth or []]
        sizes = [int(m["batch_size"]) for m in members_of(result) or []]
        wrong = [
            f"--truth {path}: {batch.images.shape[0]} images, its update {size}"
            for path, batch, size in zip(truth or [], batches, sizes, strict=True)
            if batch.images.shape[0] != size
        ]
        if wrong:
            raise InvalidInputError("; ".join(wrong))
    save_update(result, out)
    if truth_out is not None:
        save_batch(union_truth(batches, [str(p) for p in truth or []]), truth_out)
    console.print(
        f"aggregated {len(updates)} clients' {result.kind}s ({result.batch_size} images in all) "
        f"-> {out}" + (f", union truth -> {truth_out}" if truth_out else "")
    )
