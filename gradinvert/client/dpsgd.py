"""DP-SGD as a client runs it (Abadi et al. 2016; DESIGN.md §12): per-example gradients, each
clipped to L2 norm C, summed, Gaussian noise N(0, (z·C)²) per coordinate, divided by the batch.

Per-example gradients come from ``torch.func`` (``vmap`` over ``grad`` of a ``functional_call``)
rather than Opacus's ``GradSampleModule``: it needs no per-layer gradient sampler (any module
``functional_call`` runs is covered), it leaves the model untouched, and the attack side needs
the same computation *differentiably* for every candidate batch (:mod:`gradinvert.invert.simulate`
clips each candidate's per-example gradients inside ``torch.func.grad``), which Opacus's hooks do
not give. The clip factor is Opacus's, min(1, C / (‖g_n‖ + 1e-6)), so a step matches Opacus's
``DPOptimizer`` (tests/test_dpsgd.py). The privacy budget comes from Opacus's accountants
(:func:`privacy_spent`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from gradinvert.client.defenses import stream_seed
from gradinvert.runtime.errors import UnavailableError, UsageError

Tensors = dict[str, torch.Tensor]
Accountant = Literal["rdp", "prv"]
CLIP_EPSILON = 1e-6  # Opacus's guard in C / (norm + 1e-6)
ACCOUNTANTS: dict[str, str] = {
    "rdp": "Rényi DP (Mironov 2017), opacus.accountants.RDPAccountant",
    "prv": "privacy random variables (Gopi et al. 2021), opacus.accountants.PRVAccountant",
}


@dataclass
class DPConfig:
    """DP-SGD settings of a client, and what its accountant needs.

    ``dataset_size``: the client's N (sampling rate q = per-step batch / N); without it the
    update is still made, but no ε is computed. ``rounds``: the FL rounds the budget covers.
    """

    clip: float
    noise_multiplier: float
    dataset_size: int | None = None
    delta: float = 1e-5
    rounds: int = 1
    accountant: Accountant = "rdp"

    def problems(self) -> list[str]:
        """Every invalid setting, as ``--option value: why``."""
        found = []
        if not (math.isfinite(self.clip) and self.clip > 0):
            found.append(f"--dp-clip {self.clip}: must be a positive number")
        if not (math.isfinite(self.noise_multiplier) and self.noise_multiplier >= 0):
            found.append(f"--dp-noise-multiplier {self.noise_multiplier}: must be 0 or more")
        if self.dataset_size is not None and self.dataset_size < 1:
            found.append(f"--dataset-size {self.dataset_size}: must be at least 1")
        if not (math.isfinite(self.delta) and 0 < self.delta < 1):
            found.append(f"--dp-delta {self.delta}: must lie strictly between 0 and 1")
        if self.rounds < 1:
            found.append(f"--rounds {self.rounds}: must be at least 1")
        if self.accountant not in ACCOUNTANTS:
            found.append(f"--dp-accountant {self.accountant}: use {' or '.join(ACCOUNTANTS)}")
        return found


def batchnorm_in_train_mode(model: nn.Module) -> list[str]:
    """Names of the BatchNorm layers that normalize by batch statistics (train mode)."""
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.training
    ]


def refuse_batchnorm(model: nn.Module, arch: str) -> None:
    """DP-SGD's per-example clipping is undefined when BatchNorm mixes the examples."""
    layers = batchnorm_in_train_mode(model)
    if layers:
        raise UsageError(
            f"DP-SGD clips each example's gradient, but {arch} has BatchNorm in train mode "
            f"({len(layers)} layers, e.g. {layers[0]!r}), which mixes the examples of a batch: "
            "use a GroupNorm variant (--model convnet-gn, cifar-resnet18-gn, resnet18-gn, "
            "resnet50-gn) as DP deployments do, or --mode eval"
        )


def per_example_gradients(
    model: nn.Module,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    names: list[str] | None = None,
) -> Tensors:
    """Each example's gradient of its cross-entropy: name → B×(parameter shape).

    ``names``: the parameters to differentiate (default: every trainable one).
    """
    params = dict(model.named_parameters())
    names = names if names is not None else [n for n, p in params.items() if p.requires_grad]
    active = {n: params[n].detach() for n in names}
    frozen = {n: p.detach() for n, p in params.items() if n not in active}
    buffers = dict(model.named_buffers())

    def loss(theta: Tensors, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = functional_call(model, ({**frozen, **theta}, buffers), (x.unsqueeze(0),))
        return F.cross_entropy(out, y.unsqueeze(0))

    per_example = vmap(grad(loss), in_dims=(None, 0, 0), randomness="different")
    return per_example(active, inputs, labels)


def clip_factors(per_example: Tensors, clip: float) -> torch.Tensor:
    """B factors min(1, C / (‖g_n‖ + 1e-6)), ‖g_n‖ over all of example n's tensors."""
    squares = [g.flatten(1).square().sum(1) for g in per_example.values()]
    norms = torch.stack(squares).sum(0).sqrt()
    return (clip / (norms + CLIP_EPSILON)).clamp(max=1.0)


def clipped_sum(per_example: Tensors, clip: float) -> Tensors:
    """Σ_n factor_n · g_n per tensor (differentiable; works under ``vmap``)."""
    factors = clip_factors(per_example, clip)
    return {n: torch.einsum("b,b...->...", factors, g) for n, g in per_example.items()}


def dp_sgd_gradient(
    model: nn.Module,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    config: DPConfig,
    generator: torch.Generator,
) -> tuple[Tensors, dict[str, Any]]:
    """One DP-SGD gradient: (Σ_n clip(g_n) + N(0, (zC)²)) / B; noise drawn on the CPU from
    ``generator`` tensor by tensor in parameter order. Returns it and what the step saw."""
    per_example = per_example_gradients(model, inputs, labels)
    factors = clip_factors(per_example, config.clip)
    summed = {n: torch.einsum("b,b...->...", factors, g) for n, g in per_example.items()}
    std = config.noise_multiplier * config.clip
    batch = inputs.shape[0]
    noisy = {}
    for name, value in summed.items():
        noise = torch.randn(value.shape, generator=generator, dtype=torch.float32) * std
        noisy[name] = ((value + noise.to(value.device)) / batch).detach()
    return noisy, {"clipped": int((factors < 1).sum()), "examples": batch}


def step_function(
    config: DPConfig, seed: int | None
) -> Callable[[nn.Module, torch.Tensor, torch.Tensor], Tensors]:
    """A ``(model, inputs, labels) -> gradient`` that runs DP-SGD, with one seeded noise stream
    for all the steps it is called for (FedSGD: one; FedAvg: every local step)."""
    generator = torch.Generator().manual_seed(stream_seed(seed, "dp-sgd"))
    seen = {"clipped": 0, "examples": 0}

    def step(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> Tensors:
        gradient, stats = dp_sgd_gradient(model, inputs, labels, config, generator)
        seen["clipped"] += stats["clipped"]
        seen["examples"] += stats["examples"]
        return gradient

    step.seen = seen  # type: ignore[attr-defined]
    return step


def privacy_spent(
    noise_multiplier: float,
    sample_rate: float,
    steps: int,
    delta: float,
    accountant: Accountant = "rdp",
) -> float | None:
    """ε of ``steps`` Poisson-subsampled Gaussian steps by Opacus's accountant; None for no
    noise (no finite guarantee)."""
    if noise_multiplier == 0:
        return None
    try:
        from opacus.accountants import PRVAccountant, RDPAccountant
    except ImportError:  # pragma: no cover - opacus is a dependency
        raise UnavailableError("the privacy accountant needs opacus (pip install opacus)") from None
    counter = RDPAccountant() if accountant == "rdp" else PRVAccountant()
    # the accountant's own history format: one (noise multiplier, sample rate, steps) entry
    counter.history = [(float(noise_multiplier), float(sample_rate), int(steps))]
    return float(counter.get_epsilon(delta=delta))


def dp_record(
    config: DPConfig,
    per_step_batch: int,
    local_steps: int,
    seen: dict[str, int],
    seed: int | None,
) -> dict[str, Any]:
    """The ``dp-sgd`` entry of an update's defense list: the mechanism and its accounting."""
    record: dict[str, Any] = {
        "name": "dp-sgd",
        "clip": config.clip,
        "noise_multiplier": config.noise_multiplier,
        "noise_std": config.noise_multiplier * config.clip,  # of the sum, before ÷ batch
        "per_step_batch": per_step_batch,
        "local_steps": local_steps,
        "clipped_examples": seen.get("clipped", 0),
        "examples_seen": seen.get("examples", 0),
        "per_example": "torch.func vmap",
        "noise_seed": stream_seed(seed, "dp-sgd"),
    }
    record["accounting"] = accounting(config, per_step_batch, local_steps)
    return record


def accounting(config: DPConfig, per_step_batch: int, local_steps: int) -> dict[str, Any]:
    """ε and its inputs: q = per-step batch / N, steps = rounds × local steps, δ."""
    try:
        from importlib.metadata import version

        library = f"opacus {version('opacus')}"
    except Exception:  # noqa: BLE001 (any metadata problem: name the library only)
        library = "opacus"
    entry: dict[str, Any] = {
        "accountant": config.accountant,
        "library": library,
        "delta": config.delta,
        "rounds": config.rounds,
        "steps": config.rounds * local_steps,
        "dataset_size": config.dataset_size,
        "sample_rate": None,
        "epsilon": None,
        "sampling": "Poisson subsampling assumed (as Opacus's accountants do)",
    }
    if config.dataset_size is None:
        entry["note"] = "no --dataset-size: the sampling rate, hence ε, is unknown"
        return entry
    if per_step_batch > config.dataset_size:
        raise UsageError(
            f"--dataset-size {config.dataset_size}: smaller than the batch of "
            f"{per_step_batch} examples each step uses"
        )
    rate = per_step_batch / config.dataset_size
    entry["sample_rate"] = rate
    entry["epsilon"] = privacy_spent(
        config.noise_multiplier, rate, entry["steps"], config.delta, config.accountant
    )
    if entry["epsilon"] is None:
        entry["note"] = "noise multiplier 0: no finite ε"
    return entry


def describe_privacy(record: dict[str, Any]) -> str:
    """One line: ε at δ and how it was computed, from a ``dp-sgd`` defense entry."""
    acc = record.get("accounting") or {}
    mechanism = (
        f"DP-SGD z = {record.get('noise_multiplier'):g}, C = {record.get('clip'):g}, "
        f"{record.get('per_step_batch')} examples per step"
    )
    if acc.get("epsilon") is None:
        return f"{mechanism}; ε unknown: {acc.get('note', 'not computed')}"
    return (
        f"ε = {acc['epsilon']:.4g} at δ = {acc['delta']:g} ({acc.get('library', 'opacus')} "
        f"{str(acc['accountant']).upper()} accountant; q = {record.get('per_step_batch')}/"
        f"{acc['dataset_size']} = {acc['sample_rate']:.3g}, {acc['steps']} steps = "
        f"{acc['rounds']} rounds × {record.get('local_steps')} local steps); {mechanism}"
    )
