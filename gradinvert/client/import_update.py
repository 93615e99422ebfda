"""Update files from what real deployments keep: the global model and what a client sent.

``--before GLOBAL --after CLIENT`` (two state dicts) gives a FedAvg delta ``after − before``;
``--gradient GRADS`` (a state dict of parameter gradients) gives a gradient update. Every tensor
is checked against the model (names, shapes, dtypes, finite values) and all mismatches of all
inputs are reported in one ``InvalidInputError`` before anything is written.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from gradinvert.client.capture import global_state
from gradinvert.io.files import LocalTraining, UpdateFile
from gradinvert.models import InputSpec, ModelSpec, build_model, read_state_dict
from gradinvert.models.fit import describe_problems, tensor_problems
from gradinvert.runtime.errors import InvalidInputError, UsageError

Tensors = dict[str, torch.Tensor]


@dataclass
class ClientSettings:
    """What is known of how the client computed its update (None: unknown)."""

    mode: Literal["train", "eval"] = "eval"
    batch_size: int | None = None
    local: LocalTraining | None = None


@dataclass
class StateInputs:
    """The state dicts an update is made from, with the names they came from (for messages)."""

    before: Tensors | None = None
    after: Tensors | None = None
    gradient: Tensors | None = None
    names: dict[str, str] = field(default_factory=dict)


def file_digest(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes, recorded so an audit can name exactly what it read."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read_inputs(
    before: Path | None, after: Path | None, gradient: Path | None
) -> tuple[StateInputs, dict[str, str]]:
    """Read the given state-dict files; return them and their SHA-256 digests by role."""
    if gradient is None and (before is None or after is None):
        raise UsageError("give --before GLOBAL --after CLIENT (a delta) or --gradient GRADS")
    if gradient is not None and after is not None:
        raise UsageError("--gradient and --after exclude each other: one update per file")
    inputs, digests = StateInputs(), {}
    for role, path in (("before", before), ("after", after), ("gradient", gradient)):
        if path is not None:
            setattr(inputs, role, read_state_dict(path))
            inputs.names[role] = str(path)
            digests[role] = file_digest(path)
    return inputs, digests


def _trainable(model: nn.Module) -> Tensors:
    return {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}


def check_inputs(model: nn.Module, inputs: StateInputs, arch: str) -> None:
    """Raise one ``InvalidInputError`` naming every tensor of every input that does not fit."""
    full = model.state_dict()
    expected = {"before": full, "after": full, "gradient": _trainable(model)}
    messages = []
    for role in ("before", "after", "gradient"):
        state = getattr(inputs, role)
        if state is None:
            continue
        problems = tensor_problems(expected[role], state)
        if problems:
            messages.append(describe_problems(inputs.names.get(role, role), problems, what=arch))
    if messages:
        raise InvalidInputError("; ".join(messages))


def build_update(
    spec: ModelSpec,
    input_spec: InputSpec,
    inputs: StateInputs,
    settings: ClientSettings,
    source: dict[str, object] | None = None,
    init_seed: int = 0,
) -> UpdateFile:
    """The update file for ``inputs``: a delta (before, after) or a gradient (gradient, and
    before or else the model's seeded init as the global state)."""
    model = build_model(spec, init_seed=init_seed)
    check_inputs(model, inputs, f"the {spec.arch} model")
    if settings.batch_size is not None and settings.batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    local = settings.local
    size = settings.batch_size
    if local is not None and size is not None and not 1 <= local.batch_size <= size:
        raise UsageError(f"--local-batch-size must be between 1 and the batch size ({size})")
    if inputs.before is not None:
        model.load_state_dict(inputs.before, strict=True)
    params, buffers = global_state(model)
    if inputs.gradient is not None:
        kind = "gradient"
        update = {n: inputs.gradient[n].detach().clone() for n in _trainable(model)}
        local = None
    else:
        assert inputs.after is not None and inputs.before is not None
        kind = "delta"
        update = {n: inputs.after[n] - inputs.before[n] for n in params}
    return UpdateFile(
        kind=kind,
        update=update,
        params=params,
        buffers=buffers,
        model=spec,
        input=input_spec,
        mode=settings.mode,
        batch_size=settings.batch_size,
        local=local,
        threat={
            "labels_shared": False,
            "bn_stats_shared": False,
            "batch_size_known": settings.batch_size is not None,
            "local_known": kind == "gradient" or local is not None,
        },
        torch_version=torch.__version__,
        source=dict(source or {}),
    )
