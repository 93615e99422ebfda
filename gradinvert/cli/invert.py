"""`gradinvert invert`: reconstruct the private batch behind an update file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from gradinvert.cli.common import (
    ModelFactoryOption,
    TrustCodeOption,
    console,
    handle_errors,
    parse_labels_option,
)
from gradinvert.cli.options import with_settings
from gradinvert.config.attack import PRESETS
from gradinvert.config.invert import InvertSettings
from gradinvert.runtime.errors import UsageError


def _paragraph(*parts: str) -> str:
    return " ".join(parts)


HELP = "\n\n".join(
    [
        "Reconstruct the images behind an update file (gradient or FedAvg delta).",
        _paragraph(
            "Pick a paper preset with --attack and override any of its settings.",
            "Without --labels the labels are restored from the update (as `gradinvert labels",
            "--method auto`); the dlg preset learns them jointly instead. The K seeds (--seeds)",
            "are optimized together in one vectorized computation; the output keeps the seed",
            "with the lowest final gradient distance (--pick best) or the seeds' registered",
            "group consensus (--pick consensus), never chosen by the truth.",
        ),
        _paragraph(
            "Search spaces (GIAS): --search x optimizes pixels; z the latents of --generator;",
            "w one copy of the generator per image with fixed latents; zw runs z for",
            "--latent-iterations with K restarts, then refines the restart with the lowest",
            "gradient distance in w for --iterations (one seed). The generator's output in",
            "[-1, 1] becomes pixels (G+1)/2 and must match the update's input shape (else exit",
            "65). --lr is the pixel learning rate; --latent-lr and --generator-lr the others.",
        ),
        "Presets (paper defaults):",
        *[f"{p.name}: {p.summary} ({p.source})" for p in PRESETS.values()],
        _paragraph(
            "git: one forward pass of a learned inverter (--inverter INV, from",
            "train-inverter); refused (exit 65) when the inverter was made for another model,",
            "input size, batch size or update kind. --init git --inverter INV starts every seed",
            "of an iterative attack (search x) at the inverter's estimate plus --init-noise σ",
            "(pixel units); --inverter-prior W adds W·mean((x − x_git)²) to every seed's loss.",
        ),
        _paragraph(
            "The BN prior's reference is the update's shared batch statistics when it carries",
            "them, else the model's running statistics (said on stderr and in the output's",
            "metadata). Ctrl-C stops after the current iteration and saves --checkpoint;",
            "--resume continues to the same result as an uninterrupted run. A seed whose loss",
            "turns non-finite restarts from fresh noise; after 10 restarts of one seed the run",
            "stops (exit 70). Exit codes: 2 usage, 65 invalid input (also a file that names",
            "code: see --trust-code), 66 missing input, 69 unavailable, 70 diverged or",
            "internal error, 130 interrupted (143 on SIGTERM, which stops like Ctrl-C).",
        ),
    ]
)


@handle_errors
@with_settings(
    InvertSettings,
    flags={"learn_labels": "--learn-labels/--restore-labels"},
    parsers={"labels": parse_labels_option},
)
def invert(
    update_path: Annotated[
        Path, typer.Argument(help="Update file (from capture).", metavar="UPDATE")
    ],
    *,
    out: Annotated[
        Path | None, typer.Option("--out", help="Reconstructed batch file to write.")
    ] = None,
    png_dir: Annotated[
        Path | None, typer.Option("--png-dir", help="Also write every image as a PNG here.")
    ] = None,
    checkpoint: Annotated[
        Path | None, typer.Option("--checkpoint", help="Save the run state here periodically.")
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from --checkpoint.")] = False,
    overwrite_checkpoint: Annotated[
        bool,
        typer.Option("--overwrite-checkpoint", help="Replace an existing --checkpoint afresh."),
    ] = False,
    no_progress: Annotated[
        bool, typer.Option("--no-progress", help="No progress bar on stderr.")
    ] = False,
    model: ModelFactoryOption = None,
    trust_code: TrustCodeOption = False,
    config: InvertSettings,
    given: dict[str, Any],
) -> None:
    from gradinvert.invert.pipeline import describe_result, invert_file
    from gradinvert.io.files import save_batch
    from gradinvert.io.images import PNG_NAMES, save_pngs
    from gradinvert.io.outputs import refuse_clobbering
    from gradinvert.runtime.checkpoint import check_checkpoint_options

    if out is None:
        raise UsageError("--out FILE is required (the reconstructed batch file to write)")
    refuse_clobbering(
        [update_path, given.get("labels"), config.inverter, config.generator,
         config.generator_weights],
        {"--out": out, "--checkpoint": checkpoint},
        {"--png-dir": (png_dir, PNG_NAMES)},
    )  # fmt: skip
    check_checkpoint_options(checkpoint, resume, overwrite_checkpoint)
    result = invert_file(
        update_path,
        config,
        progress=not no_progress,
        checkpoint=checkpoint,
        resume=resume,
        log=lambda message: console.print(message, soft_wrap=True),
    )
    save_batch(result, out, deterministic=True)
    if png_dir is not None:
        save_pngs(result.images, result.labels, png_dir)
    console.print(f"{describe_result(result, config)} -> {out}", soft_wrap=True)


invert.__doc__ = HELP
