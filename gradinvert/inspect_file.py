"""Summaries of gradinvert files for people (`inspect`) and scripts (`inspect --json`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from gradinvert.errors import InvalidInputError
from gradinvert.files import file_type, load_batch, load_update
from gradinvert.tensorfile import read_header


def summarize(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A JSON-ready summary of an update, batch, generator or inverter file.

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
                "threat": update.threat,
                "bn_stats_layers": len(update.bn_stats),
                "parameters": sum(t.numel() for t in update.params.values()),
                "seed": update.seed,
                "source": update.source or None,
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
            }
        )
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
