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

A secure aggregate of M clients (:mod:`gradinvert.client.aggregate`) is simulated as what it
is: the candidate batch is the members' batches one after the other, each member's client runs
on its own slice (its own BatchNorm statistics, its own local training and minibatch schedule),
and the batch-size-weighted mean of their updates is matched. With ``adaptation``
(:mod:`.adapt`, ``--adapt-defense``) the deterministic part of the recorded defense is applied
to every candidate's update first: DP-SGD's per-example clipping in each gradient step, then
the support mask, global clip or sign of each member's update.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, replace_all_batch_norm_modules_, vmap

from gradinvert.client.aggregate import members_of
from gradinvert.client.bnstats import batchnorm_layers, channel_stats
from gradinvert.client.capture import minibatch_schedule
from gradinvert.client.dpsgd import clipped_sum
from gradinvert.invert.adapt import apply_transforms, plan_adaptation
from gradinvert.invert.objectives import GradientDistance
from gradinvert.invert.trim import Trim, trim_dead_taps
from gradinvert.io.files import LocalTraining, UpdateFile
from gradinvert.models.restore import model_from_update
from gradinvert.runtime.errors import InvalidInputError

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
    return local_schedule(update.local, batch_size)


def local_schedule(local: LocalTraining, batch_size: int) -> list[torch.Tensor]:
    """Minibatch indices per local step of a client with these local settings."""
    generator = torch.Generator().manual_seed(local.seed or 0)
    return minibatch_schedule(batch_size, local, generator)


@dataclass
class Member:
    """One client behind the shared update: its slice of the candidate batch, its weight in
    the mean, and (FedAvg) its local steps' minibatches (indices into its slice)."""

    start: int
    size: int
    weight: float
    schedule: list[torch.Tensor] = field(default_factory=list)


def members_for(update: UpdateFile, batch_size: int) -> list[Member]:
    """The clients whose weighted mean the update is: one, or a secure aggregate's members."""
    recorded = members_of(update)
    if recorded is None:
        schedule = schedule_of(update, batch_size) if update.kind == "delta" else []
        return [Member(0, batch_size, 1.0, schedule)]
    sizes = [int(m["batch_size"]) for m in recorded]
    if sum(sizes) != batch_size:
        raise InvalidInputError(
            f"the update aggregates {len(sizes)} clients' batches of {'+'.join(map(str, sizes))} "
            f"= {sum(sizes)} images, not {batch_size}"
        )
    members, start = [], 0
    for size, record in zip(sizes, recorded, strict=True):
        schedule = []
        if update.kind == "delta":
            local = record.get("local")
            if local is None:
                raise InvalidInputError("an aggregated delta's member records no local training")
            schedule = local_schedule(LocalTraining(**local), size)
        members.append(Member(start, size, size / batch_size, schedule))
        start += size
    return members


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
        adapt_defense: bool = False,
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
        self.adaptation = plan_adaptation(
            update.defense,
            dict(zip(self.matched, targets, strict=True)),
            self.matched,
            victim.trainable,
            adapt_defense,
        )
        self.transforms = [
            (kind, {n: m.to(device) for n, m in arg.items()} if kind == "mask" else arg)
            for kind, arg in self.adaptation.transforms
        ]
        self.collect_bn = collect_bn and bool(victim.bn_names)
        self.reduction = update.loss.get("reduction", "mean")
        self.kind = update.kind
        self.schedule: list[torch.Tensor] = []
        self.local_lr = 0.0
        self.members = members_for(update, batch_size)
        for member in self.members:
            member.schedule = [idx.to(device) for idx in member.schedule]
        if update.kind == "delta":
            assert update.local is not None
            self.local_lr = float(update.local.lr)
            self.schedule = self.members[0].schedule
        # the plain path (one client, nothing adapted) stays the original computation
        self.general = len(self.members) > 1 or self.adaptation.active
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
        if self.general:
            stats: BnStats = ((), ())
            if self.collect_bn:
                _, stats = self._forward(params, x, True)
            update = self._mean_update(x, soft)
            return self.objective([update[n] for n in self.matched]), stats
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

    def _loss(
        self,
        active: dict[str, torch.Tensor],
        xb: torch.Tensor,
        yb: torch.Tensor | None,
        sb: torch.Tensor | None,
    ) -> torch.Tensor:
        """The client's loss on a (mini)batch with the trainable parameters ``active``."""
        frozen = {n: p for n, p in self.victim.params.items() if n not in active}
        out, _ = self._forward({**frozen, **active}, xb, False)
        return self._criterion(out, yb, sb)

    def _step_gradient(
        self,
        theta: dict[str, torch.Tensor],
        xb: torch.Tensor,
        yb: torch.Tensor | None,
        sb: torch.Tensor | None,
    ) -> dict[str, torch.Tensor]:
        """One gradient step's gradient: of the mean loss, or DP-SGD's clipped per-example
        mean (noise is not simulated) when the adaptation clips."""
        clip = self.adaptation.dp_clip
        if clip is None:
            return grad(self._loss)(theta, xb, yb, sb)

        def one(
            t: dict[str, torch.Tensor],
            xn: torch.Tensor,
            yn: torch.Tensor | None,
            sn: torch.Tensor | None,
        ) -> torch.Tensor:
            return self._loss(
                t,
                xn.unsqueeze(0),
                None if yn is None else yn.unsqueeze(0),
                None if sn is None else sn.unsqueeze(0),
            )

        dims = (None, 0, None if yb is None else 0, None if sb is None else 0)
        per_example = vmap(grad(one), in_dims=dims)(theta, xb, yb, sb)
        return {n: g / xb.shape[0] for n, g in clipped_sum(per_example, clip).items()}

    def _slice(
        self, tensor: torch.Tensor | None, member: Member, indices: torch.Tensor | None = None
    ) -> torch.Tensor | None:
        if tensor is None:
            return None
        part = tensor.narrow(0, member.start, member.size)
        return part if indices is None else part.index_select(0, indices)

    def _member_update(
        self, x: torch.Tensor, soft: torch.Tensor | None, member: Member
    ) -> dict[str, torch.Tensor]:
        """One member's update (gradient, or local delta) on its slice of the candidates."""
        params = self.victim.params
        if self.kind == "gradient":
            clips = self.adaptation.dp_clip is not None
            names = self.victim.trainable if clips else self.matched
            theta = {n: params[n] for n in names}
            return self._step_gradient(
                theta, self._slice(x, member), self._slice(self.labels, member),
                self._slice(soft, member),
            )  # fmt: skip
        trainable = self.victim.trainable
        theta = {n: params[n] for n in trainable}
        for indices in member.schedule:
            step = self._step_gradient(
                theta,
                self._slice(x, member, indices),
                self._slice(self.labels, member, indices),
                self._slice(soft, member, indices),
            )
            theta = {n: theta[n] - self.local_lr * step[n] for n in trainable}
        return {n: theta[n] - params[n] for n in trainable}

    def _mean_update(self, x: torch.Tensor, soft: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """The weighted mean of the members' (adapted) updates, matched tensors only."""
        total: dict[str, torch.Tensor] = {}
        members = self.members
        if self.kind == "gradient" and self._union_is_exact():
            members = [Member(0, x.shape[0], 1.0)]  # Σ_i w_i · mean_i = the union's mean
        for member in members:
            update = self._member_update(x, soft, member)
            update = apply_transforms({n: update[n] for n in self.matched}, self.transforms)
            for name, value in update.items():
                weighted = value * member.weight
                total[name] = weighted if name not in total else total[name] + weighted
        return total

    def _union_is_exact(self) -> bool:
        """A gradient aggregate equals the gradient of the union batch: mean losses, no
        BatchNorm batch statistics and no per-member transform."""
        return not self.victim.training and not self.transforms and self.reduction == "mean"

    def local_delta(
        self, x: torch.Tensor, soft: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """θ_E − θ_0 of the client's local SGD steps on one candidate batch, differentiably
        (a secure aggregate: the members' weighted mean, adapted as planned)."""
        if self.general:
            return self._mean_update(x, soft)
        params = self.victim.params
        trainable = self.victim.trainable
        theta = {n: params[n] for n in trainable}
        for indices in self.schedule:
            xb = x.index_select(0, indices)
            yb = None if self.labels is None else self.labels.index_select(0, indices)
            sb = None if soft is None else soft.index_select(0, indices)
            step = grad(self._loss)(theta, xb, yb, sb)
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
