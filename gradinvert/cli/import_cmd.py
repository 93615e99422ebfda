"""`gradinvert import`: an update file from a real deployment's state dicts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gradinvert.cli.common import console, handle_errors
from gradinvert.client.import_update import ClientSettings, build_update, read_inputs
from gradinvert.io.files import LocalTraining, save_update
from gradinvert.io.outputs import refuse_clobbering
from gradinvert.models import NORMALIZATIONS, InputSpec, model_spec
from gradinvert.models.footprint import meta_model
from gradinvert.runtime.errors import UsageError
from gradinvert.runtime.memory import estimate_import
from gradinvert.runtime.resources import MaxMemoryOption, check_memory


def parse_shape(text: str) -> tuple[int, int, int]:
    """``C,H,W`` as three positive integers."""
    try:
        shape = tuple(int(part) for part in text.replace(" ", "").split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise UsageError(f"--input-shape {text!r}: give C,H,W, e.g. 3,32,32")
    return shape  # type: ignore[return-value]


def local_settings(
    steps: int | None, lr: float | None, batch_size: int | None, shuffle: bool, batch: int | None
) -> LocalTraining | None:
    """The client's local training from the flags; None when none of them is given."""
    if steps is None and lr is None and batch_size is None and not shuffle:
        return None
    if steps is None or lr is None:
        raise UsageError("give both --local-steps and --local-lr (or no local flags: unknown)")
    if steps < 1 or lr <= 0:
        raise UsageError("--local-steps must be at least 1 and --local-lr positive")
    if batch_size is None and batch is None:
        raise UsageError("local training needs --local-batch-size or --batch-size")
    return LocalTraining(steps, lr, batch_size or batch, shuffle)  # type: ignore[arg-type]


@handle_errors
def import_command(
    out: Annotated[Path, typer.Option("--out", help="Update file to write.")],
    model: Annotated[
        str,
        typer.Option("--model", help="The deployed architecture (as in capture)."),
    ],
    input_shape: Annotated[
        str, typer.Option("--input-shape", help="The model's input C,H,W, e.g. 3,32,32.")
    ],
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
    num_classes: Annotated[int, typer.Option("--num-classes")] = 10,
    normalize: Annotated[
        str, typer.Option("--normalize", help="Input normalization: imagenet, cifar or none.")
    ] = "imagenet",
    mode: Annotated[str, typer.Option("--mode", help="BatchNorm mode: train or eval.")] = "eval",
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", help="The client's batch size, if known.")
    ] = None,
    local_steps: Annotated[
        int | None, typer.Option("--local-steps", help="Delta: the client's local SGD steps.")
    ] = None,
    local_lr: Annotated[
        float | None, typer.Option("--local-lr", help="Delta: the local learning rate.")
    ] = None,
    local_batch_size: Annotated[
        int | None,
        typer.Option("--local-batch-size", help="Delta: minibatch size (default: --batch-size)."),
    ] = None,
    shuffle: Annotated[
        bool, typer.Option("--shuffle", help="Delta: the client shuffled its minibatches.")
    ] = False,
    init_seed: Annotated[
        int, typer.Option("--init-seed", help="Gradient without --before: the seeded init.")
    ] = 0,
    max_memory: MaxMemoryOption = None,
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
    if mode not in ("train", "eval"):
        raise UsageError("--mode must be train or eval")
    if normalize not in NORMALIZATIONS:
        raise UsageError(f"--normalize must be one of {', '.join(NORMALIZATIONS)}")
    refuse_clobbering([before, after, gradient], {"--out": out})
    shape = parse_shape(input_shape)
    mean, std = NORMALIZATIONS[normalize]
    input_spec = InputSpec(shape, mean[: shape[0]], std[: shape[0]])
    spec = model_spec(model, num_classes, shape)
    local = local_settings(local_steps, local_lr, local_batch_size, shuffle, batch_size)
    if gradient is not None and local is not None:
        raise UsageError("--local-* describe a delta (--before/--after), not a --gradient")
    meta = meta_model(spec)
    if meta is not None:  # a user factory that does not build on meta: size unknown
        check_memory(estimate_import(meta), max_memory)
    inputs, digests = read_inputs(before, after, gradient)
    source = {
        "tool": "import",
        "files": dict(inputs.names),
        "sha256": digests,
        "global": "before" if before is not None else f"seeded init {init_seed}",
    }
    if gradient is None:
        source["local"] = "given" if local is not None else "unknown"
    settings = ClientSettings(mode, batch_size, local)  # type: ignore[arg-type]
    update = build_update(spec, input_spec, inputs, settings, source, init_seed)
    if before is None:
        console.print(f"no --before: the global model is {spec.arch}'s seeded init {init_seed}")
    save_update(update, out)
    what = "gradient" if update.kind == "gradient" else "FedAvg delta"
    if update.kind == "delta" and local is None:
        what += " (local training unknown)"
    console.print(f"imported {what} of {spec.arch} -> {out}", soft_wrap=True)
