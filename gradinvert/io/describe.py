"""Summaries of gradinvert files for people (`inspect`) and scripts (`inspect --json`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from gradinvert.client.aggregate import members_of
from gradinvert.io.files import _json_field, file_type, load_batch, load_update
from gradinvert.io.tensorfile import read_header
from gradinvert.runtime.errors import InvalidInputError


def _factory_named(record: object, key: str) -> str | None:
    """The ``package.module:factory`` a metadata record names under ``key``, if any."""
    value = record.get(key) if isinstance(record, dict) else None
    return value if isinstance(value, str) and ":" in value else None


def _inverter_model_code(path: Path, metadata: dict[str, str]) -> str | None:
    """The factory an inverter file's template model names, if any."""
    record = _json_field(path, metadata, "template")
    return _factory_named(record.get("model") if isinstance(record, dict) else None, "arch")


def _inverter_naming_code(path: Path, metadata: dict[str, str], tensors: dict) -> dict[str, Any]:
    """An inverter file whose template model names code, described from its metadata alone:
    building the inverter would import that code. (Its ``template`` is an object: see
    :func:`_inverter_model_code`.)"""
    info = _json_field(path, metadata, "inverter")
    info = info if isinstance(info, dict) else {}
    record = _json_field(path, metadata, "template")
    training = _json_field(path, metadata, "training", default="{}")
    settings = info.get("settings")
    settings = (
        {k: v for k, v in settings.items() if k != "shapes"} if isinstance(settings, dict) else {}
    )
    return {
        "inverter": {"arch": info.get("arch"), **settings},
        "parameters": None,  # unknown without building the inverter
        "weights": sum(t.numel() for k, t in tensors.items() if k.startswith("state.")),
        "template": {k: v for k, v in record.items() if k != "update_shapes"},
        "training": (
            {k: v for k, v in training.items() if k != "history"}
            if isinstance(training, dict)
            else None
        ),
    }


def privacy_lines(defense: list[dict[str, Any]]) -> list[str]:
    """ε at δ and how it was computed, one line per DP-SGD entry of a defense list."""
    from gradinvert.client.dpsgd import describe_privacy

    return [describe_privacy(e) for e in defense if e.get("name") == "dp-sgd"]


def summarize(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A JSON-ready summary of an update, batch, generator or inverter file.

    Nothing a file names is imported: a model or generator given as ``package.module:factory``
    is reported under ``names_code``, and such an inverter is described without being built.
    The header (shapes, dtypes, metadata) is read first; update, batch and generator files are
    then validated with their values, an inverter file is described from its header alone.
    """
    header = read_header(path)
    tensors, metadata = header.meta_tensors(), header.metadata
    kind = file_type(metadata)
    groups: dict[str, int] = {}
    for key in tensors:
        prefix = key.split(".", 1)[0] if "." in key else key
        groups[prefix] = groups.get(prefix, 0) + 1
    summary: dict[str, Any] = {
        "path": str(path),
        "file": kind,
        "schema": metadata.get("gradinvert.schema"),
        "tensors": len(tensors),
        "tensor_groups": groups,
        "bytes": header.bytes(),
        "created": metadata.get("created"),
        "torch": metadata.get("torch"),
    }
    if kind == "update":
        update = load_update(path)
        summary.update(
            {
                "kind": update.kind,
                "model": update.model.to_dict(),
                "batch_size": update.batch_size,
                "mode": update.mode,
                "input": update.input.to_dict(),
                "loss": update.loss,
                "local": None if update.local is None else update.local.__dict__,
                "defense": update.defense,
                "privacy": privacy_lines(update.defense) or None,
                "clients": len(members_of(update) or [None]),
                "threat": update.threat,
                "bn_stats_layers": len(update.bn_stats),
                "parameters": sum(t.numel() for t in update.params.values()),
                "seed": update.seed,
                "source": update.source or None,
                "names_code": _factory_named(update.model.to_dict(), "arch"),
            }
        )
    elif kind == "batch":
        batch = load_batch(path)
        summary.update(
            {
                "images": list(batch.images.shape),
                "labels": batch.labels.tolist(),
                "metadata": {
                    k: v
                    for k, v in batch.metadata.items()
                    if k not in ("gradinvert.schema", "gradinvert.file", "created", "torch")
                },
            }
        )
    elif kind == "generator":
        from gradinvert.generators import load_generator_file

        stored = load_generator_file(path)
        training = {k: v for k, v in stored.training.items() if k != "loss_history"}
        summary.update(
            {
                "generator": stored.arch,
                "parameters": sum(t.numel() for k, t in tensors.items() if k.startswith("param.")),
                "training": training,
                "names_code": _factory_named(stored.arch, "factory"),
            }
        )
    elif kind == "inverter" and (code := _inverter_model_code(Path(path), metadata)):
        summary.update(_inverter_naming_code(Path(path), metadata, tensors), names_code=code)
    elif kind == "inverter":
        from gradinvert.inverter.apply import summary_of
        from gradinvert.inverter.store import read_inverter_header

        head = read_inverter_header(path)  # described from its header: nothing is built
        info, net = head.meta.inverter, head.inverter
        settings = {k: v for k, v in info.settings.items() if k != "shapes"}
        in_file = sum(t.numel() for k, t in tensors.items() if k.startswith("state."))
        summary.update(
            {
                "inverter": {"arch": info.arch, **settings},
                "parameters": in_file if net is None else sum(p.numel() for p in net.parameters()),
                "template": head.meta.template.model_dump(mode="json"),
                "training": summary_of(dict(head.meta.training)),
            }
        )
    elif kind is None:
        raise InvalidInputError(
            f"{Path(path)}: not a gradinvert file (no 'gradinvert.file' metadata)"
        )
    else:
        raise InvalidInputError(f"{Path(path)}: unknown gradinvert file kind {kind!r}")
    return summary


MAX_JSON_BYTES = 50_000_000


def recorded_config(path: str | os.PathLike[str]) -> Any:
    """The settings record an output file carries: the ``config`` metadata of a safetensors
    file, or the ``config`` key of a JSON output (labels, scores)."""
    import json

    path = Path(path)
    if not path.is_file():
        from gradinvert.runtime.errors import MissingInputError

        raise MissingInputError(f"{path}: no such file")
    if path.suffix == ".json":
        if path.stat().st_size > MAX_JSON_BYTES:
            raise InvalidInputError(f"{path}: a JSON file over {MAX_JSON_BYTES} bytes")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise InvalidInputError(f"{path}: not a JSON file") from None
        return data.get("config") if isinstance(data, dict) else None
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = dict(handle.metadata() or {})
    except Exception as exc:  # safetensors raises several types for corrupt input
        raise InvalidInputError(f"{path}: not a readable safetensors file ({exc})") from None
    if "config" not in metadata:
        return None
    try:
        return json.loads(metadata["config"])
    except (ValueError, RecursionError):
        raise InvalidInputError(f"{path}: metadata 'config' is not valid JSON") from None
