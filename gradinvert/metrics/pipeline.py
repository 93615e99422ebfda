"""``evaluate_files``: the library call behind ``gradinvert evaluate`` — read a reconstruction,
the truth (batch file, plain tensors or an image folder) and optional pool and update, score
them, and check the gates."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gradinvert.client.aggregate import union_truth
from gradinvert.config.evaluate import EvaluateSettings
from gradinvert.io.batch_input import is_batch_path, load_any_batch, load_image_folder
from gradinvert.io.files import BatchFile, load_update
from gradinvert.io.images import load_images
from gradinvert.metrics.evaluate import evaluate_batches
from gradinvert.metrics.gates import check_gates, gate_figure, parse_gate
from gradinvert.metrics.perceptual import resolve_lpips
from gradinvert.runtime.device import resolve_device
from gradinvert.runtime.errors import InvalidInputError, UsageError

Log = Callable[[str], None]


@dataclass
class Evaluation:
    """The scores (``result``, the ``--json`` document), the two batches, and the gates that
    tripped (one message each)."""

    result: dict[str, Any]
    recon: BatchFile
    truth: BatchFile
    tripped: list[str]


def _read(loaded: tuple[BatchFile, str | None], log: Log) -> BatchFile:
    batch, note = loaded
    if note:
        log(f"note: {note}")
    return batch


def load_pool(sources: list[Path], shape: tuple[int, int, int]) -> torch.Tensor | None:
    """Extra real images for IIP: batch files as they are, image files/folders resized."""
    channels, height, width = shape
    parts = []
    for source in sources:
        if is_batch_path(source):
            images = load_any_batch(source)[0].images
        else:
            size = height if height == width else None
            images, _ = load_images([source], size=size, channels=channels)
        if tuple(images.shape[1:]) != shape:
            raise InvalidInputError(
                f"--pool {source}: images are {tuple(images.shape[1:])}, the truth {shape}"
            )
        parts.append(images)
    return torch.cat(parts) if parts else None


def evaluate_files(
    recon_path: Path,
    truth_path: Path | list[Path],
    settings: EvaluateSettings,
    *,
    truth_labels: str | None = None,
    pool: list[Path] | None = None,
    update_path: Path | None = None,
    log: Log = print,
) -> Evaluation:
    """Score the reconstruction at ``recon_path`` against the truth at ``truth_path`` (several
    paths: their union, in order, e.g. the members of a secure aggregate)."""
    gates = [parse_gate(text) for text in settings.fail_above]
    device = resolve_device(settings.device)
    recon = _read(load_any_batch(recon_path), log)
    truth_paths = truth_path if isinstance(truth_path, list) else [truth_path]
    if not truth_paths:
        raise UsageError("--truth is required (the ground truth to score against)")
    if truth_labels is not None and (len(truth_paths) != 1 or not truth_paths[0].is_dir()):
        raise UsageError("--truth-labels is for one --truth folder of images")
    shape = tuple(recon.images.shape[1:])
    parts = [
        _read(load_image_folder(path, truth_labels, shape), log)  # type: ignore[arg-type]
        if path.is_dir()
        else _read(load_any_batch(path), log)
        for path in truth_paths
    ]
    truth = parts[0] if len(parts) == 1 else union_truth(parts, [str(p) for p in truth_paths])
    update = load_update(update_path) if update_path is not None else None
    pool_images = load_pool(list(pool or []), tuple(truth.images.shape[1:]))  # type: ignore[arg-type]
    scorer, warning = resolve_lpips(
        settings.lpips or "auto",
        Path(settings.lpips_weights) if settings.lpips_weights else None,
        device,
        required=settings.lpips is not None or settings.lpips_needed(),
    )
    result = evaluate_batches(
        recon,
        truth,
        match=settings.match,
        lpips="off",
        pool=pool_images,
        update=update,
        device=device,
        lpips_scorer=scorer,
    )
    if warning:
        result["warnings"].insert(0, warning)
    result["recon"] = str(recon_path)
    result["truth"] = (
        str(truth_paths[0]) if len(truth_paths) == 1 else [str(p) for p in truth_paths]
    )
    result["update"] = None if update_path is None else str(update_path)
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
    result["config"] = settings.record()
    return Evaluation(result, recon, truth, tripped)
