"""Generator files: a generator's weights plus how it was built and trained (safetensors).

Tensors ``param.<name>`` and ``buffer.<name>`` (float16 or float32); metadata ``generator``
(JSON: the architecture's constructor arguments, ``name`` first), ``training`` (JSON: how the
weights came about: the command, its settings, the data's size and hash) and, for a file a
command wrote, ``config`` (JSON: the command's settings, which ``inspect --print-config`` prints
for a replay).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from gradinvert.generators.dcgan import DEFAULT_UPSAMPLE, DCGANGenerator
from gradinvert.io.file_schemas import DcganArch, GeneratorMetadata, validate_generator_metadata
from gradinvert.io.files import _common_metadata, _require_schema, _save
from gradinvert.io.tensorfile import Header, read_header, read_tensors
from gradinvert.models.footprint import on_meta
from gradinvert.models.registry import state_problems
from gradinvert.runtime.errors import InvalidInputError

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
    config: dict[str, Any] | None = None,
) -> None:
    """Write ``module``'s parameters and buffers atomically (``half``: floats as float16;
    ``config``: the settings record of the run that made it)."""
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
    if config:
        metadata["config"] = json.dumps(config)
    _save(tensors, metadata, path)


def arch_dict(arch: DcganArch | Any) -> dict[str, Any]:
    """A validated architecture record as a dict; a DCGAN's ``upsample`` only when not the
    default, as :meth:`DCGANGenerator.arch` writes it (older files keep their exact record)."""
    record = arch.model_dump()
    if isinstance(arch, DcganArch) and record["upsample"] == DEFAULT_UPSAMPLE:
        del record["upsample"]
    return record


def _dcgan_problems(arch: dict[str, Any], shapes: dict[str, torch.Tensor]) -> list[str]:
    """How the file's tensors differ from the DCGAN its metadata describes (built on meta)."""
    with on_meta():
        module = DCGANGenerator(**{k: v for k, v in arch.items() if k != "name"})
    return state_problems(module, shapes)


def read_generator_header(path: str | os.PathLike[str]) -> tuple[Header, GeneratorMetadata]:
    """A generator file's header and validated metadata; a DCGAN's tensors are compared by
    name and shape with the model its metadata describes (on the meta device) before anything
    is read or built."""
    header = read_header(path)
    _require_schema(header.path, header.metadata, FILE_KIND)
    meta = validate_generator_metadata(str(header.path), header.metadata)
    shapes: dict[str, torch.Tensor] = {}
    for key, value in header.meta_tensors().items():
        prefix, _, name = key.partition(".")
        if prefix not in ("param", "buffer") or not name:
            raise InvalidInputError(f"{header.path}: unexpected tensor {key!r} in a generator file")
        shapes[name] = value
    if isinstance(meta.generator, DcganArch):
        problems = _dcgan_problems(arch_dict(meta.generator), shapes)
        if problems:
            raise InvalidInputError(
                f"{header.path}: tensors do not fit the generator its metadata describes "
                f"({arch_dict(meta.generator)}): " + "; ".join(problems)
            )
    return header, meta


def load_generator_file(path: str | os.PathLike[str]) -> GeneratorFile:
    """Read a generator file (header and metadata checked first); floats come back as float32."""
    header, meta = read_generator_header(path)
    state: dict[str, torch.Tensor] = {}
    for key, value in read_tensors(header).items():
        state[key.partition(".")[2]] = value.float() if value.is_floating_point() else value
    return GeneratorFile(arch_dict(meta.generator), state, dict(meta.training))
