"""The attacked client, in functional form, evaluated on K candidate batches at once.

``Simulator.evaluate(X)`` takes K×N×C×H×W candidates (model input space) and returns, per
candidate batch, the distance between the update it would produce and the shared update, plus
the per-channel statistics of every BatchNorm input (for the BN prior). All K candidates go
through one vectorized computation: ``torch.func.vmap`` over ``torch.func.grad`` of a
``functional_call`` of the model. In train mode the BN layers of a private copy of the model are
switched to pure batch statistics (``replace_all_batch_norm_modules_``), so every candidate batch
is normalized by its own statistics, as the client's batch was.

For FedAvg deltas the client's local SGD steps (same minibatch schedule as ``capture``) are
simulated differentiably and the simulated delta is matched to the shared one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, replace_all_batch_norm_modules_, vmap

from gradinvert.client.bnstats import batchnorm_layers, channel_stats
from gradinvert.client.capture import minibatch_schedule
from gradinvert.invert.objectives import GradientDistance
from gradinvert.invert.trim import Trim, trim_dead_taps
from gradinvert.io.files import UpdateFile
from gradinvert.models.restore import model_from_update

BnStats = tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]


@dataclass
class Victim:
    """The attacked model: a private module copy plus its state as plain tensors."""

    module: nn.Module
    params: dict[str, torch.Tensor]
    buffers: dict[str, torch.Tensor]
    trainable: list[str]  # parameters the client updated (those the update carries)
    bn_names: list[str]
    training: bool
    trims: dict[str, Trim] = field(default_factory=dict)  # weights cut to their live taps


def build_victim(update: UpdateFile, device: torch.device | str, trim: bool = True) -> Victim:
    """Rebuild the exact model the client received, ready for functional calls.

    ``trim``: drop the kernel taps that only see zero padding (:mod:`.trim`; exact).
    """
    module = model_from_update(update, device)
    training = update.mode == "train"
    if training:
        replace_all_batch_norm_modules_(module)
    trims = trim_dead_taps(module, tuple(update.input.shape)) if trim else {}
    for param in module.parameters():
        param.requires_grad_(False)
    names = [n for n, _ in module.named_parameters()]
    return Victim(
        module=module,
        params={n: p.detach() for n, p in module.named_parameters()},
        buffers={n: b.detach() for n, b in module.named_buffers()},
        trainable=[n for n in names if n in update.update],
        bn_names=list(batchnorm_layers(module)),
        training=training,
        trims=trims,
    )


def schedule_of(update: UpdateFile, batch_size: int) -> list[torch.Tensor]:
    """The client's minibatch indices per local step, drawn exactly as ``capture`` drew them."""
    assert update.local is not None
    generator = torch.Generator().manual_seed(update.local.seed or 0)
    return minibatch_schedule(batch_size, update.local, generator)


class Simulator:
    """Distances of K candidate batches' simulated updates to the shared update."""

    def __init__(
        self,
        victim: Victim,
        update: UpdateFile,
        labels: torch.Tensor | None,
        matched: Sequence[str],
        objective: str,
        collect_bn: bool,
        device: torch.device | str,
        batch_size: int,
        relative: bool = False,
    ) -> None:
        self.victim = victim
        self.labels = None if labels is None else labels.to(device)
        self.matched = list(matched)
        targets, dead = [], []
        for name in self.matched:
            target = update.update[name].float()
            trim = victim.trims.get(name)
            if trim is not None:
                live = trim.apply(target)
                dead.append(float(target.double().square().sum() - live.double().square().sum()))
                target = live.contiguous()
            else:
                dead.append(0.0)
            targets.append(target)
        self.objective = GradientDistance(objective, targets, dead, relative).to(device)
        self.collect_bn = collect_bn and bool(victim.bn_names)
        self.reduction = update.loss.get("reduction", "mean")
        self.kind = update.kind
        self.schedule: list[torch.Tensor] = []
        self.local_lr = 0.0
        if update.kind == "delta":
            assert update.local is not None
            self.local_lr = float(update.local.lr)
            self.schedule = [idx.to(device) for idx in schedule_of(update, batch_size)]
        self._stats: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._recording = False
        self._autograd_leaves: dict[str, torch.Tensor] | None = None
        for name, layer in batchnorm_layers(victim.module).items():
            layer.register_forward_pre_hook(self._hook(name))

    def _hook(self, name: str):  # noqa: ANN202 (a forward pre-hook)
        def hook(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            if self._recording:
                self._stats[name] = channel_stats(args[0])

        return hook

    def _forward(
        self, params: dict[str, torch.Tensor], x: torch.Tensor, record: bool
    ) -> tuple[torch.Tensor, BnStats]:
        self._stats.clear()
        self._recording = record
        try:
            out = functional_call(self.victim.module, (params, self.victim.buffers), (x,))
        finally:
            self._recording = False
        stats = self._stats
        self._stats = {}
        if not record:
            return out, ((), ())
        names = self.victim.bn_names
        return out, (
            tuple(stats[n][0] for n in names),
            tuple(stats[n][1] for n in names),
        )

    def _criterion(
        self, logits: torch.Tensor, labels: torch.Tensor | None, soft: torch.Tensor | None
    ) -> torch.Tensor:
        """The client's cross-entropy, with hard labels or learned soft labels (logits)."""
        if soft is None:
            assert labels is not None
            return F.cross_entropy(logits, labels, reduction=self.reduction)
        per_sample = -(soft.softmax(-1) * logits.log_softmax(-1)).sum(-1)
        return per_sample.mean() if self.reduction == "mean" else per_sample.sum()

    def _gradient_candidate(
        self, x: torch.Tensor, soft: torch.Tensor | None, autograd: bool
    ) -> tuple[torch.Tensor, BnStats]:
        params = self.victim.params
        frozen = {n: p for n, p in params.items() if n not in self.matched}

        def loss_fn(active: dict[str, torch.Tensor]) -> tuple[torch.Tensor, BnStats]:
            out, stats = self._forward({**frozen, **active}, x, self.collect_bn)
            return self._criterion(out, self.labels, soft), stats

        if autograd:
            leaves = self._leaves()
            loss, stats = loss_fn(leaves)
            found = torch.autograd.grad(loss, list(leaves.values()), create_graph=True)
            return self.objective(list(found)), stats
        active = {n: params[n] for n in self.matched}
        grads, stats = grad(loss_fn, has_aux=True)(active)
        return self.objective([grads[n] for n in self.matched]), stats

    def _leaves(self) -> dict[str, torch.Tensor]:
        """The matched parameters as autograd leaves (made once, reused every iteration)."""
        if self._autograd_leaves is None:
            self._autograd_leaves = {
                n: self.victim.params[n].detach().requires_grad_(True) for n in self.matched
            }
        return self._autograd_leaves

    def local_delta(
        self, x: torch.Tensor, soft: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """θ_E − θ_0 of the client's local SGD steps on one candidate batch, differentiably."""
        params = self.victim.params
        trainable = self.victim.trainable
        frozen = {n: p for n, p in params.items() if n not in trainable}

        def loss_fn(
            active: dict[str, torch.Tensor],
            xb: torch.Tensor,
            yb: torch.Tensor | None,
            sb: torch.Tensor | None,
        ) -> torch.Tensor:
            out, _ = self._forward({**frozen, **active}, xb, False)
            return self._criterion(out, yb, sb)

        theta = {n: params[n] for n in trainable}
        for indices in self.schedule:
            xb = x.index_select(0, indices)
            yb = None if self.labels is None else self.labels.index_select(0, indices)
            sb = None if soft is None else soft.index_select(0, indices)
            step = grad(loss_fn)(theta, xb, yb, sb)
            theta = {n: theta[n] - self.local_lr * step[n] for n in trainable}
        return {n: theta[n] - params[n] for n in trainable}

    def _delta_candidate(
        self, x: torch.Tensor, soft: torch.Tensor | None
    ) -> tuple[torch.Tensor, BnStats]:
        stats: BnStats = ((), ())
        if self.collect_bn:
            _, stats = self._forward(self.victim.params, x, True)
        delta = self.local_delta(x, soft)
        return self.objective([delta[n] for n in self.matched]), stats

    def candidate(
        self, x: torch.Tensor, soft: torch.Tensor | None = None, *, autograd: bool = False
    ) -> tuple[torch.Tensor, BnStats]:
        """Distance and BN statistics of ONE candidate batch (N×C×H×W); vmap this over seeds.

        Only torch.func transforms may differentiate through the vmapped computation: regular
        autograd around a vmapped train-mode ``batch_norm`` double backward gives wrong
        gradients (torch 2.x), so the engine takes the seeds' gradients with ``torch.func.grad``.
        ``autograd=True`` (one seed, no vmap, shared updates only) computes the same values with
        regular autograd (``create_graph``), which runs about 1.5× faster on CPU; differentiate
        it with ``torch.autograd.grad``.
        """
        if self.kind == "delta":
            if autograd:
                raise ValueError("the autograd path covers shared gradients, not FedAvg deltas")
            return self._delta_candidate(x, soft)
        return self._gradient_candidate(x, soft, autograd)

    @torch.no_grad()
    def evaluate(
        self, candidates: torch.Tensor, label_logits: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, BnStats]:
        """Distances (K) and BN statistics (per layer K×C means, K×C variances), no gradients.

        ``candidates`` is K×N×C×H×W in the model's input space; ``label_logits`` K×N×classes
        soft labels (learned labels) or None for the fixed labels.
        """
        soft_dim = None if label_logits is None else 0
        return vmap(self.candidate, in_dims=(0, soft_dim), randomness="different")(
            candidates, label_logits
        )
