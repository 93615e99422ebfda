"""Generator files: a generator's weights plus how it was built and trained (safetensors).

Tensors ``param.<name>`` and ``buffer.<name>`` (float16 or float32); metadata ``generator``
(JSON: the architecture's constructor arguments, ``name`` first) and ``training`` (JSON: how the
weights came about: the command, its settings, the data's size and hash).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gradinvert.errors import InvalidInputError
from gradinvert.files import _common_metadata, _json_field, _require_schema, _save, read_safetensors

FILE_KIND = "generator"


@dataclass
class GeneratorFile:
    """What a generator file holds."""

    arch: dict[str, Any]
    state: dict[str, torch.Tensor]
    training: dict[str, Any]


def save_generator(
    path: str | os.PathLike[str],
    module: nn.Module,
    arch: dict[str, Any],
    training: dict[str, Any],
    half: bool = False,
) -> None:
    """Write ``module``'s parameters and buffers atomically (``half``: floats as float16)."""
    tensors: dict[str, torch.Tensor] = {}
    for prefix, items in (
        ("param.", module.named_parameters()),
        ("buffer.", module.named_buffers()),
    ):
        for name, value in items:
            value = value.detach()
            if half and value.is_floating_point():
                value = value.half()
            tensors[prefix + name] = value
    metadata = _common_metadata(FILE_KIND)
    metadata["generator"] = json.dumps(arch, sort_keys=True)
    metadata["training"] = json.dumps(training, sort_keys=True)
    _save(tensors, metadata, path)


def load_generator_file(path: str | os.PathLike[str]) -> GeneratorFile:
    """Read a generator file; floats come back as float32."""
    path = Path(path)
    tensors, metadata = read_safetensors(path)
    _require_schema(path, metadata, FILE_KIND)
    arch = _json_field(path, metadata, "generator")
    training = _json_field(path, metadata, "training", default="{}")
    if not isinstance(arch, dict) or not isinstance(arch.get("name"), str):
        raise InvalidInputError(f"{path}: metadata 'generator' must be an object with a 'name'")
    if not isinstance(training, dict):
        raise InvalidInputError(f"{path}: metadata 'training' must be an object")
    state: dict[str, torch.Tensor] = {}
    for key, value in tensors.items():
        prefix, _, name = key.partition(".")
        if prefix not in ("param", "buffer") or not name:
            raise InvalidInputError(f"{path}: unexpected tensor {key!r} in a generator file")
        state[name] = value.float() if value.is_floating_point() else value
    return GeneratorFile(arch, state, training)
