"""Inverter files: a trained inverter, the template it was made for, and how it was trained.

Safetensors with tensors ``state.<name>`` (the inverter's learned weights and fixed
projections), ``template.param.<name>`` / ``template.buffer.<name>`` (the global model the
training pairs were made with) and metadata ``inverter`` (architecture and its settings),
``template`` (model, input, update kind, BN mode, batch size, local training, defenses, the
weights' hash), ``training`` (the run's settings and summary) and ``config`` (the
``train-inverter`` settings, which ``inspect --print-config`` prints for a replay).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any

import torch

from gradinvert.inverter.base import Inverter
from gradinvert.io.file_schemas import InverterMetadata, validate_inverter_metadata
from gradinvert.io.files import LocalTraining, UpdateFile, _common_metadata, _require_schema, _save
from gradinvert.io.tensorfile import Header, read_header, read_tensors
from gradinvert.models.fit import tensor_problems
from gradinvert.models.footprint import meta_model, on_meta
from gradinvert.models.restore import model_from_update
from gradinvert.models.spec import InputSpec, ModelSpec
from gradinvert.runtime.checkpoint import fingerprint
from gradinvert.runtime.errors import GradinvertError, InvalidInputError, UsageError, one_line

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


def build_inverter(
    arch: str, template: UpdateFile, settings: dict[str, Any], device: str = "cpu"
) -> Inverter:
    """A fresh inverter of ``arch`` for the template's model, input and batch size.

    ``device="meta"``: shapes only, nothing allocated (to check a file before building it).
    """
    batch = int(template.batch_size or 1)
    shape = tuple(template.input.shape)
    if arch == "git":
        from gradinvert.inverter.git import GitInverter

        if device == "meta":
            model = meta_model(template.model)
            if model is None:  # a user factory that does not build on meta: size unknown
                raise _NotOnMeta
        else:
            model = model_from_update(template, device)
        with on_meta() if device == "meta" else torch.device(device):
            return GitInverter(model.eval(), shape, batch, **settings)  # type: ignore[arg-type]
    if arch == "mlp":
        from gradinvert.inverter.mlp import MlpInverter

        shapes = {n: tuple(t.shape) for n, t in template.update.items()}
        if "shapes" in settings:
            settings = dict(settings)
            shapes = {n: tuple(s) for n, s in settings.pop("shapes").items()}
        with on_meta() if device == "meta" else torch.device(device):
            return MlpInverter(shapes, shape, batch, **settings)  # type: ignore[arg-type]
    raise UsageError(f"--arch {arch!r}: choose one of {', '.join(ARCHES)}")


class _NotOnMeta(Exception):
    """The inverter's model cannot be built on the meta device."""


def save_inverter(
    path: str | os.PathLike[str],
    inverter: Inverter,
    template: UpdateFile,
    training: dict[str, Any],
    config: dict[str, Any] | None = None,
) -> None:
    """Write an inverter file atomically (``config``: the settings record of the run that
    made it)."""
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
    if config:
        metadata["config"] = json.dumps(config)
    _save(tensors, metadata, path)


def _template_from(
    meta: InverterMetadata, tensors: dict[str, torch.Tensor], origin: str
) -> UpdateFile:
    """The template an inverter file describes; its update tensors are shapes only (meta)."""
    record = meta.template
    return UpdateFile(
        kind=record.kind,
        update={n: torch.empty(s, device="meta") for n, s in meta.inverter.update_shapes.items()},
        params={k[15:]: v for k, v in tensors.items() if k.startswith("template.param.")},
        buffers={k[16:]: v for k, v in tensors.items() if k.startswith("template.buffer.")},
        model=ModelSpec(
            record.model.arch, record.model.num_classes, dict(record.model.kwargs), origin=origin
        ),
        input=InputSpec(record.input.shape, tuple(record.input.mean), tuple(record.input.std)),
        mode=record.mode,
        batch_size=record.batch_size,
        local=None if record.local is None else LocalTraining(**record.local.model_dump()),
        defense=[entry.model_dump(exclude_none=True) for entry in record.defense],
    )


@dataclass
class InverterHeader:
    """An inverter file checked from its header alone: validated metadata, the template with
    shapes only, and the inverter built on the meta device (None: a user model that does not
    build there), whose state fits the file's tensors by name and shape."""

    header: Header
    meta: InverterMetadata
    template: UpdateFile
    inverter: Inverter | None


def read_inverter_header(path: str | os.PathLike[str]) -> InverterHeader:
    """Validate an inverter file's metadata and sizes before anything is read or built."""
    header = read_header(path)
    _require_schema(header.path, header.metadata, FILE_KIND)
    meta = validate_inverter_metadata(str(header.path), header.metadata)
    shapes = header.meta_tensors()
    template = _template_from(meta, shapes, str(header.path))
    try:
        inverter = build_inverter(meta.inverter.arch, template, meta.inverter.settings, "meta")
    except _NotOnMeta:
        return InverterHeader(header, meta, template, None)
    except GradinvertError as exc:
        named = exc.message.startswith(f"{header.path}:")  # e.g. the file names code
        raise InvalidInputError(exc.message if named else f"{header.path}: {exc.message}") from None
    except Exception as exc:  # a template the inverter's constructor cannot take
        raise InvalidInputError(
            f"{header.path}: the inverter cannot be built from its metadata "
            f"({one_line(f'{type(exc).__name__}: {exc}')})"
        ) from None
    state = {k[6:]: v for k, v in shapes.items() if k.startswith("state.")}
    problems = tensor_problems(inverter.state_dict(), state, check_dtype=False, check_finite=False)
    if problems:
        raise InvalidInputError(
            f"{header.path}: the weights do not fit the inverter its metadata describes: "
            + "; ".join(problems)
        )
    return InverterHeader(header, meta, template, inverter)


def load_inverter(path: str | os.PathLike[str]) -> InverterFile:
    """Read an inverter file and rebuild the inverter (on the CPU), after its header was
    checked (:func:`read_inverter_header`)."""
    head = read_inverter_header(path)
    tensors = read_tensors(head.header)
    template = _template_from(head.meta, tensors, str(head.header.path))
    info = head.meta.inverter
    inverter = build_inverter(info.arch, template, info.settings)
    state = {k[6:]: v for k, v in tensors.items() if k.startswith("state.")}
    try:
        inverter.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise InvalidInputError(f"{path}: the weights do not fit the inverter ({first})") from None
    digest = hashlib.sha256(head.header.path.read_bytes()).hexdigest()
    return InverterFile(inverter.eval(), template, dict(head.meta.training), digest)
