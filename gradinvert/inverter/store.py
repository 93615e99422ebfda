"""Inverter files: a trained inverter, the template it was made for, and how it was trained.

Safetensors with tensors ``state.<name>`` (the inverter's learned weights and fixed
projections), ``template.param.<name>`` / ``template.buffer.<name>`` (the global model the
training pairs were made with) and metadata ``inverter`` (architecture and its settings),
``template`` (model, input, update kind, BN mode, batch size, local training, defenses, the
weights' hash) and ``training`` (the run's settings and summary).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gradinvert.errors import InvalidInputError, UsageError
from gradinvert.files import (
    LocalTraining,
    UpdateFile,
    _common_metadata,
    _json_field,
    _require_schema,
    _save,
    read_safetensors,
)
from gradinvert.invert.engine import fingerprint
from gradinvert.inverter.base import Inverter
from gradinvert.models.restore import model_from_update
from gradinvert.models.spec import InputSpec, ModelSpec

FILE_KIND = "inverter"
ARCHES = ("git", "mlp")


@dataclass
class InverterFile:
    """A loaded inverter with its template and training record."""

    inverter: Inverter
    template: UpdateFile
    training: dict[str, Any]
    sha256: str


def template_record(template: UpdateFile) -> dict[str, Any]:
    """What an inverter must match in an update: everything but the images (and the weights)."""
    return {
        "kind": template.kind,
        "model": template.model.to_dict(),
        "input": template.input.to_dict(),
        "mode": template.mode,
        "batch_size": template.batch_size,
        "local": None if template.local is None else dataclasses.asdict(template.local),
        "defense": template.defense,
        "weights_sha256": fingerprint(template.params, template.buffers),
    }


def build_inverter(arch: str, template: UpdateFile, settings: dict[str, Any]) -> Inverter:
    """A fresh inverter of ``arch`` for the template's model, input and batch size."""
    batch = int(template.batch_size or 1)
    shape = tuple(template.input.shape)
    if arch == "git":
        from gradinvert.inverter.git import GitInverter

        model = model_from_update(template, "cpu").eval()
        return GitInverter(model, shape, batch, **settings)  # type: ignore[arg-type]
    if arch == "mlp":
        from gradinvert.inverter.mlp import MlpInverter

        shapes = {n: tuple(t.shape) for n, t in template.update.items()}
        if "shapes" in settings:
            settings = dict(settings)
            shapes = {n: tuple(s) for n, s in settings.pop("shapes").items()}
        return MlpInverter(shapes, shape, batch, **settings)  # type: ignore[arg-type]
    raise UsageError(f"--arch {arch!r}: choose one of {', '.join(ARCHES)}")


def save_inverter(
    path: str | os.PathLike[str],
    inverter: Inverter,
    template: UpdateFile,
    training: dict[str, Any],
) -> None:
    """Write an inverter file atomically."""
    tensors = {f"state.{k}": v for k, v in inverter.state_dict().items()}
    tensors.update({f"template.param.{k}": v for k, v in template.params.items()})
    tensors.update({f"template.buffer.{k}": v for k, v in template.buffers.items()})
    shapes = {n: list(t.shape) for n, t in template.update.items()}
    metadata = _common_metadata(FILE_KIND)
    metadata["inverter"] = json.dumps(
        {"arch": inverter.arch, "settings": inverter.settings(), "update_shapes": shapes},
        sort_keys=True,
    )
    metadata["template"] = json.dumps(template_record(template), sort_keys=True)
    metadata["training"] = json.dumps(training, sort_keys=True)
    _save(tensors, metadata, path)


def _template_from(path: Path, record: dict[str, Any], tensors: dict) -> UpdateFile:
    try:
        local = record.get("local")
        shapes = record.get("update_shapes", {})
        return UpdateFile(
            kind=record["kind"],
            update={n: torch.zeros(s) for n, s in shapes.items()},
            params={k[15:]: v for k, v in tensors.items() if k.startswith("template.param.")},
            buffers={k[16:]: v for k, v in tensors.items() if k.startswith("template.buffer.")},
            model=ModelSpec.from_dict(record["model"], origin=str(path)),
            input=InputSpec.from_dict(record["input"]),
            mode=record["mode"],
            batch_size=int(record["batch_size"]),
            local=None if local is None else LocalTraining(**local),
            defense=list(record.get("defense") or []),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInputError(f"{path}: metadata 'template' is malformed ({exc})") from None


def load_inverter(path: str | os.PathLike[str]) -> InverterFile:
    """Read an inverter file and rebuild the inverter (on the CPU)."""
    path = Path(path)
    tensors, metadata = read_safetensors(path)
    _require_schema(path, metadata, FILE_KIND)
    info = _json_field(path, metadata, "inverter")
    record = _json_field(path, metadata, "template")
    training = _json_field(path, metadata, "training", default="{}")
    if not isinstance(info, dict) or info.get("arch") not in ARCHES:
        raise InvalidInputError(f"{path}: metadata 'inverter' names no known architecture")
    if not isinstance(record, dict):
        raise InvalidInputError(f"{path}: metadata 'template' must be an object")
    record = {**record, "update_shapes": info.get("update_shapes", {})}
    template = _template_from(path, record, tensors)
    inverter = build_inverter(info["arch"], template, dict(info.get("settings") or {}))
    state = {k[6:]: v for k, v in tensors.items() if k.startswith("state.")}
    try:
        inverter.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise InvalidInputError(f"{path}: the weights do not fit the inverter ({first})") from None
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return InverterFile(inverter.eval(), template, training, digest)
