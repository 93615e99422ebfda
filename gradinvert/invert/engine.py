"""The optimization loop: K seeds at once, checkpoints, Ctrl-C, non-finite losses.

What is optimized belongs to a search space (:mod:`.spaces`: pixels, a generator's latents, or
per-image generator weights); the engine only asks it for each seed's candidate images. Each
iteration computes every seed's loss and its gradient with respect to that seed's parameters in
one vectorized call (``vmap`` of ``grad_and_value``), then takes one optimizer step on the
stacked parameters (leading dimension K). Adam and signed Adam act elementwise, so the seeds
stay independent runs (apart from the group term, which only reads the other seeds' detached
images). L-BFGS sees the sum of the seeds' losses as one objective: with several seeds it shares
one curvature model and line search across them.

Non-finite losses: a seed whose loss or gradient stops being finite is reset to fresh
parameters with fresh optimizer moments (L-BFGS: fresh optimizer), and counted; after
``MAX_RESETS`` resets of one seed the run stops with :class:`DivergedError` (exit 70; lower
the learning rate).

Ctrl-C (SIGINT) or SIGTERM (main thread): the current iteration finishes, a checkpoint is written
when one was asked for, and :class:`InterruptedRun` is raised (exit 130; 143 for SIGTERM); a
second signal aborts at once.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch.func import grad, grad_and_value, vmap

from gradinvert.config.attack import AttackConfig
from gradinvert.invert.calibrate import TERMS, StartPull, bn_terms, calibrated_weights
from gradinvert.invert.priors import (
    BnReference,
    bn_prior,
    group_distance,
    l2_norm,
    total_variation,
)
from gradinvert.invert.simulate import Simulator
from gradinvert.invert.spaces import Params, PixelSpace, SearchSpace
from gradinvert.io.file_schemas import InvertCheckpoint
from gradinvert.models.spec import InputSpec
from gradinvert.runtime.checkpoint import (
    CheckpointKind,
    LongRun,
    check_optimizer_state,
    check_tensors_fit,
    restoring,
)
from gradinvert.runtime.checkpoint import InterruptedRun as InterruptedRun  # re-exported
from gradinvert.runtime.checkpoint import fingerprint as fingerprint  # re-exported
from gradinvert.runtime.errors import ExitCode, GradinvertError, InvalidInputError

CHECKPOINT = CheckpointKind(
    "invert", "gradinvert-invert-checkpoint/2", InvertCheckpoint, "update, labels or settings"
)
MAX_RESETS = 10


class DivergedError(GradinvertError):
    """A seed's loss kept becoming non-finite."""

    exit_code = ExitCode.INTERNAL


def _finite_per_seed(tensors: Params) -> torch.Tensor:
    """K booleans: every entry of the seed's slice of every tensor is finite."""
    flags = [torch.isfinite(t).flatten(1).all(1) for t in tensors.values()]
    return torch.stack(flags).all(0)


def _masked(grad: torch.Tensor, bad: torch.Tensor, signed: bool) -> torch.Tensor:
    """The gradient with the ``bad`` seeds' slices zeroed (and signed for signed Adam)."""
    keep = (~bad).view(-1, *([1] * (grad.dim() - 1)))
    grad = torch.where(keep, grad, torch.zeros_like(grad))
    return grad.sign() if signed else grad


def lr_at(config: AttackConfig, iteration: int) -> float:
    """Learning rate of ``iteration`` (0-based): warm-up, then the step or cosine schedule."""
    total = config.iterations
    if config.warmup and iteration < config.warmup:
        return config.lr * (iteration + 1) / config.warmup
    if config.scheduler == "step":
        milestones = (total * 3 // 8, total * 5 // 8, total * 7 // 8)
        return config.lr * 0.1 ** sum(iteration >= m for m in milestones)
    if config.scheduler == "ramp":
        # GIFD's official schedule (its get_lr; StyleGAN2's projector): ramp-up over the
        # first 5 %, cosine ramp-down over the last 75 % of the stage.
        t = iteration / max(1, total)
        ramp = 0.5 - 0.5 * math.cos(min(1.0, (1.0 - t) / 0.75) * math.pi)
        return config.lr * ramp * min(1.0, t / 0.05)
    if config.scheduler == "cosine":
        span = max(1, total - config.warmup)
        progress = min(1.0, (iteration - config.warmup) / span)
        return config.lr * 0.5 * (1.0 + math.cos(math.pi * progress))
    return config.lr


@dataclass
class Progress:
    """What a progress display needs after each iteration."""

    iteration: int
    total: int
    loss: float  # lowest total loss over the seeds
    distance: float  # that seed's gradient distance


@dataclass
class Engine(LongRun):
    """State and loop of one inversion run (see the module docstring)."""

    checkpoint_kind: ClassVar[CheckpointKind] = CHECKPOINT

    simulator: Simulator
    config: AttackConfig
    shape: tuple[int, int, int, int]  # N, C, H, W
    input_spec: InputSpec
    num_classes: int
    learn_labels: bool
    bn_ref: BnReference | None
    device: torch.device
    run_id: str = ""
    space: SearchSpace | None = None  # default: the pixels (GI-x)
    stage: str = ""  # names the stage of a multi-stage run in checkpoints
    history: list[dict[str, Any]] = field(default_factory=list)  # earlier stages' records
    kept: dict[str, torch.Tensor] = field(default_factory=dict)  # carried across stages
    iteration: int = 0
    resets: list[int] = field(default_factory=list)
    _stop: bool = False

    def __post_init__(self) -> None:
        config, device = self.config, self.device
        if self.space is None:
            self.space = PixelSpace(
                self.shape, self.input_spec, device, init=config.init, box=config.box
            )
        self.stage = self.stage or self.space.name
        self.mean, self.std = self.space.mean, self.space.std
        self.cpu_rng = torch.Generator().manual_seed(config.seed)
        self.device_rng = torch.Generator(device=device).manual_seed(config.seed + 1)
        self.resets = [0] * config.seeds
        self.params: Params = self.space.fresh(config.seeds, self.cpu_rng)
        self.label_logits = self._fresh_logits(config.seeds) if self.learn_labels else None
        self.targets: torch.Tensor | None = None
        self.optimizer = self._make_optimizer()
        self._shift = (0, 0)
        self._flip = False
        self.last_total = torch.full((config.seeds,), float("nan"))
        self.last_distance = torch.full((config.seeds,), float("nan"))
        self.start: StartPull | None = None
        self.weights = (config.gradient_weight, config.bn, config.bn_first)
        if config.calibrate == "start":
            self._calibrate()
        argnums = (0, 2) if self.learn_labels else 0
        seed_grad = grad_and_value(self._seed_loss, argnums=argnums, has_aux=True)
        label_dim = 0 if self.learn_labels else None
        self._grad_fns = {
            grouped: vmap(
                seed_grad,
                in_dims=(0, 0, label_dim, 0 if grouped else None),
                randomness="different",
            )
            for grouped in (False, True)
        }
        self._seed_grad = seed_grad
        self.group_start = round(config.group_start * config.iterations)
        self.registration_start = round(config.registration_start * config.iterations)
        self.checkpoint_every = 100

    # ------------------------------------------------------------------ state

    def _fresh_logits(self, count: int) -> torch.Tensor:
        shape = (count, self.shape[0], self.num_classes)
        return torch.randn(shape, generator=self.cpu_rng).to(self.device)

    def _parameters(self) -> list[torch.Tensor]:
        logits = [self.label_logits] if self.label_logits is not None else []
        return list(self.params.values()) + logits

    @property
    def candidates(self) -> torch.Tensor:
        """Every seed's candidate batch in the model's input space (K×N×C×H×W, no gradients)."""
        assert self.space is not None
        return self.space.all_images(self.params)

    def _make_optimizer(self) -> torch.optim.Optimizer:
        if self.config.optimizer == "lbfgs":
            return torch.optim.LBFGS(
                self._parameters(),
                lr=self.config.lr,
                max_iter=self.config.lbfgs_evaluations,
                history_size=100,
            )
        assert self.space is not None
        scales = self.space.lr_scales()
        fused = {"fused": True} if self.space.fused_optimizer else {}
        if not scales:
            return torch.optim.Adam(self._parameters(), lr=self.config.lr, **fused)
        # Per-tensor step sizes (relative generator learning rates): one group per tensor.
        groups = [
            {"params": [param], "lr_scale": scales.get(name, 1.0)}
            for name, param in self.params.items()
        ]
        if self.label_logits is not None:
            groups.append({"params": [self.label_logits], "lr_scale": 1.0})
        return torch.optim.Adam(groups, lr=self.config.lr, **fused)

    def pixels(self, candidates: torch.Tensor | None = None) -> torch.Tensor:
        """Candidates as [0, 1] pixels (K×N×C×H×W)."""
        x = self.candidates if candidates is None else candidates
        return (x * self.std + self.mean).clamp(0.0, 1.0)

    def _calibrate(self) -> None:
        """``--calibrate start``: weigh the gradient and BN terms by their pull at the start."""
        assert self.space is not None
        space, bn_ref = self.space, self.bn_ref

        def term(params: Params, fixed: Params, soft: torch.Tensor | None, index: int):
            distance, (means, variances) = self.simulator.candidate(
                space.images(params, fixed), soft
            )
            if index == 0:
                return distance
            if bn_ref is None or not means:
                return distance * 0.0
            return bn_terms(means, variances, bn_ref)[index - 1]

        label_dim = 0 if self.label_logits is not None else None
        norms = []
        for index in range(len(TERMS)):
            pulls = vmap(
                grad(lambda p, f, s, i=index: term(p, f, s, i)),
                in_dims=(0, 0, label_dim),
                randomness="different",
            )(self.params, space.fixed, self.label_logits)
            squares = sum(g.detach().flatten(1).double().square().sum(1) for g in pulls.values())
            norms.append(float(torch.as_tensor(squares).sqrt().mean()))
        self.start = StartPull(*norms)
        self.weights = calibrated_weights(self.config, self.start)

    # ------------------------------------------------------------------ loss

    def _seed_loss(
        self,
        params: Params,
        fixed: Params,
        soft: torch.Tensor | None,
        target: torch.Tensor | None,
        autograd: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One seed's total loss and its gradient distance (vmapped over seeds)."""
        config = self.config
        assert self.space is not None
        x = self.space.images(params, fixed)
        inputs = x
        if self._flip:
            inputs = inputs.flip(-1)
        if self._shift != (0, 0):
            inputs = torch.roll(inputs, shifts=self._shift, dims=(-2, -1))
        distance, (means, variances) = self.simulator.candidate(inputs, soft, autograd=autograd)
        gradient_weight, bn_weight, bn_first = self.weights
        total = gradient_weight * distance
        penalty = self.space.penalty(params)
        if penalty is not None:
            total = total + penalty
        if config.tv:
            total = total + config.tv * total_variation(x)
        if config.l2:
            total = total + config.l2 * l2_norm(x)
        if self.bn_ref is not None and means:
            total = total + bn_weight * bn_prior(means, variances, self.bn_ref, bn_first)
        if target is not None:
            total = total + config.group * group_distance(x * self.std + self.mean, target)
        return total, distance

    def _gradients(self) -> tuple[Params, torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """Per seed: the loss gradient for every parameter (K leading), labels, total, distance."""
        assert self.space is not None
        fixed = self.space.fixed
        if self.config.seeds == 1 and self.simulator.kind == "gradient":
            return self._autograd_gradients()
        if self.config.seeds == 1:
            # One seed: the same computation without the vmap wrapper (about 10% faster).
            def first(t: torch.Tensor | None) -> torch.Tensor | None:
                return None if t is None else t[0]

            grads, aux = self._seed_grad(
                {n: p[0] for n, p in self.params.items()},
                {n: f[0] for n, f in fixed.items()},
                first(self.label_logits),
                first(self.targets),
            )
            total, distance = aux[0].unsqueeze(0), aux[1].unsqueeze(0)
            grad_params, grad_labels = grads if self.learn_labels else (grads, None)
            grad_params = {n: g.unsqueeze(0) for n, g in grad_params.items()}
            if grad_labels is not None:
                grad_labels = grad_labels.unsqueeze(0)
            return grad_params, grad_labels, total, distance
        grad_fn = self._grad_fns[self.targets is not None]
        grads, (total, distance) = grad_fn(self.params, fixed, self.label_logits, self.targets)
        grad_params, grad_labels = grads if self.learn_labels else (grads, None)
        return grad_params, grad_labels, total, distance

    def _autograd_gradients(
        self,
    ) -> tuple[Params, torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """One seed with regular autograd: the vmapped path's values, about 1.5× faster."""
        assert self.space is not None
        leaves = {n: p[0].detach().requires_grad_(True) for n, p in self.params.items()}
        fixed = {n: f[0] for n, f in self.space.fixed.items()}
        inputs = list(leaves.values())
        soft = None
        if self.label_logits is not None:
            soft = self.label_logits[0].detach().requires_grad_(True)
            inputs.append(soft)
        target = None if self.targets is None else self.targets[0]
        total, distance = self._seed_loss(leaves, fixed, soft, target, autograd=True)
        found = torch.autograd.grad(total, inputs)
        grad_params = {n: g.unsqueeze(0) for n, g in zip(leaves, found, strict=False)}
        grad_labels = found[-1].unsqueeze(0) if soft is not None else None
        return grad_params, grad_labels, total.detach().unsqueeze(0), distance.detach().unsqueeze(0)

    def _draw_jitter(self) -> None:
        config = self.config
        self._shift, self._flip = (0, 0), False
        if config.jitter:
            shift = torch.randint(-config.jitter, config.jitter + 1, (2,), generator=self.cpu_rng)
            self._shift = (int(shift[0]), int(shift[1]))
        if config.flip:
            self._flip = bool(torch.rand((), generator=self.cpu_rng) < 0.5)

    def _update_targets(self) -> None:
        config = self.config
        if config.group == 0 or config.seeds < 2 or self.iteration < self.group_start:
            return
        since = self.iteration - self.group_start
        if self.targets is not None and since % config.group_every:
            return
        from gradinvert.invert.group import group_targets

        registration = config.registration if self.iteration >= self.registration_start else "none"
        self.targets = group_targets(self.pixels().detach(), registration=registration)

    # ------------------------------------------------------------------ steps

    def step(self) -> None:
        """One iteration for all seeds."""
        config = self.config
        lr = lr_at(config, self.iteration)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        self._update_targets()
        self._draw_jitter()
        bad = self._lbfgs_step() if config.optimizer == "lbfgs" else self._adam_step(lr)
        assert self.space is not None
        with torch.no_grad():
            self.space.project_(self.params)
        bad = bad | ~_finite_per_seed(self.params)
        if bool(bad.any()):
            self._reset(bad)
        self.iteration += 1

    def _penalized_gradients(
        self,
    ) -> tuple[Params, torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """:meth:`_gradients` plus the space's closed-form term (:meth:`add_penalty_`)."""
        assert self.space is not None
        grad_params, grad_labels, total, distance = self._gradients()
        extra = self.space.add_penalty_(self.params, grad_params)
        if extra is not None:
            total = total + extra.to(total.dtype)
        return grad_params, grad_labels, total, distance

    def _adam_step(self, lr: float) -> torch.Tensor:
        grad_params, grad_labels, total, distance = self._penalized_gradients()
        bad = ~torch.isfinite(total) | ~_finite_per_seed(grad_params)
        signed = self.config.optimizer == "signed-adam"
        for name, param in self.params.items():
            param.grad = _masked(grad_params[name], bad, signed)
        if grad_labels is not None and self.label_logits is not None:
            self.label_logits.grad = _masked(grad_labels, bad, signed)
        self.optimizer.step()
        if self.config.langevin:
            for param in self.params.values():
                noise = torch.randn(param.shape, generator=self.device_rng, device=self.device)
                param.add_(noise, alpha=lr * self.config.langevin)
        self.last_total, self.last_distance = total.detach(), distance.detach()
        return bad

    def _lbfgs_step(self) -> torch.Tensor:
        last: dict[str, torch.Tensor] = {}

        def closure() -> torch.Tensor:
            grad_params, grad_labels, total, distance = self._penalized_gradients()
            for name, param in self.params.items():
                param.grad = grad_params[name]
            if grad_labels is not None and self.label_logits is not None:
                self.label_logits.grad = grad_labels
            last["total"], last["distance"] = total.detach(), distance.detach()
            return total.sum()

        self.optimizer.step(closure)
        total = last["total"]
        self.last_total, self.last_distance = total, last["distance"]
        return ~torch.isfinite(total)

    def _reset(self, bad: torch.Tensor) -> None:
        """Fresh parameters and fresh optimizer moments for the seeds marked ``bad``."""
        indices = [int(i) for i in torch.nonzero(bad.cpu()).flatten()]
        for index in indices:
            self.resets[index] += 1
            if self.resets[index] > MAX_RESETS:
                raise DivergedError(
                    f"the loss of seed {index} became non-finite {self.resets[index]} times "
                    f"(last at iteration {self.iteration}); lower --lr or change --optimizer"
                )
        assert self.space is not None
        fresh = self.space.fresh_for(indices, self.cpu_rng)
        with torch.no_grad():
            for name, param in self.params.items():
                param[indices] = fresh[name]
            if self.label_logits is not None:
                self.label_logits[indices] = self._fresh_logits(len(indices))
        if self.config.optimizer == "lbfgs":
            self.optimizer = self._make_optimizer()
            return
        for state in self.optimizer.state.values():
            for key in ("exp_avg", "exp_avg_sq"):
                if key in state:
                    state[key][indices] = 0

    # ------------------------------------------------------------------ loop

    def run(
        self,
        checkpoint: Path | None = None,
        checkpoint_every: int = 100,
        on_iteration: Callable[[Engine, Progress], None] | None = None,
    ) -> None:
        """Iterate until ``config.iterations``; checkpoint every N and on Ctrl-C."""
        self.checkpoint_every = checkpoint_every
        self.run_steps(checkpoint, on_iteration)

    def finished(self) -> bool:
        return self.iteration >= self.config.iterations

    def advance(self) -> Progress:
        self.step()
        best = int(torch.nan_to_num(self.last_total, nan=math.inf).argmin())
        return Progress(
            self.iteration,
            self.config.iterations,
            float(self.last_total[best]),
            float(self.last_distance[best]),
        )

    def checkpoint_due(self) -> bool:
        return self.iteration % self.checkpoint_every == 0 or self.finished()

    def position(self) -> int:
        return self.iteration

    def where(self) -> str:
        return f"at iteration {self.iteration}/{self.config.iterations}"

    # ------------------------------------------------------------------ checkpoints

    def payload(self) -> dict[str, Any]:
        """Everything needed to continue exactly where the run is."""
        state = {
            "stage": self.stage,
            "iteration": self.iteration,
            "params": dict(self.params),
            "fixed": dict(self.space.fixed) if self.space is not None else {},
            "label_logits": self.label_logits,
            "targets": self.targets,
            "optimizer": self.optimizer.state_dict(),
            "cpu_rng": self.cpu_rng.get_state(),
            "device_rng": self.device_rng.get_state(),
            "torch_rng": torch.get_rng_state(),
            "resets": list(self.resets),
            "history": json.dumps(self.history),
        }
        if self.kept:
            state["kept"] = dict(self.kept)
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def restore(self, state: dict[str, Any], source: str) -> None:
        """Continue from a checked :meth:`payload` of this run (and stage)."""
        if state.get("stage") != self.stage:
            raise InvalidInputError(
                f"{source}: the checkpoint is of stage {state.get('stage')!r}, not {self.stage!r}"
            )
        device = self.device
        saved = state["params"]
        check_tensors_fit(source, saved, dict(self.params), "the checkpoint's parameters")
        assert self.space is not None
        fixed = {k: v for k, v in state["fixed"].items() if k in self.space.fixed}
        check_tensors_fit(source, fixed, dict(self.space.fixed), "the checkpoint's fixed tensors")
        if self.label_logits is not None:
            logits = (
                {"label_logits": state["label_logits"]} if state["label_logits"] is not None else {}
            )
            check_tensors_fit(source, logits, {"label_logits": self.label_logits}, "the labels")
        optimizer = self._make_optimizer()
        check_optimizer_state(source, optimizer, state["optimizer"])
        with torch.no_grad():
            for name, param in self.params.items():
                param.copy_(saved[name].to(device))
            for name, value in fixed.items():
                self.space.fixed[name].copy_(value.to(device))
            if self.label_logits is not None:
                self.label_logits.copy_(state["label_logits"].to(device))
        targets = state.get("targets")
        self.targets = None if targets is None else targets.to(device)
        self.optimizer = optimizer
        with restoring(source):
            self.optimizer.load_state_dict(state["optimizer"])
            self.cpu_rng.set_state(state["cpu_rng"])
            self.device_rng.set_state(state["device_rng"])
            torch.set_rng_state(state["torch_rng"])
            if device.type == "cuda" and state.get("cuda_rng") is not None:
                torch.cuda.set_rng_state(state["cuda_rng"], device)
        self.iteration = int(state["iteration"])
        self.resets = [int(r) for r in state["resets"]]
        self.history = json.loads(state.get("history", "[]"))
        self.kept = {name: value.to(device) for name, value in state.get("kept", {}).items()}

    def adopt_labels(self, logits: torch.Tensor) -> None:
        """Start the learned labels from an earlier stage's (K×N×classes, in place)."""
        if self.label_logits is not None:
            with torch.no_grad():
                self.label_logits.copy_(logits.to(self.device))
