"""`gradinvert train-prior`: train a DCGAN generator on a folder of images (a GIAS prior)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gradinvert.cli.common import console, handle_errors
from gradinvert.cli.options import with_settings
from gradinvert.config.train_prior import TrainPriorSettings
from gradinvert.runtime.errors import UsageError


def parse_betas(text: str) -> list[float]:
    """``--betas 0.5,0.999`` -> [0.5, 0.999] (how many, and their range, the settings check)."""
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise UsageError(f"--betas {text!r}: two numbers, e.g. 0.5,0.999") from None


HELP = "\n\n".join(
    [
        "Train a DCGAN generator adversarially on images, for --generator of the generative "
        "attacks.",
        "The standard DCGAN recipe (Radford et al. 2016): images centre-cropped and resized to "
        "--size and scaled to [-1, 1]; per step one discriminator update (binary cross-entropy, "
        "real vs. fake) and one generator update (non-saturating loss), both Adam (--lr 2e-4, "
        "--betas 0.5,0.999). --images takes files and folders; it may be repeated, and the files "
        "a shell glob expands to may follow it (--images d/0*.png d/1*.png). The images are "
        "used in the sorted order of their names, whatever order the command line gives.",
        "--upsample picks how the generator doubles its resolution: transpose (default, the "
        "official DCGAN layers: stride-2 transposed convolutions, which leave checkerboard "
        "artefacts) or nearest / bilinear (resize by 2, then a 3×3 convolution: no "
        "checkerboard; Odena et al. 2016). --ngf sets the generator's width (and the "
        "discriminator's); 64 is the official one. Both are recorded in the output, which "
        "loads back with them.",
        "The output is a generator file (safetensors) in eval-ready form: weights and BN "
        "running statistics, the architecture, and in its 'training' metadata the number of "
        "images, a SHA-256 of their sorted names and bytes, the settings, the last epoch's mean "
        "losses and the wall time; in its 'config' metadata the settings: `gradinvert inspect "
        "G.safetensors --print-config > run.toml`, then `train-prior --images DIR --config "
        "run.toml` replays the run. --half stores float16 weights (a 32 px DCGAN in about 7 MB). "
        "Same images, settings and --seed on CPU give the same weights.",
        "--samples writes a grid of 64 images from fixed latents, rewritten after every epoch. "
        "--checkpoint is written after every epoch and on Ctrl-C (which stops after the current "
        "step); --resume continues it to exactly the weights of an uninterrupted run, and may "
        "raise --epochs to train a finished run further.",
        "Exit codes: 2 usage (e.g. --size not 32 or 64, an unknown --upsample), 65 invalid "
        "input (a folder without images, an unreadable image or checkpoint), 66 missing input, "
        "69 unavailable device or "
        "more memory needed than --max-memory, "
        "70 diverged or internal error, 130 interrupted (143 on SIGTERM, which stops like Ctrl-C).",
    ]
)


@handle_errors
@with_settings(TrainPriorSettings, parsers={"betas": parse_betas})
def train_prior_command(
    more_images: Annotated[
        list[Path] | None,
        typer.Argument(
            help="More image files or folders (e.g. what a shell glob after --images expands to).",
            metavar="IMAGES",
            show_default=False,
        ),
    ] = None,
    *,
    out: Annotated[
        Path | None, typer.Option("--out", help="Generator file to write (.safetensors).")
    ] = None,
    images: Annotated[
        list[Path] | None,
        typer.Option("--images", help="Image files or folders (repeatable)."),
    ] = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option("--checkpoint", help="Save the run state here after every epoch."),
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from --checkpoint.")] = False,
    overwrite_checkpoint: Annotated[
        bool,
        typer.Option("--overwrite-checkpoint", help="Replace an existing --checkpoint afresh."),
    ] = False,
    samples: Annotated[
        Path | None,
        typer.Option("--samples", help="PNG grid of 64 generated images (every epoch)."),
    ] = None,
    no_progress: Annotated[
        bool, typer.Option("--no-progress", help="No progress bar (one line per epoch instead).")
    ] = False,
    config: TrainPriorSettings,
) -> None:
    from gradinvert.io.images import expand_image_paths
    from gradinvert.io.outputs import refuse_clobbering
    from gradinvert.priors.train import save_prior, train_prior
    from gradinvert.runtime.checkpoint import check_checkpoint_options
    from gradinvert.runtime.device import resolve_device
    from gradinvert.runtime.memory import train_prior_estimate
    from gradinvert.runtime.resources import check_memory

    sources = [*(images or []), *(more_images or [])]
    if not sources:
        raise UsageError("give the training images with --images DIR_OR_FILE...")
    if out is None:
        raise UsageError("give the generator file to write with --out G.safetensors")
    if out.is_dir():
        raise UsageError(f"--out {out}: is a folder, give a file name")
    refuse_clobbering(sources, {"--out": out, "--checkpoint": checkpoint, "--samples": samples})
    check_checkpoint_options(checkpoint, resume, overwrite_checkpoint)
    device = resolve_device(config.device)
    estimate = train_prior_estimate(expand_image_paths(sources), config)
    check_memory(estimate, config.max_memory, device)
    result = train_prior(
        sources,
        config,
        device,
        progress=not no_progress,
        checkpoint=checkpoint,
        resume=resume,
        samples=samples,
        log=lambda message: console.print(message, soft_wrap=True),
    )
    save_prior(result, out)
    training = result.training
    losses = training["losses"]
    megabytes = out.stat().st_size / 1e6
    console.print(
        f"train-prior: {training['images']} images, {training['epochs']} "
        f"epoch{'s' if training['epochs'] != 1 else ''} "
        f"({training['steps']} steps of {training['batch_size']}, {training['seconds']:.0f} s), "
        f"loss_D {losses['d']:.3f}  loss_G {losses['g']:.3f} -> {out} ({megabytes:.1f} MB"
        f"{', float16' if config.half else ''})"
        + (f"; samples -> {samples}" if samples is not None else ""),
        soft_wrap=True,
    )


train_prior_command.__doc__ = HELP
