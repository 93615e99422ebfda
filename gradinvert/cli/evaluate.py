"""`gradinvert evaluate`: score a reconstruction against the ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import torch
import typer

from gradinvert.cli.common import (
    DeviceOption,
    ModelFactoryOption,
    TrustCodeOption,
    console,
    emit_json,
    handle_errors,
    labelled,
)
from gradinvert.client.aggregate import union_truth
from gradinvert.io.batch_input import is_batch_path, load_any_batch, load_image_folder
from gradinvert.io.files import BatchFile, load_update
from gradinvert.io.images import load_images
from gradinvert.io.outputs import refuse_clobbering
from gradinvert.metrics import (
    LPIPS_NETS,
    MATCH_METHODS,
    Gate,
    check_gates,
    evaluate_batches,
    parse_gate,
    resolve_lpips,
)
from gradinvert.metrics.gates import gate_figure
from gradinvert.report.grid import save_result_grid
from gradinvert.report.tables import images_table, summary_table
from gradinvert.runtime.device import resolve_device
from gradinvert.runtime.errors import ExitCode, InvalidInputError, UsageError


def _load_pool(sources: list[Path], shape: tuple[int, int, int]) -> torch.Tensor | None:
    """Extra real images for IIP: batch files as they are, image files/folders resized."""
    channels, height, width = shape
    parts = []
    for source in sources:
        if is_batch_path(source):
            images = load_any_batch(source)[0].images
            if tuple(images.shape[1:]) != shape:
                raise InvalidInputError(
                    f"--pool {source}: images are {tuple(images.shape[1:])}, the truth {shape}"
                )
        else:
            size = height if height == width else None
            images, _ = load_images([source], size=size, channels=channels)
            if tuple(images.shape[1:]) != shape:
                raise InvalidInputError(
                    f"--pool {source}: images are {tuple(images.shape[1:])}, the truth {shape}"
                )
        parts.append(images)
    return torch.cat(parts) if parts else None


def _read(loaded: tuple[BatchFile, str | None]) -> BatchFile:
    batch, note = loaded
    if note:
        console.print(f"note: {note}", soft_wrap=True)
    return batch


def _shape(batch: BatchFile) -> tuple[int, int, int]:
    return tuple(batch.images.shape[1:])  # type: ignore[return-value]


@handle_errors
def evaluate(
    recon: Annotated[Path, typer.Argument(help="Reconstructed batch file.", metavar="RECON")],
    truth: Annotated[
        list[Path],
        typer.Option(
            "--truth",
            help="Ground truth: a batch file, plain images/labels safetensors, or an image folder; "
            "repeat for their union (e.g. the members of a secure aggregate, in order).",
        ),
    ],
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
    match: Annotated[
        str,
        typer.Option("--match", help="Match reconstructions to originals by mse, lpips or none."),
    ] = "mse",
    lpips: Annotated[
        str | None,
        typer.Option(
            "--lpips",
            help="LPIPS backbone: alex, vgg or off. Default: alex when its weights are "
            "available, otherwise LPIPS is reported as null with a warning.",
        ),
    ] = None,
    lpips_weights: Annotated[
        Path | None,
        typer.Option(
            "--lpips-weights",
            help="torchvision AlexNet/VGG-16 weights file (.pth or .safetensors) for LPIPS.",
        ),
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
    fail_above: Annotated[
        list[str] | None,
        typer.Option(
            "--fail-above",
            metavar="METRIC=VALUE",
            help="METRIC=VALUE (repeatable): exit 1 when leakage passes the bar. Metrics: psnr, "
            "psnr_registered, ssim, label_acc, iip (figure > VALUE) and lpips (mean < VALUE, "
            "since lower LPIPS is more leakage).",
        ),
    ] = None,
    model: ModelFactoryOption = None,
    trust_code: TrustCodeOption = False,
    device: DeviceOption = "auto",
) -> None:
    """Score reconstructions against the truth: PSNR, registered PSNR, SSIM, LPIPS, labels, IIP.

    Reconstructions are first matched one-to-one to originals (Hungarian assignment). PSNR of
    identical images is capped at 100 dB (MSE floored at 1e-10). Tables go to stderr; --json
    writes the data. Exit 1 when a --fail-above gate trips, 69 when LPIPS was asked for
    (--lpips, --match lpips or an lpips gate) but its backbone weights are not available.
    """
    gates: list[Gate] = [parse_gate(text) for text in fail_above or []]
    if match not in MATCH_METHODS:
        raise UsageError(f"--match must be one of {', '.join(MATCH_METHODS)}, got {match!r}")
    if lpips is not None and lpips not in (*LPIPS_NETS, "off"):
        raise UsageError(f"--lpips must be one of {', '.join(LPIPS_NETS)} or off, got {lpips!r}")
    lpips_needed = match == "lpips" or any(g.metric == "lpips" for g in gates)
    if lpips == "off" and lpips_needed:
        raise UsageError("--lpips off conflicts with --match lpips / --fail-above lpips=...")
    refuse_clobbering(
        [recon, *truth, truth_labels, lpips_weights, *(pool or []), update],
        {"--json": json_out, "--grid": grid},
    )
    torch_device = resolve_device(device)

    recon_batch = _read(load_any_batch(recon))
    if truth_labels is not None and (len(truth) != 1 or not truth[0].is_dir()):
        raise UsageError("--truth-labels is for one --truth folder of images")
    parts = [
        _read(load_image_folder(path, truth_labels, _shape(recon_batch)))
        if path.is_dir()
        else _read(load_any_batch(path))
        for path in truth
    ]
    truth_batch = parts[0] if len(parts) == 1 else union_truth(parts, [str(p) for p in truth])
    update_file = load_update(update) if update is not None else None
    pool_images = _load_pool(list(pool or []), tuple(truth_batch.images.shape[1:]))
    scorer, warning = resolve_lpips(
        lpips or "auto",
        lpips_weights,
        torch_device,
        required=lpips is not None or lpips_needed,
    )
    result = evaluate_batches(
        recon_batch,
        truth_batch,
        match=match,
        lpips="off",
        pool=pool_images,
        update=update_file,
        device=torch_device,
        lpips_scorer=scorer,
    )
    if warning:
        result["warnings"].insert(0, warning)
    result["recon"] = str(recon)
    result["truth"] = str(truth[0]) if len(truth) == 1 else [str(p) for p in truth]
    result["update"] = None if update is None else str(update)
    result["pool"] = [str(p) for p in pool or []]
    tripped = check_gates(result["summary"], gates)
    result["gates"] = [
        {
            "gate": str(g),
            "figure": gate_figure(result["summary"], g.metric),
            "tripped": any(t.startswith(f"{g}:") for t in tripped),
        }
        for g in gates
    ]

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
        result, truth_batch.images, recon_batch.images, grid
    ):
        console.print(labelled("warning:", "yellow", "no matched pairs, no grid written"))
    for message in tripped:
        console.print(labelled("gate tripped:", "bold red", message), soft_wrap=True)
    if tripped:
        raise typer.Exit(int(ExitCode.GATE_TRIPPED))
