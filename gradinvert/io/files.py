"""The three file formats: update files, batch files and labels files (DESIGN.md §2).

Tensors are stored with safetensors only (never pickle). Metadata is a flat string map; structured
values are JSON strings. Every reader validates what it reads and raises a ``GradinvertError``
with a one-line message, so the CLI can map it to an exit code.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors.torch import save as save_bytes

from gradinvert.io.atomic import atomic_path, write_text_atomic
from gradinvert.io.tensorcheck import as_float32, batch_problems, raise_problems, update_problems
from gradinvert.io.tensorfile import Header, read_header, read_metadata, read_tensors
from gradinvert.io.update_schema import UpdateMetadata, validate_update_metadata
from gradinvert.models.spec import InputSpec, ModelSpec
from gradinvert.runtime.errors import GradinvertError, InvalidInputError, UsageError

SCHEMA_VERSION = "1"
UpdateKind = Literal["gradient", "delta"]
UPDATE_PREFIX: dict[str, str] = {"gradient": "grad.", "delta": "delta."}
Tensors = dict[str, torch.Tensor]


@dataclass
class LocalTraining:
    """How a FedAvg client trained locally before sending its weight delta."""

    steps: int
    lr: float
    batch_size: int
    shuffle: bool = False
    optimizer: str = "sgd"
    seed: int | None = None


@dataclass
class UpdateFile:
    """A client's shared update plus everything an attacker needs to attack it."""

    kind: UpdateKind
    update: dict[str, torch.Tensor]
    params: dict[str, torch.Tensor]
    buffers: dict[str, torch.Tensor]
    model: ModelSpec
    input: InputSpec
    mode: Literal["train", "eval"] = "eval"
    batch_size: int | None = None
    bn_stats: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    local: LocalTraining | None = None
    loss: dict[str, str] = field(
        default_factory=lambda: {"name": "cross_entropy", "reduction": "mean"}
    )
    defense: list[dict[str, Any]] = field(default_factory=list)
    threat: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    created: str = ""
    torch_version: str = ""
    source: dict[str, Any] = field(default_factory=dict)  # where it came from (capture, import)
    config: dict[str, Any] | None = None  # the settings of the run that wrote it (record())


@dataclass
class BatchFile:
    """A batch of images in [0, 1] (N×C×H×W float32) with int64 labels and metadata."""

    images: torch.Tensor
    labels: torch.Tensor
    metadata: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- reading helpers


def read_safetensors(
    path: str | os.PathLike[str],
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """All tensors and the metadata of a safetensors file, its header checked first
    (:func:`gradinvert.io.tensorfile.read_header`), with clear errors."""
    header = read_header(path)
    return read_tensors(header), header.metadata


def file_type(metadata: dict[str, str]) -> str | None:
    """Return 'update' or 'batch' for a gradinvert file, None for anything else."""
    return metadata.get("gradinvert.file")


def _require_schema(path: Path, metadata: dict[str, str], expected: str) -> None:
    kind = file_type(metadata)
    if kind is None:
        raise InvalidInputError(f"{path}: not a gradinvert file (no 'gradinvert.file' metadata)")
    if metadata.get("gradinvert.schema") != SCHEMA_VERSION:
        raise InvalidInputError(
            f"{path}: unsupported gradinvert schema {metadata.get('gradinvert.schema')!r} "
            f"(this version reads schema {SCHEMA_VERSION})"
        )
    if kind != expected:
        raise InvalidInputError(f"{path}: is a {kind} file, expected a {expected} file")


def _json_field(path: Path, metadata: dict[str, str], key: str, default: Any = None) -> Any:
    if key not in metadata:
        if default is not None:
            return default
        raise InvalidInputError(f"{path}: metadata key {key!r} is missing")
    try:
        return json.loads(metadata[key])
    except (ValueError, RecursionError):  # JSONDecodeError is a ValueError
        raise InvalidInputError(f"{path}: metadata key {key!r} is not valid JSON") from None


def _common_metadata(kind: str) -> dict[str, str]:
    return {
        "gradinvert.schema": SCHEMA_VERSION,
        "gradinvert.file": kind,
        "torch": torch.__version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _canonical(data: bytes) -> bytes:
    """The same safetensors bytes with the header's metadata keys sorted.

    safetensors writes metadata in hash-map order, which differs between processes; sorting
    makes equal content give byte-identical files.
    """
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + length])
    metadata = header.pop("__metadata__", None)
    ordered: dict[str, Any] = {}
    if metadata is not None:
        ordered["__metadata__"] = dict(sorted(metadata.items()))
    ordered.update(sorted(header.items(), key=lambda item: item[1]["data_offsets"]))
    text = json.dumps(ordered, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + data[8 + length :]


def _save(
    tensors: dict[str, torch.Tensor],
    metadata: dict[str, str],
    path: str | os.PathLike,
    private: bool = False,
) -> None:
    # safetensors needs contiguous tensors that share no memory.
    clean = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    data = _canonical(save_bytes(clean, metadata=metadata))
    with atomic_path(path, private) as tmp:
        tmp.write_bytes(data)


# ---------------------------------------------------------------- update files


def save_update(update: UpdateFile, path: str | os.PathLike[str]) -> None:
    """Write an update file atomically."""
    prefix = UPDATE_PREFIX[update.kind]
    tensors: dict[str, torch.Tensor] = {}
    for name, value in update.update.items():
        tensors[prefix + name] = value
    for name, value in update.params.items():
        tensors["param." + name] = value
    for name, value in update.buffers.items():
        tensors["buffer." + name] = value
    for module, (mean, var) in update.bn_stats.items():
        tensors[f"bnstat.{module}.mean"] = mean
        tensors[f"bnstat.{module}.var"] = var
    metadata = _common_metadata("update")
    metadata.update(
        {
            "kind": update.kind,
            "model": json.dumps(update.model.to_dict()),
            "input": json.dumps(update.input.to_dict()),
            "loss": json.dumps(update.loss),
            "batch_size": "" if update.batch_size is None else str(update.batch_size),
            "mode": update.mode,
            "local": json.dumps(None if update.local is None else update.local.__dict__),
            "defense": json.dumps(update.defense),
            "threat": json.dumps(update.threat),
            "seed": "" if update.seed is None else str(update.seed),
            "source": json.dumps(update.source),
        }
    )
    if update.config is not None:
        metadata["config"] = json.dumps(update.config)
    _save(tensors, metadata, path)


def load_update(path: str | os.PathLike[str]) -> UpdateFile:
    """Read and validate an update file: its metadata against the schema, its tensors' names,
    dtypes and shapes from the header, and only then their values.

    Every problem of a part is reported at once (``InvalidInputError``, exit 65); floating
    tensors come back as float32.
    """
    header, meta = _update_header(path)
    prefix = UPDATE_PREFIX[meta.kind]
    for tensors in (header.meta_tensors(), None):  # shapes first, then values
        if tensors is None:
            tensors = read_tensors(header)
        update, params, buffers, bn_parts = _update_parts(header.path, prefix, tensors)
        problems = update_problems(prefix, update, params, buffers, bn_parts)
        raise_problems(str(header.path), problems)
    update, params, buffers = as_float32(update), as_float32(params), as_float32(buffers)
    bn_stats = {m: (p["mean"].float(), p["var"].float()) for m, p in bn_parts.items()}
    return _update_file(meta, update, params, buffers, bn_stats, str(path))


def _update_header(path: str | os.PathLike[str]) -> tuple[Header, UpdateMetadata]:
    header = read_header(path)
    _require_schema(header.path, header.metadata, "update")
    return header, validate_update_metadata(str(header.path), header.metadata)


def read_update_shapes(path: str | os.PathLike[str]) -> UpdateFile:
    """An update file's validated metadata with its tensors as shapes only (meta device).

    Reads the header alone, not the tensor data: for estimates before anything is read.
    """
    header, meta = _update_header(path)
    tensors = {  # floating tensors as load_update returns them: float32
        k: v.float() if v.is_floating_point() else v for k, v in header.meta_tensors().items()
    }
    update, params, buffers, bn_parts = _update_parts(
        header.path, UPDATE_PREFIX[meta.kind], tensors
    )
    bn_stats = {m: (p["mean"], p["var"]) for m, p in bn_parts.items() if set(p) == {"mean", "var"}}
    return _update_file(meta, update, params, buffers, bn_stats, str(path))


def _update_parts(
    path: Path, prefix: str, tensors: dict[str, torch.Tensor]
) -> tuple[Tensors, Tensors, Tensors, dict[str, Tensors]]:
    """The update, parameter, buffer and BN-statistics tensors, by their name prefixes."""
    update, params, buffers = {}, {}, {}
    bn_parts: dict[str, Tensors] = {}
    for key, value in tensors.items():
        if key.startswith(prefix):
            update[key[len(prefix) :]] = value
        elif key.startswith("param."):
            params[key[len("param.") :]] = value
        elif key.startswith("buffer."):
            buffers[key[len("buffer.") :]] = value
        elif key.startswith("bnstat."):
            module, _, stat = key[len("bnstat.") :].rpartition(".")
            bn_parts.setdefault(module, {})[stat] = value
    if not update:
        raise InvalidInputError(f"{path}: holds no '{prefix}*' tensors")
    return update, params, buffers, bn_parts


def _update_file(
    meta: UpdateMetadata,
    update: Tensors,
    params: Tensors,
    buffers: Tensors,
    bn_stats: dict[str, tuple[torch.Tensor, torch.Tensor]],
    origin: str,
) -> UpdateFile:
    local = meta.local
    return UpdateFile(
        kind=meta.kind,
        update=update,
        params=params,
        buffers=buffers,
        model=ModelSpec(meta.model.arch, meta.model.num_classes, dict(meta.model.kwargs), origin),
        input=InputSpec(meta.input.shape, tuple(meta.input.mean), tuple(meta.input.std)),
        mode=meta.mode,
        batch_size=meta.batch_size,
        bn_stats=bn_stats,
        local=None if local is None else LocalTraining(**local.model_dump()),
        loss=meta.loss.model_dump(),
        defense=[entry.model_dump(exclude_none=True) for entry in meta.defense],
        threat=dict(meta.threat),
        seed=meta.seed,
        created=meta.created,
        torch_version=meta.torch,
        source=dict(meta.source),
    )


# ---------------------------------------------------------------- batch files


def save_batch(batch: BatchFile, path: str | os.PathLike[str], deterministic: bool = False) -> None:
    """Write a batch file atomically and owner-only (images of people's data; see
    :mod:`gradinvert.io.atomic`); structured metadata values are JSON-encoded.

    ``deterministic`` leaves out the wall-clock ``created`` stamp, so the same batch and
    metadata always give a byte-identical file (``invert`` output).
    """
    images = batch.images.detach().float()
    labels = batch.labels.detach().long()
    if images.ndim != 4 or labels.shape != (images.shape[0],):
        raise ValueError("a batch needs images N×C×H×W and N labels")
    metadata = _common_metadata("batch")
    if deterministic:
        del metadata["created"]
    for key, value in batch.metadata.items():
        metadata[key] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    _save({"images": images, "labels": labels}, metadata, path, private=True)


def load_batch(path: str | os.PathLike[str]) -> BatchFile:
    """Read and validate a batch file (shapes from the header first, then the values);
    metadata values that are JSON are decoded."""
    header = read_header(path)
    path = header.path
    _require_schema(path, header.metadata, "batch")
    if not {"images", "labels"} <= set(header.shapes):
        raise InvalidInputError(f"{path}: a batch file needs 'images' and 'labels' tensors")
    for tensors in (header.meta_tensors(["images", "labels"]), None):  # shapes, then values
        if tensors is None:
            tensors = read_tensors(header, ["images", "labels"])
        images, labels = tensors["images"], tensors["labels"]
        raise_problems(str(path), batch_problems(images, labels))
    decoded: dict[str, Any] = {}
    for key, value in header.metadata.items():
        try:
            decoded[key] = json.loads(value)
        except (ValueError, TypeError, RecursionError):
            decoded[key] = value
    return BatchFile(images=images.float(), labels=labels.long(), metadata=decoded)


def is_gradinvert_file(path: str | os.PathLike[str], kind: str) -> bool:
    """True when ``path`` is a safetensors file that says it is a gradinvert ``kind`` file."""
    try:
        return read_metadata(path).get("gradinvert.file") == kind
    except GradinvertError:
        return False


# ---------------------------------------------------------------- labels


def parse_labels(value: str) -> list[int]:
    """Labels from a labels file (JSON object or list) or an inline list such as ``3,3,7,1``."""
    path = Path(value)
    if path.suffix.lower() == ".json" or path.exists():
        from gradinvert.io.file_schemas import read_json_file, validate_labels

        return validate_labels(str(path), read_json_file(path))
    try:
        return [int(part) for part in value.replace(" ", "").split(",") if part != ""]
    except ValueError:
        raise UsageError(
            f"--labels {value!r}: give a labels JSON file or comma-separated integers"
        ) from None


def check_labels(labels: list[int], batch_size: int | None, num_classes: int) -> None:
    """Raise a clear error when labels do not fit the batch size or the class count."""
    if batch_size is not None and len(labels) != batch_size:
        raise UsageError(f"{len(labels)} labels given for a batch of {batch_size}")
    bad = [x for x in labels if not 0 <= x < num_classes]
    if bad:
        raise UsageError(f"labels {bad[:5]} outside 0..{num_classes - 1} for {num_classes} classes")


def labels_document(labels: list[int], method: str, **extra: Any) -> dict[str, Any]:
    """The labels file's JSON object."""
    return {
        "labels": [int(x) for x in labels],
        "method": method,
        "batch_size": len(labels),
        **extra,
    }


def write_labels(document: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Write a labels JSON document atomically."""
    write_text_atomic(path, json.dumps(document, indent=2) + "\n")
