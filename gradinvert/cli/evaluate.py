"""`gradinvert evaluate`: score reconstructions against the truth."""

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
    labelled,
)
from gradinvert.cli.options import with_settings
from gradinvert.config.evaluate import EvaluateSettings
from gradinvert.runtime.errors import ExitCode, UsageError


@handle_errors
@with_settings(EvaluateSettings)
def evaluate(
    recon: Annotated[Path, typer.Argument(help="Reconstructed batch file.", metavar="RECON")],
    *,
    truth: Annotated[
        list[Path] | None,
        typer.Option(
            "--truth",
            help="Ground truth: a batch file, plain images/labels safetensors, or an image folder; "
            "repeat for their union (e.g. the members of a secure aggregate, in order).",
        ),
    ] = None,
    truth_labels: Annotated[
        str | None,
        typer.Option(
            "--truth-labels",
            help="Labels of a --truth folder: inline '0,1,2,3', a labels JSON file, or a map of "
            "file names to labels (default: the folder's labels.json).",
        ),
    ] = None,
    json_out: Annotated[
        str | None,
        typer.Option(
            "--json", help="Write per-image scores and the summary as JSON ('-': stdout)."
        ),
    ] = None,
    grid: Annotated[
        Path | None,
        typer.Option("--grid", help="Write a PNG: originals over their matched reconstructions."),
    ] = None,
    pool: Annotated[
        list[Path] | None,
        typer.Option(
            "--pool",
            help="Extra real images for IIP: a folder, image file or batch file (repeatable).",
            metavar="PATH",
        ),
    ] = None,
    update: Annotated[
        Path | None,
        typer.Option(
            "--update", help="The attacked update: adds IIP in the model's penultimate features."
        ),
    ] = None,
    model: ModelFactoryOption = None,
    trust_code: TrustCodeOption = False,
    config: EvaluateSettings,
) -> None:
    """Score reconstructions against the truth: PSNR, registered PSNR, SSIM, LPIPS, labels, IIP.

    Reconstructions are first matched one-to-one to originals (Hungarian assignment). PSNR of
    identical images is capped at 100 dB (MSE floored at 1e-10). Tables go to stderr; --json
    writes the data. Exit 1 when a --fail-above gate trips, 69 when LPIPS was asked for
    (--lpips, --match lpips or an lpips gate) but its backbone weights are not available.
    """
    from gradinvert.io.outputs import refuse_clobbering
    from gradinvert.metrics.pipeline import evaluate_files
    from gradinvert.report.grid import save_result_grid
    from gradinvert.report.tables import images_table, summary_table

    if not truth:
        raise UsageError("--truth is required (the ground truth to score against)")
    refuse_clobbering(
        [recon, *truth, truth_labels, config.lpips_weights, *(pool or []), update],
        {"--json": json_out, "--grid": grid},
    )
    say = lambda message: console.print(message, soft_wrap=True)  # noqa: E731
    scored = evaluate_files(
        recon, truth, config, truth_labels=truth_labels, pool=pool, update_path=update, log=say
    )
    result = scored.result
    for line in result.get("privacy", []):
        console.print(f"privacy of the attacked update: {line}", soft_wrap=True)
    for note in result["warnings"]:
        console.print(labelled("warning:", "yellow", note), soft_wrap=True)
    if result["images"]:
        console.print(images_table(result))
    console.print(summary_table(result))
    if json_out is not None:
        emit_json(result, json_out)
    if grid is not None and not save_result_grid(
        result, scored.truth.images, scored.recon.images, grid
    ):
        console.print(labelled("warning:", "yellow", "no matched pairs, no grid written"))
    for message in scored.tripped:
        console.print(labelled("gate tripped:", "bold red", message), soft_wrap=True)
    if scored.tripped:
        raise typer.Exit(int(ExitCode.GATE_TRIPPED))
