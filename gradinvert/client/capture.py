"""Client-side simulation: the gradient or FedAvg weight delta a client shares for a batch."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from gradinvert.client.bnstats import record_bn_inputs
from gradinvert.client.defenses import DefenseConfig, apply_defenses
from gradinvert.client.dpsgd import DPConfig, dp_record, refuse_batchnorm, step_function
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
    dp: DPConfig | None = None  # DP-SGD in every gradient step (FedSGD's one, FedAvg's local)

    def problems(self) -> list[str]:
        """Every invalid setting, as ``--option value: why``."""
        found = self.defense.problems()
        if self.dp is not None:
            found += self.dp.problems()
        return found


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


GradientFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]


def local_sgd_delta(
    model: nn.Module,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    schedule: list[torch.Tensor],
    lr: float,
    gradient: GradientFn = parameter_gradient,
) -> dict[str, torch.Tensor]:
    """Run plain SGD steps on the given minibatches; return new − old for each parameter.

    ``gradient``: how each step's gradient is computed (DP-SGD's noisy clipped mean or the
    plain mean-loss gradient)."""
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    for indices in schedule:
        indices = indices.to(inputs.device)
        grads = gradient(model, inputs[indices], labels[indices])
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
    found = config.problems()
    per_step = images01.shape[0] if config.local is None else config.local.batch_size
    size = None if config.dp is None else config.dp.dataset_size
    if size is not None and per_step > size:
        found.append(f"--dataset-size {size}: smaller than the {per_step} examples of a step")
    if found:
        raise UsageError("; ".join(found))
    model = copy.deepcopy(model).to(device)
    model.train(config.mode == "train")
    if config.dp is not None:
        refuse_batchnorm(model, spec.arch)
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
        gradient: GradientFn = parameter_gradient
        if config.dp is not None:
            gradient = step_function(config.dp, config.seed)
        if config.local is None:
            update = gradient(model, inputs, labels)
            kind = "gradient"
        else:
            generator = torch.Generator().manual_seed(config.seed or 0)
            schedule = minibatch_schedule(images01.shape[0], config.local, generator)
            update = local_sgd_delta(model, inputs, labels, schedule, config.local.lr, gradient)
            kind = "delta"

    update = {n: t.cpu() for n, t in update.items()}
    update, defense_record = apply_defenses(update, config.defense, config.seed)
    if config.dp is not None:
        steps = 1 if config.local is None else config.local.steps
        seen: dict[str, Any] = gradient.seen  # type: ignore[attr-defined]
        defense_record.insert(0, dp_record(config.dp, per_step, steps, seen, config.seed))
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


def capture_clients(
    model: nn.Module,
    spec: ModelSpec,
    input_spec: InputSpec,
    images01: torch.Tensor,
    labels: torch.Tensor,
    config: CaptureConfig,
    clients: int,
    device: torch.device | str = "cpu",
) -> tuple[UpdateFile, list[UpdateFile]]:
    """M clients on consecutive equal slices of the images (client i seeded ``seed + i``) and
    the secure aggregate the server sees; returns (aggregate, members)."""
    from gradinvert.client.aggregate import aggregate_updates

    count = images01.shape[0]
    if clients < 1 or count % clients:
        raise UsageError(f"--clients {clients}: {count} images do not split into equal batches")
    size = count // clients
    members = []
    for i in range(clients):
        part = slice(i * size, (i + 1) * size)
        seed = None if config.seed is None else config.seed + i
        member_config = dataclasses.replace(config, seed=seed)
        members.append(
            capture_update(
                model, spec, input_spec, images01[part], labels[part], member_config, device
            )
        )
    return aggregate_updates(members, [f"client {i}" for i in range(clients)]), members
