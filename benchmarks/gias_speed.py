"""Cost of one iteration per search space, and the memory of the per-image generator copies.

    .venv/bin/python benchmarks/gias_speed.py [--threads 2] [--iterations 30] [--device cpu]

The client of benchmarks/gias_search.py (ResNet-18, batch 4, 32 px, eval mode) and the
untrained 32 px DCGAN generator. Each configuration runs in its own process (so the peak
resident memory is its own), times ``--iterations`` iterations after 3 warm-up iterations,
and reports the median seconds per iteration, the ratio to one pixel-space iteration with the
same number of seeds, and the peak memory (CPU: max RSS; CUDA: max allocated). Writes
benchmarks/results/gias_speed.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from common import RESULTS, write_result

CONFIGS = [  # (search, seeds): x and zw's old weight stage run one seed; the others three
    ("x", 1),
    ("w", 1),
    ("w-prior", 1),
    ("x", 3),
    ("z", 3),
    ("w", 3),
    ("w-prior", 3),
    ("f", 3),
]
PRIOR = dict(weight_stage="prior", generator_proximity=1.0, generator_trust=0.05)


def measure(search: str, seeds: int, iterations: int, device_name: str) -> dict[str, float]:
    """Run one configuration in this process and return its timings and peak memory."""
    from gias_search import batch_of

    from gradinvert.client.capture import CaptureConfig, capture_update
    from gradinvert.config import preset
    from gradinvert.invert import run_attack
    from gradinvert.models import NORMALIZATIONS, InputSpec, build_model, model_spec
    from gradinvert.runtime.allocator import keep_freed_memory
    from gradinvert.runtime.device import resolve_device

    keep_freed_memory()
    device = resolve_device(device_name)
    images, labels, _ = batch_of("photos32", 0, "validation")
    mean, std = NORMALIZATIONS["imagenet"]
    input_spec = InputSpec(tuple(images.shape[1:]), mean, std)  # type: ignore[arg-type]
    spec = model_spec("resnet18", 10, input_spec.shape)
    model = build_model(spec, init_seed=0)
    update = capture_update(
        model, spec, input_spec, images, torch.tensor(labels), CaptureConfig(seed=0)
    )
    settings: dict[str, object] = {"seeds": seeds, "iterations": iterations + 3}
    if search == "w-prior":
        settings.update(PRIOR, search="w", generator="dcgan")
    elif search == "f":  # one feature stage (layer 2 of 5), timed after a 1-iteration z stage
        settings.update(search="f", generator="dcgan", latent_iterations=1, feature_layers=2)
    elif search != "x":
        settings.update(search=search, generator="dcgan")
    config = preset("ig" if search == "x" else "gias" if search != "f" else "gifd", **settings)
    stamps: list[float] = []

    def tick(engine: object, _progress: object) -> None:
        if search == "f" and getattr(engine, "stage", "") != "f2":
            return
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        stamps.append(time.perf_counter())

    run_attack(update, labels, config, device, progress=False, on_iteration=tick)
    steps = [b - a for a, b in zip(stamps[2:], stamps[3:], strict=False)]
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": statistics.median(steps), "peak_mib": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: "search,seeds"
    parser.add_argument("--out", type=Path, default=RESULTS / "gias_speed.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.one:
        search, seeds = args.one.split(",")
        print(json.dumps(measure(search, int(seeds), args.iterations, args.device)))
        return
    results = {}
    for search, seeds in CONFIGS:
        command = [sys.executable, __file__, "--one", f"{search},{seeds}",
                   "--threads", str(args.threads), "--iterations", str(args.iterations),
                   "--device", args.device]  # fmt: skip
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        results[(search, seeds)] = json.loads(output.strip().splitlines()[-1])
        print(search, seeds, results[(search, seeds)], flush=True)
    from gradinvert.generators import DCGANGenerator

    copy_mib = sum(p.numel() for p in DCGANGenerator().parameters()) * 4 / 2**20
    device = "CUDA " + torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    lines = [
        "# Cost of one iteration per search space (ResNet-18, batch 4, 32 px, eval mode)",
        "",
        f"Machine: {platform.machine()} {device}, {args.threads} torch threads, torch "
        f"{torch.__version__}; untrained 32 px DCGAN (3.57 M parameters, "
        f"{copy_mib:.1f} MiB per float32 copy). Median of {args.iterations} iterations after "
        "3 warm-up ones. Script: benchmarks/gias_speed.py.",
        "",
        "| search | seeds (K) | generator copies (K × N) | s / iteration | × pixels (same K) "
        "| peak memory (MiB) |",
        "|---|---|---|---|---|---|",
    ]
    for (search, seeds), value in results.items():
        base = results.get(("x", seeds))
        ratio = value["seconds"] / base["seconds"] if base else float("nan")
        copies = seeds * 4 if search.startswith("w") else 0
        lines.append(
            f"| {search} | {seeds} | {copies or '–'} | {value['seconds']:.3f} | {ratio:.2f} | "
            f"{value['peak_mib']:.0f} |"
        )
    lines += [
        "",
        "zw runs its latent stage at the `z` row's cost; its old weight stage (one seed) at the "
        "`w`, K = 1 row's cost, the new one (`--weight-stage prior`: every restart, proximity "
        "and trust region, fused Adam) at the `w-prior`, K = 3 row's. `f`: one GIFD feature "
        "stage (the output of layer 2 optimized). Memory of the weight stage's state: "
        f"parameters, gradients and Adam's two moments = 4 × {copy_mib:.1f} MiB per copy.",
        "",
    ]
    write_result("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
