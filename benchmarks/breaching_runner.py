"""Runs breaching 0.1.2 on one shared update; called by vs_breaching.py in breaching's venv.

    .venv-breaching/bin/python benchmarks/breaching_runner.py JOB_DIR

JOB_DIR holds ``payload.safetensors`` (what the server holds and the client shared: the
model's parameters and buffers, the gradient, and for train mode the batch's BN statistics
as buffers) and ``job.json`` (attack, iterations, trials, input shape and normalization,
snapshot interval). Only the attacker's view enters this process, never the images. Writes
``result.safetensors`` (the reconstruction in [0, 1] pixels, breaching's labels, snapshots of
the current candidate) and ``result.json`` (wall times, trial scores, snapshot times).

Only breaching's public API is used: ``get_attack_config`` and ``attacks.prepare_attack``; the
attacker is subclassed to record a timed snapshot of the candidate every N iterations and
each trial's end (its returned candidate and score), nothing of its method is changed.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import breaching
import torch
import torchvision
from breaching.attacks.optimization_based_attack import OptimizationBasedAttacker
from omegaconf import OmegaConf
from safetensors.torch import load_file, save_file

CONFIGS = {"ig": "invertinggradients", "gradinversion": "seethroughgradients"}


class _TimedScheduler:
    """Wraps breaching's scheduler: after every ``every``-th step, snapshot the candidate."""

    def __init__(self, inner: Any, candidate: torch.Tensor, log: _Log) -> None:
        self.inner, self.candidate, self.log, self.steps = inner, candidate, log, 0

    def step(self) -> None:
        self.inner.step()
        self.steps += 1
        if self.steps % self.log.every == 0:
            self.log.snapshot(self.candidate.detach(), self.steps)


class _Log:
    """Timed snapshots (in breaching's normalized input space) and trial ends."""

    def __init__(self, every: int) -> None:
        self.every = every
        self.start = time.perf_counter()
        self.trial = 0
        self.snapshots: list[torch.Tensor] = []
        self.records: list[dict[str, Any]] = []
        self.trial_ends: list[dict[str, Any]] = []
        self.trial_images: list[torch.Tensor] = []

    def snapshot(self, candidate: torch.Tensor, iteration: int) -> None:
        self.snapshots.append(candidate.clone().cpu())
        self.records.append(
            {"trial": self.trial, "iteration": iteration, "seconds": self.elapsed()}
        )

    def elapsed(self) -> float:
        return time.perf_counter() - self.start


class TimedAttacker(OptimizationBasedAttacker):
    """breaching's optimization attacker, with timed snapshots for time-to-quality."""

    log: _Log

    def _init_optimizer(self, candidate: list[torch.Tensor]) -> tuple[Any, Any]:
        optimizer, scheduler = super()._init_optimizer(candidate)
        return optimizer, _TimedScheduler(scheduler, candidate[0], self.log)

    def _run_trial(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        result = super()._run_trial(*args, **kwargs)
        self.log.trial_images.append(result.clone().cpu())
        return result

    def _score_trial(self, candidate: torch.Tensor, *args: Any) -> Any:
        score = super()._score_trial(candidate, *args)
        self.log.trial_ends.append(
            {
                "trial": self.log.trial,
                "score": float(torch.as_tensor(score).detach()),
                "seconds": self.log.elapsed(),
            }
        )
        self.log.trial += 1
        return score


def _model(payload: dict[str, torch.Tensor], num_classes: int) -> torch.nn.Module:
    model = torchvision.models.resnet18(num_classes=num_classes)
    state = {k[len("param.") :]: v for k, v in payload.items() if k.startswith("param.")}
    state.update({k[len("buffer.") :]: v for k, v in payload.items() if k.startswith("buffer.")})
    model.load_state_dict(state, strict=True)
    return model


def main(job_dir: Path) -> None:
    job = json.loads((job_dir / "job.json").read_text(encoding="utf-8"))
    torch.set_num_threads(int(job["threads"]))
    torch.manual_seed(int(job["seed"]))
    payload = load_file(str(job_dir / "payload.safetensors"))
    model = _model(payload, int(job["num_classes"]))
    names = [n for n, _ in model.named_parameters()]
    buffer_names = [n for n, _ in model.named_buffers()]
    gradients = [payload[f"grad.{n}"] for n in names]
    cfg = breaching.get_attack_config(
        CONFIGS[job["attack"]],
        overrides=[
            f"optim.max_iterations={job['iterations']}",
            f"restarts.num_trials={job['trials']}",
            f"optim.callback={max(job['iterations'], 1)}",
        ],
    )
    setup = dict(device=torch.device("cpu"), dtype=torch.float)
    loss = torch.nn.CrossEntropyLoss()
    attacker = TimedAttacker(model, loss, cfg, setup)
    metadata = OmegaConf.create(
        dict(shape=job["shape"], mean=job["mean"], std=job["std"], modality="vision")
    )
    server_buffers = [payload[f"buffer.{n}"] for n in buffer_names]
    shared_buffers = None
    if job["mode"] == "train":
        # The client shares its batch's BN statistics as buffers (breaching's provide_buffers):
        # breaching then runs its copy of the model in eval mode with them, and its BN prior
        # (deep_inversion) matches the candidate's statistics to them.
        shared_buffers = [payload.get(f"shared.{n}", payload[f"buffer.{n}"]) for n in buffer_names]
        server_buffers = None
    server_payload = [
        dict(parameters=list(model.parameters()), buffers=server_buffers, metadata=metadata)
    ]
    shared_data = [
        dict(
            gradients=gradients,
            buffers=shared_buffers,
            metadata=dict(num_data_points=job["batch"], labels=None, local_hyperparams=None),
        )
    ]
    attacker.log = _Log(max(1, int(job["every"])))
    start = time.perf_counter()
    reconstruction, _stats = attacker.reconstruct(server_payload, shared_data, {}, dryrun=False)
    seconds = time.perf_counter() - start
    mean = torch.tensor(job["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(job["std"]).view(1, -1, 1, 1)

    def pixels(x: torch.Tensor) -> torch.Tensor:
        return (x.detach().cpu() * std + mean).clamp(0, 1)

    log = attacker.log
    tensors = {
        "images": pixels(reconstruction["data"]).contiguous(),
        "labels": reconstruction["labels"].detach().cpu().long(),
        "snapshots": torch.stack([pixels(s) for s in log.snapshots]).contiguous(),
        "trial_images": torch.stack([pixels(s) for s in log.trial_images]).contiguous(),
    }
    save_file(tensors, str(job_dir / "result.safetensors"))
    result = {
        "seconds": seconds,
        "iterations": job["iterations"],
        "trials": job["trials"],
        "snapshots": log.records,
        "trial_ends": log.trial_ends,
        "config": CONFIGS[job["attack"]],
        "breaching": getattr(breaching, "__version__", "0.1.2"),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    (job_dir / "result.json").write_text(json.dumps(result, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
