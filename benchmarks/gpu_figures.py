"""GPU figures: inversion iteration times at K = 1/4/8 seeds, a GIAS zw weight-stage iteration
and the peak GPU memory of each, written as one markdown page.

    python benchmarks/gpu_figures.py [--device cuda] [--budget 300] [--out results/gpu.md]
    python benchmarks/gpu_figures.py --device cpu --quick     # dry run of the logic, tiny sizes

benchmarks/gpu_check.sh runs it after the CUDA tests. Cases, in order of importance:

* ResNet-18, 32 px, batch 4, ``ig`` (BN eval mode), K = 1, 4, 8;
* ResNet-50, 224 px, batch 8, ``gradinversion`` (BN train mode, shared BN statistics), K = 1, 4, 8;
* GIAS ``zw`` on the ResNet-18 client with the untrained 32 px DCGAN: its weight stage (one
  seed, one generator copy per image);
* ResNet-18 with ``gradinversion`` and ResNet-50 with ``ig``, K = 1, 4, 8.

An inversion iteration is timed as benchmarks/invert_speed.py times it (median of ``repeats``
iterations after two warm-up ones, alternated with one training step of the same model and
batch); the group term of ``gradinversion`` is on from the first iteration (``group_start 0``).
Each case runs in its own process (its own peak memory; an out-of-memory error, a crash or a
hang loses that case or seed count only) under a time limit, cases that would start after
``--budget`` seconds are listed as skipped, and the page is rewritten after every case, so a
stopped run still leaves what it had measured. Peak memory is ``torch.cuda.max_memory_allocated``
from a reset before each measurement (CPU: not measured).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
GPU_PAGE = RESULTS / "gpu.md"


@dataclass(frozen=True)
class Case:
    """One measured configuration."""

    name: str
    kind: str  # "invert": K seeds, one iteration; "gias": zw's weight stage
    model: str
    size: int
    batch: int
    attack: str
    mode: str  # the client's BN mode: eval, or train with shared BN statistics


CASES = (
    Case("resnet18-ig", "invert", "resnet18", 32, 4, "ig", "eval"),
    Case("resnet50-gradinversion", "invert", "resnet50", 224, 8, "gradinversion", "train"),
    Case("gias-zw-weights", "gias", "resnet18", 32, 4, "gias", "eval"),
    Case("resnet18-gradinversion", "invert", "resnet18", 32, 4, "gradinversion", "train"),
    Case("resnet50-ig", "invert", "resnet50", 224, 8, "ig", "eval"),
)
SEEDS = (1, 4, 8)
REPEATS = 7
GIAS_WARMUP, GIAS_TIMED = 3, 10
# --quick (a dry run of the logic, e.g. on a CPU): small images and batches, few iterations
QUICK_SIZE, QUICK_BATCH, QUICK_SEEDS, QUICK_REPEATS = 32, 2, (1, 2), 1
QUICK_GIAS_WARMUP, QUICK_GIAS_TIMED = 1, 2


def _shrunk(case: Case, quick: bool) -> Case:
    if not quick:
        return case
    return Case(case.name, case.kind, case.model, QUICK_SIZE, QUICK_BATCH, case.attack, case.mode)


# ---------------------------------------------------------------- one case (child process)


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: Any) -> None:
    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mib(device: Any) -> float | None:
    import torch

    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20


def _invert_rows(case: Case, device: Any, quick: bool, emit: Any) -> None:
    import torch
    from invert_speed import iteration_time, make_client

    update, images, labels = make_client(case.model, case.size, case.batch, case.mode)
    repeats = QUICK_REPEATS if quick else REPEATS
    for seeds in QUICK_SEEDS if quick else SEEDS:
        _reset_peak(device)
        try:
            seconds, train_step = iteration_time(
                update, images, labels, case.attack, seeds, repeats, device, group_start=0.0
            )
        except torch.cuda.OutOfMemoryError:
            emit({"seeds": seeds, "error": "out of GPU memory"})
            return  # more seeds need more memory
        emit(
            {
                "seeds": seeds,
                "seconds": seconds,
                "train_step": train_step,
                "peak_mib": _peak_mib(device),
            }
        )


def _gias_rows(case: Case, device: Any, quick: bool, emit: Any) -> None:
    from invert_speed import make_client

    from gradinvert.config import preset
    from gradinvert.invert import run_attack

    update, _, labels = make_client(case.model, case.size, case.batch, case.mode)
    warm, timed = (QUICK_GIAS_WARMUP, QUICK_GIAS_TIMED) if quick else (GIAS_WARMUP, GIAS_TIMED)
    # a short latent stage, then warm + timed + 1 weight-stage iterations (the first tick only
    # starts the clock: the stage's set-up comes before it)
    config = preset("gias", generator="dcgan", latent_iterations=2, iterations=warm + timed + 1)
    stamps: list[float] = []

    def tick(engine: Any, _progress: Any) -> None:
        if engine.stage == "w":
            _sync(device)
            stamps.append(time.perf_counter())

    _reset_peak(device)
    run_attack(update, labels.tolist(), config, device, progress=False, on_iteration=tick)
    steps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)][warm:]
    emit(
        {
            "seeds": 1,
            "seconds": statistics.median(steps),
            "iterations": len(steps),
            "latent_seeds": config.seeds,
            "peak_mib": _peak_mib(device),
        }
    )


def run_one(name: str, device_name: str, quick: bool, rows_path: Path) -> None:
    """Measure case ``name`` in this process; one JSON line per row, appended as it is taken."""
    from gradinvert.runtime.allocator import keep_freed_memory
    from gradinvert.runtime.device import resolve_device

    keep_freed_memory()  # as the command line does
    device = resolve_device(device_name)
    case = _shrunk(next(c for c in CASES if c.name == name), quick)

    def emit(row: dict[str, Any]) -> None:
        with rows_path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
        print(f"{name}: {row}", file=sys.stderr, flush=True)

    if case.kind == "gias":
        _gias_rows(case, device, quick, emit)
    else:
        _invert_rows(case, device, quick, emit)


# ---------------------------------------------------------------- the page (parent process)


@dataclass
class Outcome:
    """What one case left: its rows, and why it stopped early (if it did)."""

    rows: list[dict[str, Any]]
    problem: str = ""


def _measure(case: Case, args: argparse.Namespace, limit: float, workdir: Path) -> Outcome:
    rows_path = workdir / f"{case.name}.jsonl"
    rows_path.unlink(missing_ok=True)
    command = [sys.executable, __file__, "--one", case.name, "--device", args.device,
               "--rows", str(rows_path)] + (["--quick"] if args.quick else [])  # fmt: skip
    problem = ""
    try:
        result = subprocess.run(command, timeout=limit, check=False)
        if result.returncode != 0:
            problem = f"the measuring process failed (exit {result.returncode}; see the log)"
    except subprocess.TimeoutExpired:
        problem = f"stopped after its time limit ({limit:.0f} s)"
    rows = []
    if rows_path.exists():
        rows = [json.loads(line) for line in rows_path.read_text().splitlines() if line]
    errors = "; ".join(f"K = {r['seeds']}: {r['error']}" for r in rows if "error" in r)
    problem = errors or problem
    measured = [row for row in rows if "error" not in row]
    if problem and measured:
        problem += f" (measured up to K = {measured[-1]['seeds']})"
    return Outcome(measured, problem)


def _machine(device_name: str) -> str:
    import torch

    if device_name.startswith("cuda") and torch.cuda.is_available():
        index = torch.device(device_name).index or 0
        props = torch.cuda.get_device_properties(index)
        backends = torch.backends
        return (
            f"{torch.cuda.get_device_name(index)} ({props.total_memory / 2**30:.0f} GiB, "
            f"{props.multi_processor_count} SMs), CUDA {torch.version.cuda}, cuDNN "
            f"{backends.cudnn.version()}; torch {torch.__version__}, Python "
            f"{platform.python_version()}, {os.cpu_count()} CPU cores. torch's default CUDA math "
            f"settings: TF32 convolutions {'on' if backends.cudnn.allow_tf32 else 'off'}, TF32 "
            f"matrix products {'on' if backends.cuda.matmul.allow_tf32 else 'off'}, "
            f"cudnn.benchmark {'on' if backends.cudnn.benchmark else 'off'}"
        )
    return (
        f"CPU {platform.machine()}, {torch.get_num_threads()} torch threads; torch "
        f"{torch.__version__}, Python {platform.python_version()}"
    )


def _iterations(count: int) -> str:
    return f"{count} iteration" + ("" if count == 1 else "s")


def _number(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _memory(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"


def render(
    args: argparse.Namespace,
    outcomes: dict[str, Outcome],
    skipped: list[str],
    machine: str,
    tests: str,
) -> str:
    """The markdown page for what has been measured so far."""
    dry = args.quick or not args.device.startswith("cuda")
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = ["# GPU figures" + (" — DRY RUN: not GPU figures" if dry else ""), ""]
    if dry:
        lines += [
            f"**A dry run of the script's logic (--device {args.device}"
            + (", --quick: small images, batches and seed counts" if args.quick else "")
            + "). These numbers are not GPU figures.**",
            "",
        ]
    lines += [
        f"Machine: {machine}. Taken {when} by benchmarks/gpu_check.sh (benchmarks/gpu_figures.py).",
        "",
        f"CUDA tests (`pytest -m cuda`): {tests or 'not run'}.",
        "",
        "## Inversion iteration",
        "",
        f"Median of {_iterations(QUICK_REPEATS if args.quick else REPEATS)} after 2 warm-up ones, "
        "each alternated with one training step (forward + backward of the same model and "
        "batch), as benchmarks/invert_speed.py measures them. Random images, seeded models "
        "with 10 classes; `ig` with the client's BN in eval mode, `gradinversion` in train mode "
        "with the batch's BN statistics shared (its BN prior and, for K > 1, its group term, "
        "on from the first iteration). Peak memory: the most GPU memory allocated while the "
        "engine was built and timed.",
        "",
        "| model | px | batch | preset | seeds K | s / iteration | s / iteration / seed "
        "| training step (s) | iteration ÷ training step | peak GPU memory (MiB) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    gias_lines: list[str] = []
    for case in CASES:
        outcome = outcomes.get(case.name)
        if outcome is None:
            continue
        shown = _shrunk(case, args.quick)
        for row in outcome.rows:
            if case.kind == "gias":
                gias_lines.append(
                    f"| {shown.model} | {shown.size} | {shown.batch} | DCGAN {shown.size} px "
                    f"(untrained) | {shown.batch} | {_number(row['seconds'])} "
                    f"| {row['iterations']} | {_memory(row['peak_mib'])} |"
                )
                continue
            seconds, reference, seeds = row["seconds"], row["train_step"], row["seeds"]
            lines.append(
                f"| {shown.model} | {shown.size} | {shown.batch} | `{shown.attack}` | {seeds} "
                f"| {_number(seconds)} | {_number(seconds / seeds)} | {_number(reference)} "
                f"| {seconds / reference:.1f} | {_memory(row['peak_mib'])} |"
            )
    lines += [
        "",
        "## GIAS zw weight stage",
        "",
        "One iteration of the weight stage of `--attack gias --search zw` (one seed: one "
        "generator copy per image, Adam on every copy's weights), median of "
        f"{_iterations(QUICK_GIAS_TIMED if args.quick else GIAS_TIMED)} after "
        f"{QUICK_GIAS_WARMUP if args.quick else GIAS_WARMUP} warm-up ones; the client as above "
        "(`gias` preset, BN eval mode). Peak memory covers the whole run (a 2-iteration latent "
        "stage with the preset's 3 restarts, then the weight stage).",
        "",
        "| model | px | batch | generator | generator copies | s / iteration | iterations timed "
        "| peak GPU memory (MiB) |",
        "|---|---|---|---|---|---|---|---|",
        *gias_lines,
    ]
    problems = [(name, o.problem) for name, o in outcomes.items() if o.problem]
    if problems or skipped:
        lines += ["", "## Not measured", ""]
        lines += [f"- {name}: {problem}" for name, problem in problems]
        lines += [
            f"- {name}: skipped, the time budget ({args.budget:.0f} s) was spent"
            for name in skipped
        ]
    return "\n".join(lines) + "\n"


def _write(text: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="small sizes: check the logic")
    parser.add_argument("--budget", type=float, default=300.0, help="seconds for all cases")
    parser.add_argument("--case-timeout", type=float, default=150.0, help="seconds per case")
    parser.add_argument("--cases", default="all", help="comma-separated case names, or all")
    parser.add_argument("--tests", default="", help="the CUDA tests' summary line")
    parser.add_argument("--out", type=Path, help="default: results/gpu.md (a dry run: a temp file)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one case
    parser.add_argument("--rows", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        run_one(args.one, args.device, args.quick, args.rows)
        return
    dry = args.quick or not args.device.startswith("cuda")
    out = args.out or (Path(tempfile.gettempdir()) / "gpu-dryrun.md" if dry else GPU_PAGE)
    if dry and out.resolve() == GPU_PAGE.resolve():
        raise SystemExit(f"a dry run does not write {GPU_PAGE}: it holds GPU figures only")
    chosen = [c for c in CASES if args.cases == "all" or c.name in args.cases.split(",")]
    machine = _machine(args.device)
    started = time.monotonic()
    outcomes: dict[str, Outcome] = {}
    skipped: list[str] = []
    with tempfile.TemporaryDirectory() as workdir:
        for case in chosen:
            left = args.budget - (time.monotonic() - started)
            if left < 20:
                skipped.append(case.name)
                continue
            print(f"--- {case.name} (limit {min(args.case_timeout, left):.0f} s)", flush=True)
            outcomes[case.name] = _measure(case, args, min(args.case_timeout, left), Path(workdir))
            _write(render(args, outcomes, skipped, machine, args.tests), out)
    text = render(args, outcomes, skipped, machine, args.tests)
    _write(text, out)
    print(text)
    print(f"written to {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
