"""Speed of `gradinvert invert`: seconds per iteration for K seeds, against a training step.

    .venv/bin/python benchmarks/invert_speed.py [--model resnet18] [--batch 4] [--seeds 1,4,8]

For each K, one iteration of the engine (all K seeds' losses and gradients with respect to the
candidates, one optimizer step) is timed after warm-up; the reference is one plain training
step (forward + backward of the mean cross-entropy) of the same model on the same batch size,
timed in the same process. Prints a markdown table and writes it to
benchmarks/results/invert_speed.md (or --out).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from common import RESULTS, write_result

from gradinvert.client.capture import CaptureConfig, capture_update
from gradinvert.config import preset
from gradinvert.invert.attack import _prepare, resolve_labels
from gradinvert.invert.engine import Engine
from gradinvert.invert.priors import bn_reference
from gradinvert.io.files import UpdateFile
from gradinvert.models import InputSpec, build_model, model_spec
from gradinvert.models.restore import model_from_update
from gradinvert.runtime.allocator import keep_freed_memory
from gradinvert.runtime.device import resolve_device


def _timed(fn, device: torch.device) -> float:  # noqa: ANN001
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def _interleaved(a, b, repeats: int, device: torch.device) -> tuple[float, float]:  # noqa: ANN001
    """Median times of ``a`` and ``b``, measured alternately (robust to a busy machine)."""
    times_a, times_b = [], []
    for _ in range(repeats):
        times_a.append(_timed(a, device))
        times_b.append(_timed(b, device))
    return statistics.median(times_a), statistics.median(times_b)


def make_client(
    model: str, size: int, batch: int, mode: str
) -> tuple[UpdateFile, torch.Tensor, torch.Tensor]:
    """The update of a seeded ``model`` (10 classes) on a random ``batch`` at ``size`` px, in
    BN ``mode`` (train mode shares the batch's BN statistics); returns (update, images, labels)."""
    torch.manual_seed(0)
    images = torch.rand(batch, 3, size, size)
    labels = torch.arange(batch) % 10
    input_spec = InputSpec((3, size, size))
    spec = model_spec(model, 10, input_spec.shape)
    net = build_model(spec, init_seed=0)
    capture = CaptureConfig(mode=mode, share_bn_stats=mode == "train")  # type: ignore[arg-type]
    update = capture_update(net, spec, input_spec, images, labels, capture)
    return update, images, labels


def iteration_time(
    update: UpdateFile,
    images: torch.Tensor,
    labels: torch.Tensor,
    attack: str,
    seeds: int,
    repeats: int,
    device: torch.device,
    **overrides: object,
) -> tuple[float, float]:
    """Median seconds of one engine iteration with ``seeds`` seeds (preset ``attack`` with
    ``overrides``) and of one training step of the same model and batch, measured alternately
    after two warm-up iterations."""
    net = model_from_update(update, device)
    inputs, targets = update.input.normalize(images).to(device), labels.to(device)

    def train_step() -> None:
        net.zero_grad(set_to_none=True)
        F.cross_entropy(net(inputs), targets).backward()

    train_step()
    batch = images.shape[0]
    config = preset(attack, seeds=seeds, iterations=10**6, **overrides)
    choice = resolve_labels(update, labels.tolist(), config)
    victim, simulator, _ = _prepare(update, choice, config, device, batch)
    bn_ref = bn_reference(update, victim.bn_names).to(device) if config.bn else None
    engine = Engine(
        simulator,
        config,
        (batch, *update.input.shape),  # type: ignore[arg-type]
        update.input,
        update.model.num_classes,
        False,
        bn_ref,
        device,
    )
    engine.step()
    engine.step()
    reference, per_iteration = _interleaved(train_step, engine.step, repeats, device)
    return per_iteration, reference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seeds", default="1,4,8")
    parser.add_argument("--attack", default="ig")
    parser.add_argument("--mode", default="eval", choices=["train", "eval"])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=RESULTS / "invert_speed.md")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    keep_freed_memory()  # as the command line does
    device = resolve_device(args.device)

    update, images, labels = make_client(args.model, args.size, args.batch, args.mode)
    rows = []
    for seeds in [int(s) for s in args.seeds.split(",")]:
        per_iteration, reference = iteration_time(
            update, images, labels, args.attack, seeds, args.repeats, device
        )
        rows.append((seeds, per_iteration, reference))

    threads = torch.get_num_threads()
    where = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU {platform.processor() or platform.machine()}, {threads} torch threads"
    )
    lines = [
        f"# invert speed: {args.model}, {args.size} px, batch {args.batch}, `{args.attack}`, "
        f"BN {args.mode} mode",
        "",
        f"Device: {where}; torch {torch.__version__}. Medians of {args.repeats} iterations "
        "after 2 warm-up iterations, each alternated with one training step (forward + "
        "backward of the same model and batch) timed in the same process.",
        "",
        "| seeds K | s / iteration | s / iteration / seed | training step (s) "
        "| iteration ÷ training step |",
        "|---|---|---|---|---|",
    ]
    for seeds, seconds, reference in rows:
        lines.append(
            f"| {seeds} | {seconds:.4f} | {seconds / seeds:.4f} | {reference:.4f} "
            f"| {seconds / reference:.2f} |"
        )
    text = "\n".join(lines) + "\n"
    write_result(text, args.out)


if __name__ == "__main__":
    main()
