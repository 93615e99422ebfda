"""Client-side simulation: the gradient or FedAvg weight delta a client shares for a batch."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from gradinvert.client.bnstats import record_bn_inputs
from gradinvert.client.defenses import DefenseConfig, apply_defenses
from gradinvert.io.files import LocalTraining, UpdateFile
from gradinvert.models.spec import InputSpec, ModelSpec
from gradinvert.runtime.device import rng_devices
from gradinvert.runtime.errors import UsageError


@dataclass
class CaptureConfig:
    """How the simulated client computes and protects its update."""

    mode: Literal["train", "eval"] = "eval"
    local: LocalTraining | None = None
    defense: DefenseConfig = field(default_factory=DefenseConfig)
    share_bn_stats: bool = False
    seed: int | None = 0


def global_state(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """CPU copies of the model's parameters and buffers: the state a client receives."""
    params = {n: p.detach().clone().cpu() for n, p in model.named_parameters()}
    buffers = {n: b.detach().clone().cpu() for n, b in model.named_buffers()}
    return params, buffers


def parameter_gradient(
    model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Gradient of the mean cross-entropy with respect to every trainable parameter."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    names = [n for n, _ in named]
    params = [p for _, p in named]
    loss = F.cross_entropy(model(inputs), labels)
    grads = torch.autograd.grad(loss, params)
    return {n: g.detach() for n, g in zip(names, grads, strict=True)}


def minibatch_schedule(
    batch_size: int, local: LocalTraining, generator: torch.Generator | None = None
) -> list[torch.Tensor]:
    """Indices used at each local step.

    Without shuffling, step t uses the consecutive slice starting at t·b, wrapping around the
    batch. With shuffling, the batch is permuted (seeded) and consecutive slices of the
    permutation are used; a new permutation is drawn each time one is used up.
    """
    if local.batch_size < 1 or local.batch_size > batch_size:
        raise UsageError(f"--local-batch-size must be between 1 and the batch size ({batch_size})")
    order = torch.arange(batch_size)
    if local.shuffle:
        order = torch.randperm(batch_size, generator=generator)
    steps, position = [], 0
    for _ in range(local.steps):
        take = []
        while len(take) < local.batch_size:
            if position == batch_size:
                position = 0
                if local.shuffle:
                    order = torch.randperm(batch_size, generator=generator)
            take.append(int(order[position]))
            position += 1
        steps.append(torch.tensor(take))
    return steps


def local_sgd_delta(
    model: nn.Module,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    schedule: list[torch.Tensor],
    lr: float,
) -> dict[str, torch.Tensor]:
    """Run plain SGD steps on the given minibatches; return new − old for each parameter."""
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    for indices in schedule:
        indices = indices.to(inputs.device)
        grads = parameter_gradient(model, inputs[indices], labels[indices])
        with torch.no_grad():
            for name, param in model.named_parameters():
                if name in grads:
                    param -= lr * grads[name]
    return {n: (p.detach() - start[n]) for n, p in model.named_parameters()}


def capture_update(
    model: nn.Module,
    spec: ModelSpec,
    input_spec: InputSpec,
    images01: torch.Tensor,
    labels: torch.Tensor,
    config: CaptureConfig,
    device: torch.device | str = "cpu",
) -> UpdateFile:
    """Simulate one client on ``images01`` (N×C×H×W in [0, 1]) and return its update file.

    The caller's model is not modified; the update carries the state the client received.
    """
    if images01.shape[0] != labels.shape[0]:
        raise UsageError(f"{labels.shape[0]} labels for {images01.shape[0]} images")
    model = copy.deepcopy(model).to(device)
    model.train(config.mode == "train")
    params, buffers = global_state(model)
    inputs = input_spec.normalize(images01.to(device))
    labels = labels.to(device)

    with torch.random.fork_rng(devices=rng_devices(device)):  # seeds every device's RNG
        if config.seed is not None:
            torch.manual_seed(config.seed)
        bn_stats = {}
        if config.share_bn_stats:
            probe = copy.deepcopy(model)  # keep the real model's running statistics untouched
            with torch.no_grad(), record_bn_inputs(probe) as recorded:
                probe(inputs)
            bn_stats = {k: (m.cpu(), v.cpu()) for k, (m, v) in recorded.items()}
        if config.local is None:
            update = parameter_gradient(model, inputs, labels)
            kind = "gradient"
        else:
            generator = torch.Generator().manual_seed(config.seed or 0)
            schedule = minibatch_schedule(images01.shape[0], config.local, generator)
            update = local_sgd_delta(model, inputs, labels, schedule, config.local.lr)
            kind = "delta"

    update = {n: t.cpu() for n, t in update.items()}
    update, defense_record = apply_defenses(update, config.defense, config.seed)
    local = None
    if config.local is not None:
        local = copy.copy(config.local)
        local.seed = config.seed if local.shuffle else None
    return UpdateFile(
        kind=kind,
        update=update,
        params=params,
        buffers=buffers,
        model=spec,
        input=input_spec,
        mode=config.mode,
        batch_size=int(images01.shape[0]),
        bn_stats=bn_stats,
        local=local,
        defense=defense_record,
        threat={
            "labels_shared": False,
            "bn_stats_shared": bool(bn_stats),
            "batch_size_known": True,
        },
        seed=config.seed,
        torch_version=torch.__version__,
        source={"tool": "capture", "simulated": True},
    )
