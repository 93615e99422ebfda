"""``invert_file``: the library call behind ``gradinvert invert`` — read an update, bound the
run's memory, run the configured attack (or one pass of a learned inverter), and return the
reconstructed batch with its metadata."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from gradinvert.config.invert import LEARNED, InvertSettings
from gradinvert.io.files import BatchFile, UpdateFile, load_update, read_update_shapes
from gradinvert.runtime.device import resolve_device
from gradinvert.runtime.errors import UsageError

Log = Callable[[str], None]


def invert_file(
    update_path: str | Path,
    config: InvertSettings,
    *,
    progress: bool = True,
    checkpoint: Path | None = None,
    resume: bool = False,
    log: Log = print,
) -> BatchFile:
    """Reconstruct the batch behind the update file at ``update_path`` as ``config`` says. The
    run's memory is estimated from the file's header before any value is read."""
    from gradinvert.runtime.resources import check_memory

    device = resolve_device(config.device)
    shapes = read_update_shapes(update_path)
    if config.attack == LEARNED:
        if checkpoint is not None or resume:
            raise UsageError(f"--attack {LEARNED} is one forward pass: it takes no --checkpoint")
        result = _invert_with_inverter(update_path, shapes, config, device, log)
    else:
        from gradinvert.invert.attack import run_attack
        from gradinvert.runtime.allocator import keep_freed_memory
        from gradinvert.runtime.memory import invert_estimate

        if device.type == "cpu":
            keep_freed_memory()
        check_memory(invert_estimate(shapes, config, config.labels), config.max_memory, device)
        result = run_attack(
            load_update(update_path),
            config.labels,
            config,
            device,
            progress=progress,
            checkpoint=checkpoint,
            resume=resume,
            checkpoint_every=config.checkpoint_every,
            log=log,
        )
    result.metadata["update"] = str(update_path)
    return result


def _invert_with_inverter(
    update_path: str | Path,
    shapes: UpdateFile,
    config: InvertSettings,
    device: torch.device,
    log: Log,
) -> BatchFile:
    """``--attack git``: one forward pass of a trained inverter, its memory checked from the
    files' headers first."""
    from gradinvert.invert.attack import resolve_labels
    from gradinvert.inverter import invert_with, load_inverter
    from gradinvert.inverter.apply import check_compatible
    from gradinvert.inverter.footprint import estimate_git
    from gradinvert.inverter.store import read_inverter_header
    from gradinvert.runtime.resources import check_memory

    if not config.inverter:
        raise UsageError("--attack git needs --inverter INV (a file written by train-inverter)")
    head = read_inverter_header(config.inverter)
    check_compatible(head, shapes)
    check_memory(estimate_git(shapes, head), config.max_memory, device)
    update = load_update(update_path)
    inverter = load_inverter(config.inverter)
    choice = resolve_labels(update, config.labels, config)
    if choice.source == "restored":
        log(f"labels restored from the update ({choice.method}): {choice.labels}")
    result = invert_with(inverter, update, choice.labels or [], choice.to_dict(), device, log)
    result.metadata["inverter"]["path"] = str(config.inverter)
    result.metadata["config"] = config.record()
    return result


def describe_result(result: BatchFile, config: InvertSettings) -> str:
    """One line saying what the run produced and how the output was chosen."""
    meta = result.metadata
    count = result.images.shape[0]
    if config.attack == LEARNED:
        seconds = meta["inverter"]["seconds"]
        record = meta["labels"]
        return (
            f"git: {count} images from one pass of the {meta['inverter']['arch']} inverter "
            f"({seconds * 1000:.0f} ms), labels {record['labels']} ({record['source']})"
        )
    record = meta["labels"]
    if config.search == "f":
        picked = (
            f"restart {meta['chosen_seed']} of {config.seeds} at stage {meta['chosen_stage']} "
            "(lowest gradient distance over the layers)"
        )
    elif config.search == "zw" and "chosen_seed" in meta["stages"][0]:
        chosen = meta["stages"][0]["chosen_seed"]
        picked = f"restart {chosen} of {config.seeds} refined in generator weights"
    elif config.search == "zw":
        picked = f"restart {meta['chosen_seed']} of {config.seeds}, each refined in its weights"
    elif config.pick == "consensus":
        picked = f"consensus of {config.seeds} seeds (frame of seed {meta['chosen_seed']})"
    else:
        picked = f"seed {meta['chosen_seed']} of {config.seeds}"
    return (
        f"{config.attack}: {count} images, labels {record['labels']} ({record['source']}), "
        f"{picked}, gradient distance {meta['candidates'][0]['gradient_distance']:.4g}"
    )
