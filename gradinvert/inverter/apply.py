"""Use a trained inverter on an update: checks, one forward pass, and the output batch file."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import torch

from gradinvert.inverter.base import stack_encoded
from gradinvert.inverter.store import InverterFile, InverterHeader
from gradinvert.io.files import BatchFile, UpdateFile
from gradinvert.runtime.errors import InvalidInputError

Log = Callable[[str], None]


def compatibility_problems(
    inverter: InverterFile | InverterHeader, update: UpdateFile
) -> list[str]:
    """Every way ``update`` differs from what the inverter was trained for (empty: it fits);
    names and shapes will do for both (an inverter file's header, an update's shapes)."""
    template, problems = inverter.template, []
    if update.model.to_dict() != template.model.to_dict():
        problems.append(
            f"architecture: trained for {template.model.arch} with {template.model.num_classes} "
            f"classes, the update is of {update.model.arch} with {update.model.num_classes}"
        )
    if tuple(update.input.shape) != tuple(template.input.shape):
        problems.append(
            f"input size: trained for {tuple(template.input.shape)}, the update's model reads "
            f"{tuple(update.input.shape)}"
        )
    elif update.input.to_dict() != template.input.to_dict():
        problems.append("input normalization: the update's mean/std differ from the template's")
    if update.batch_size != template.batch_size:
        problems.append(
            f"batch size: trained for {template.batch_size}, the update has {update.batch_size}"
        )
    if update.kind != template.kind:
        problems.append(f"update kind: trained on {template.kind}s, the update is a {update.kind}")
    elif update.kind == "delta" and _local(update) != _local(template):
        problems.append("local training: the update's local steps, lr or batch size differ")
    if update.mode != template.mode:
        problems.append(f"BN mode: trained in {template.mode} mode, the update is {update.mode}")
    if not problems and set(update.update) != set(template.update):
        problems.append("trainable parameters: the update carries other tensors than the template")
    return problems


def _local(update: UpdateFile) -> dict[str, Any] | None:
    if update.local is None:
        return None
    record = dataclasses.asdict(update.local)
    record.pop("seed", None)
    return record


def check_compatible(
    inverter: InverterFile | InverterHeader, update: UpdateFile, source: str = "inverter"
) -> None:
    """Refuse (exit 65) an update the inverter was not made for, naming every difference."""
    problems = compatibility_problems(inverter, update)
    if problems:
        raise InvalidInputError(f"{source} does not fit this update: " + "; ".join(problems))


def parameter_discrepancy(template: UpdateFile, update: UpdateFile) -> float:
    """‖θ_update − θ_template‖ / ‖θ_template‖ over the model's parameters (0: same weights)."""
    diff = base = 0.0
    for name, value in template.params.items():
        other = update.params.get(name)
        if other is None or other.shape != value.shape:
            continue
        diff += float((other.double() - value.double()).pow(2).sum())
        base += float(value.double().pow(2).sum())
    return (diff / base) ** 0.5 if base > 0 else 0.0


def estimate(
    inverter: InverterFile,
    update: UpdateFile,
    device: torch.device | str = "cpu",
    log: Log | None = None,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """The inverter's B×C×H×W pixel estimate of the update's batch, and a record of the run.

    When the update's model weights differ from the template's, a warning gives the relative
    distance, and the inverter reads the update's own weights where it uses the model's
    weights (GIT's transpose paths).
    """
    say = log or (lambda _message: None)
    check_compatible(inverter, update)
    distance = parameter_discrepancy(inverter.template, update)
    net = inverter.inverter
    if distance > 0:
        say(
            f"warning: the update's model weights differ from the inverter's template "
            f"(relative distance {distance:.3g}); the estimate may degrade"
        )
        net.set_leaked_weights(update.params, update.buffers)
    started = time.perf_counter()
    net = net.to(device).eval()
    with torch.no_grad():
        encoded = stack_encoded([net.encode({k: v.float() for k, v in update.update.items()})])
        images = net({k: v.to(device) for k, v in encoded.items()})[0].cpu()
    net.set_leaked_weights(inverter.template.params, inverter.template.buffers)
    record = {
        "arch": net.arch,
        "sha256": inverter.sha256,
        "parameter_discrepancy": distance,
        "seconds": round(time.perf_counter() - started, 4),
        "training": summary_of(inverter.training),
    }
    return images.float(), record


def summary_of(training: dict[str, Any]) -> dict[str, Any]:
    """The training record without its per-epoch history."""
    return {k: v for k, v in training.items() if k != "history"}


def invert_with(
    inverter: InverterFile,
    update: UpdateFile,
    labels: list[int],
    label_record: dict[str, Any],
    device: torch.device | str = "cpu",
    log: Log | None = None,
) -> BatchFile:
    """``invert --attack git``: the inverter's estimate as a batch file with its metadata."""
    images, record = estimate(inverter, update, device, log)
    metadata = {
        "source": "invert",
        "attack": "git",
        "inverter": record,
        "update_kind": update.kind,
        "model": update.model.to_dict(),
        "labels": {**label_record, "labels": list(labels)},
        "selection": "one forward pass of the inverter (no search, no ground truth)",
        "device": torch.device(device).type,
    }
    return BatchFile(images, torch.tensor(labels, dtype=torch.long), metadata)
