"""`gradinvert train-inverter`: train a learned inverter (GIT or LTI's MLP) for a template."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gradinvert.cli.common import ModelFactoryOption, TrustCodeOption, console, handle_errors
from gradinvert.cli.options import with_settings
from gradinvert.config.train_inverter import TrainInverterSettings
from gradinvert.runtime.errors import UsageError

HELP = "\n\n".join(
    [
        "Train an inverter that maps an update to its images in one forward pass, for "
        "`invert --attack git` and `invert --init git`.",
        "TEMPLATE is an update file: it fixes the model and its global weights, the input size "
        "and normalization, the update kind (gradient or FedAvg delta with its local "
        "settings), the BN mode, the batch size and the defenses. Training pairs are made from "
        "--images exactly as `capture` makes updates (the same function), with the labels of "
        "the images' labels file (--labels MAP.json, or a labels.json in the folder) or, "
        "without one, labels drawn uniformly over the classes (said on stderr and recorded). "
        "The images are split (seeded) into training and validation images (--val-fraction); "
        "--augment adds defenses to every pair (noise:STD, laplace:SCALE, prune:FRACTION, "
        "clip:NORM, comma-separated), on top of the template's.",
        "--arch git (default) mirrors the model's back-propagation layer by layer (README, "
        "'Learned inversion'); --arch mlp is LTI's baseline (hidden 3000-3000, a seeded count "
        "sketch of updates longer than --max-inputs). Adam (git lr 1e-3, mlp 1e-4), lr ×0.1 "
        "after 75 % of the epochs, validation MSE every epoch, the best epoch's weights kept, "
        "early stop after --patience epochs without improvement.",
        "--pairs-cache DIR keeps the encoded pairs on disk, keyed by everything that makes "
        "them. --checkpoint is written every epoch and on Ctrl-C (which stops after the current "
        "step); --resume continues to exactly the weights of an uninterrupted run. The inverter "
        "file records the settings: `gradinvert inspect INV --print-config > run.toml`, then "
        "`train-inverter TEMPLATE --images DIR --config run.toml` replays the run.",
        "Exit codes: 2 usage (e.g. fewer images than two batches), 65 invalid input (a template "
        "that is not an update file or names code: see --trust-code; a model GIT cannot mirror "
        "is 2), 66 missing input, 69 unavailable device or more memory needed than "
        "--max-memory, 130 interrupted (143 on SIGTERM, which stops like Ctrl-C).",
    ]
)


@handle_errors
@with_settings(TrainInverterSettings)
def train_inverter_command(
    template_path: Annotated[
        Path, typer.Argument(help="Template update file (from capture).", metavar="TEMPLATE")
    ],
    *,
    out: Annotated[
        Path | None, typer.Option("--out", help="Inverter file to write (.safetensors).")
    ] = None,
    images: Annotated[
        list[Path] | None,
        typer.Option("--images", help="Auxiliary image files or folders (repeatable)."),
    ] = None,
    labels: Annotated[
        str | None,
        typer.Option("--labels", help="A JSON map of file names to labels (default: labels.json)."),
    ] = None,
    pairs_cache: Annotated[
        Path | None, typer.Option("--pairs-cache", help="Keep the encoded pairs in this folder.")
    ] = None,
    checkpoint: Annotated[
        Path | None, typer.Option("--checkpoint", help="Save the run state here every epoch.")
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from --checkpoint.")] = False,
    overwrite_checkpoint: Annotated[
        bool,
        typer.Option("--overwrite-checkpoint", help="Replace an existing --checkpoint afresh."),
    ] = False,
    no_progress: Annotated[
        bool, typer.Option("--no-progress", help="No progress bars on stderr.")
    ] = False,
    model: ModelFactoryOption = None,
    trust_code: TrustCodeOption = False,
    config: TrainInverterSettings,
) -> None:
    import torch

    from gradinvert.inverter import save_inverter, train_inverter
    from gradinvert.inverter.footprint import estimate_train_inverter
    from gradinvert.inverter.train import PAIRS_CACHE_NAMES
    from gradinvert.io.batch_input import load_client_batch
    from gradinvert.io.files import load_update, read_update_shapes
    from gradinvert.io.outputs import refuse_clobbering
    from gradinvert.models.footprint import check_update_model
    from gradinvert.runtime.checkpoint import check_checkpoint_options
    from gradinvert.runtime.device import resolve_device
    from gradinvert.runtime.resources import check_memory

    if out is None:
        raise UsageError("--out FILE is required (the inverter file to write)")
    if not images:
        raise UsageError("--images DIR_OR_FILE is required (the auxiliary images)")
    refuse_clobbering(
        [template_path, *images, labels],
        {"--out": out, "--checkpoint": checkpoint},
        {"--pairs-cache": (pairs_cache, PAIRS_CACHE_NAMES)},
    )
    check_checkpoint_options(checkpoint, resume, overwrite_checkpoint)
    device = resolve_device(config.device)
    shapes = read_update_shapes(template_path)
    check_update_model(shapes)  # before any image is read: a model that cannot be built
    say = lambda message: console.print(message, soft_wrap=True)  # noqa: E731
    pixels, label_list, _ = load_client_batch(images, config.size, labels, log=say)
    check_memory(
        estimate_train_inverter(shapes, config, pixels.shape[0]), config.max_memory, device
    )
    template = load_update(template_path)
    label_tensor = None if label_list is None else torch.tensor(label_list, dtype=torch.long)
    if label_tensor is None:
        console.print(
            f"no labels file: each pair's labels are drawn uniformly over the "
            f"{template.model.num_classes} classes",
            soft_wrap=True,
        )
    result = train_inverter(
        template,
        pixels,
        label_tensor,
        config,
        pairs_cache=pairs_cache,
        checkpoint=checkpoint,
        resume=resume,
        progress=not no_progress,
        log=say,
        device=device,
    )
    summary = result.summary
    summary["template"] = str(template_path)
    save_inverter(out, result.inverter, template, summary, config=result.config)
    console.print(
        f"{config.arch} inverter: {summary['pairs']} pairs, {summary['epochs_run']} epochs, best "
        f"validation MSE {summary['best_val_mse']:.4g} (epoch {summary['best_epoch']}) -> {out}",
        soft_wrap=True,
    )


train_inverter_command.__doc__ = HELP
