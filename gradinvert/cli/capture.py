"""`gradinvert capture`: simulate one client and write its update and the ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import torch
import typer

from gradinvert.cli.common import DeviceOption, console, handle_errors
from gradinvert.client.capture import CaptureConfig, capture_clients, capture_update
from gradinvert.client.defenses import DefenseConfig
from gradinvert.client.dpsgd import DPConfig, describe_privacy
from gradinvert.io.batch_input import is_batch_path, load_any_batch
from gradinvert.io.files import (
    BatchFile,
    LocalTraining,
    check_labels,
    parse_labels,
    save_batch,
    save_update,
)
from gradinvert.io.images import expand_image_paths, load_images
from gradinvert.io.labelmaps import labels_for_images
from gradinvert.io.outputs import refuse_clobbering
from gradinvert.models import (
    NORMALIZATIONS,
    InputSpec,
    build_model,
    load_state,
    model_spec,
    read_state_dict,
)
from gradinvert.runtime.device import resolve_device
from gradinvert.runtime.errors import UsageError


def _select(count: int, start: int, batch_size: int | None) -> slice:
    """Images start … start + batch_size − 1 (default: to the end), checked to exist."""
    if start < 0:
        raise UsageError(f"--start {start}: must be at least 0")
    if start >= count:
        raise UsageError(f"--start {start}: only {count} images given (0 … {count - 1})")
    if batch_size is None:
        return slice(start, count)
    if batch_size < 1 or start + batch_size > count:
        raise UsageError(
            f"--batch-size {batch_size}"
            + (f" from --start {start}" if start else "")
            + f": only {count} images given"
        )
    return slice(start, start + batch_size)


def _load_inputs(
    sources: list[Path],
    size: int | None,
    labels_arg: str | None,
    start: int = 0,
    batch_size: int | None = None,
) -> tuple[torch.Tensor, list[int] | None, list[str]]:
    if len(sources) == 1 and is_batch_path(sources[0]):
        batch, note = load_any_batch(sources[0])
        if note:
            console.print(f"note: {note}", soft_wrap=True)
        chosen = _select(batch.images.shape[0], start, batch_size)
        images = batch.images[chosen]
        if size is not None and images.shape[-1] != size:
            images = torch.nn.functional.interpolate(
                images, size=(size, size), mode="bicubic", align_corners=False
            ).clamp(0, 1)
        labels = parse_labels(labels_arg) if labels_arg else batch.labels[chosen].tolist()
        indices = range(batch.images.shape[0])[chosen]
        return images, labels, [f"{sources[0]}[{i}]" for i in indices]
    paths = expand_image_paths(sources)
    paths = paths[_select(len(paths), start, batch_size)]
    labels, note = labels_for_images(paths, sources, labels_arg)
    if note:
        console.print(f"{note} (no --labels given)", soft_wrap=True)
    images, paths = load_images(paths, size)
    return images, labels, [str(p) for p in paths]


@handle_errors
def capture(
    images: Annotated[
        list[Path],
        typer.Option("--images", help="Image files, folders, or one batch file (repeatable)."),
    ],
    out: Annotated[Path, typer.Option("--out", help="Update file to write.")],
    truth: Annotated[
        Path | None, typer.Option("--truth", help="Also write the ground-truth batch file here.")
    ] = None,
    model: Annotated[
        str,
        typer.Option(
            "--model",
            help=(
                "lenet, convnet, cifar-resnet18, a torchvision classifier, "
                "or package.module:factory."
            ),
        ),
    ] = "convnet",
    num_classes: Annotated[int, typer.Option("--num-classes")] = 10,
    labels: Annotated[
        str | None,
        typer.Option(
            "--labels",
            help="Labels: inline '0,1,1,3', a labels JSON file, or a JSON map of file names "
            "to labels (default: the folder's labels.json).",
        ),
    ] = None,
    size: Annotated[
        int | None, typer.Option("--size", help="Resize the shorter side and center-crop.")
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", help="Use N images (from --start).")
    ] = None,
    start: Annotated[
        int, typer.Option("--start", help="First image to use (0-based, sorted inputs).")
    ] = 0,
    normalize: Annotated[
        str, typer.Option("--normalize", help="Input normalization: imagenet, cifar or none.")
    ] = "imagenet",
    init_seed: Annotated[int, typer.Option("--init-seed", help="Seed of the random init.")] = 0,
    weights: Annotated[
        Path | None,
        typer.Option("--weights", help="Model weights: .safetensors or state-dict .pt."),
    ] = None,
    mode: Annotated[str, typer.Option("--mode", help="BatchNorm mode: train or eval.")] = "eval",
    share_bn_stats: Annotated[
        bool, typer.Option("--share-bn-stats", help="Also store each BN layer's batch statistics.")
    ] = False,
    local_steps: Annotated[
        int, typer.Option("--local-steps", help="FedAvg: local SGD steps (0: one gradient).")
    ] = 0,
    local_lr: Annotated[
        float, typer.Option("--local-lr", help="FedAvg: local learning rate.")
    ] = 0.1,
    local_batch_size: Annotated[
        int | None,
        typer.Option("--local-batch-size", help="FedAvg: minibatch size (default: whole batch)."),
    ] = None,
    shuffle: Annotated[
        bool,
        typer.Option("--shuffle", help="FedAvg: seeded shuffled minibatches instead of slices."),
    ] = False,
    clip: Annotated[
        float | None, typer.Option("--clip", help="Clip the update's global L2 norm to C.")
    ] = None,
    noise: Annotated[
        float | None,
        typer.Option("--noise", help="Noise: Gaussian std, or Laplace scale b (std √2·b)."),
    ] = None,
    noise_kind: Annotated[str, typer.Option("--noise-kind", help="gaussian or laplace.")] = (
        "gaussian"
    ),
    prune: Annotated[
        float | None,
        typer.Option("--prune", help="Fraction of each tensor's smallest entries set to zero."),
    ] = None,
    sign: Annotated[
        bool, typer.Option("--sign", help="signSGD: share each entry's sign only (last step).")
    ] = False,
    quantize: Annotated[
        int | None,
        typer.Option(
            "--quantize",
            metavar="BITS",
            help="Stochastic uniform quantization per tensor (QSGD-style, unbiased, seeded): "
            "1 sign bit and 2^(BITS-1)-1 levels of the tensor's largest magnitude (last step).",
        ),
    ] = None,
    dp_clip: Annotated[
        float | None,
        typer.Option("--dp-clip", help="DP-SGD: clip each example's gradient to L2 norm C."),
    ] = None,
    dp_noise_multiplier: Annotated[
        float | None,
        typer.Option(
            "--dp-noise-multiplier",
            help="DP-SGD: noise N(0, (z·C)²) per coordinate on the clipped sum (needs --dp-clip).",
        ),
    ] = None,
    dataset_size: Annotated[
        int | None,
        typer.Option(
            "--dataset-size",
            help="DP-SGD: the client's dataset size N (sampling rate = step batch / N); "
            "without it no ε is computed.",
        ),
    ] = None,
    dp_delta: Annotated[float, typer.Option("--dp-delta", help="DP-SGD: the δ of (ε, δ).")] = 1e-5,
    rounds: Annotated[
        int,
        typer.Option("--rounds", help="DP-SGD: FL rounds the budget covers (steps = R × local)."),
    ] = 1,
    dp_accountant: Annotated[
        str, typer.Option("--dp-accountant", help="DP-SGD accountant (Opacus): rdp or prv.")
    ] = "rdp",
    clients: Annotated[
        int,
        typer.Option(
            "--clients",
            help="Simulate M clients on consecutive batches of --batch-size (client i seeded "
            "--seed + i) and write their secure aggregate; --truth gets the union.",
        ),
    ] = 1,
    seed: Annotated[int, typer.Option("--seed", help="Seed for shuffling, noise, dropout.")] = 0,
    device: DeviceOption = "auto",
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
    problems = []
    if mode not in ("train", "eval"):
        problems.append("--mode must be train or eval")
    if normalize not in NORMALIZATIONS:
        problems.append(f"--normalize must be one of {', '.join(NORMALIZATIONS)}")
    if dp_noise_multiplier is not None and dp_clip is None:
        problems.append("--dp-noise-multiplier needs --dp-clip C")
    if dp_clip is None and (dataset_size is not None or rounds != 1):
        problems.append("--dataset-size and --rounds are DP-SGD's accounting: give --dp-clip")
    if clients < 1:
        problems.append(f"--clients {clients}: must be at least 1")
    dp = None
    if dp_clip is not None:
        dp = DPConfig(
            dp_clip,
            dp_noise_multiplier or 0.0,
            dataset_size,
            dp_delta,
            rounds,
            dp_accountant,  # type: ignore[arg-type]
        )
        problems += dp.problems()
    defense = DefenseConfig(clip, noise, noise_kind, prune, sign, quantize)  # type: ignore[arg-type]
    problems += defense.problems()
    if problems:
        raise UsageError("; ".join(problems))
    refuse_clobbering([*images, labels, weights], {"--out": out, "--truth": truth})
    torch_device = resolve_device(device)
    wanted = None if batch_size is None else batch_size * clients
    pixels, label_list, names = _load_inputs(images, size, labels, start, wanted)
    if label_list is None:
        raise UsageError(
            "no labels: give --labels (inline list, labels JSON file, or a map of file names "
            "to labels), or put a labels.json map in the images' folder"
        )
    check_labels(label_list, pixels.shape[0], num_classes)

    mean, std = NORMALIZATIONS[normalize]
    channels = pixels.shape[1]
    input_spec = InputSpec(tuple(pixels.shape[1:]), mean[:channels], std[:channels])
    spec = model_spec(model, num_classes, input_spec.shape)
    net = build_model(spec, init_seed=init_seed)
    if weights is not None:
        load_state(net, read_state_dict(weights), str(weights))
    local = None
    if local_steps > 0:
        local = LocalTraining(
            local_steps, local_lr, local_batch_size or pixels.shape[0] // clients, shuffle
        )
    config = CaptureConfig(
        mode=mode,  # type: ignore[arg-type]
        local=local,
        defense=defense,
        share_bn_stats=share_bn_stats,
        seed=seed,
        dp=dp,
    )
    label_tensor = torch.tensor(label_list, dtype=torch.long)
    if clients > 1:
        update, _ = capture_clients(
            net, spec, input_spec, pixels, label_tensor, config, clients, torch_device
        )
    else:
        update = capture_update(net, spec, input_spec, pixels, label_tensor, config, torch_device)
    save_update(update, out)
    if truth is not None:
        save_batch(
            BatchFile(
                pixels,
                label_tensor,
                {"source": "capture", "files": names, "update": str(out)},
            ),
            truth,
        )
    what = "gradient" if local is None else f"FedAvg delta ({local.steps} local steps)"
    if clients > 1:
        what = f"secure aggregate of {clients} clients' {what}s"
    console.print(
        f"captured {what} of {spec.arch} on {pixels.shape[0]} images "
        f"{tuple(pixels.shape[1:])} -> {out}" + (f", truth -> {truth}" if truth else "")
    )
    for entry in update.defense:
        if entry.get("name") == "dp-sgd":
            console.print(describe_privacy(entry), soft_wrap=True)
