"""gradinvert against breaching 0.1.2, side by side in one run, on validation photos.

    .venv/bin/python benchmarks/vs_breaching.py [--cases ig-b1,ig-b4,gradinversion-b4]
        [--iterations 1000] [--threads 1] [--every N] [--out results/vs_breaching.md]

Needs breaching's environment: ``make bench-deps`` (``.venv-breaching``, layered on ``.venv``).

Per case, one client update is captured with gradinvert (torchvision ``resnet18(num_classes=10)``
seeded 0, one gradient of the mean cross-entropy, 32 px, the first photos of the sorted
``images32.validation`` list of samples/splits.json). Both tools get exactly that update and
nothing else: the model's weights and buffers, the gradient, and in train mode the batch's BN
statistics (gradinvert reads them from the update; breaching gets them as the client's buffers,
its ``provide_buffers`` path). Each tool restores the labels itself and runs its own preset
(``ig`` / breaching ``invertinggradients``; ``gradinversion`` / ``seethroughgradients``) with
the same budget: ``--iterations`` per candidate and as many candidates (breaching's restarts
``num_trials``, run one after another) as gradinvert's preset has seeds. breaching runs in a
subprocess of its venv; its reconstruction and timed snapshots come back in a file and are
scored here with gradinvert's metric code (``gradinvert.metrics`` PSNR/SSIM after Hungarian
matching on MSE, as ``evaluate`` and benchmarks/gias_search.py do).

Time-to-quality: every ``--every`` iterations each tool's current output is snapshotted with
its wall time (gradinvert: the seed of lowest gradient distance, or the seeds' consensus for a
consensus preset; breaching: the current candidate during its first trial, then the best-scored
finished trial). The first snapshot whose PSNR reaches the other tool's final PSNR gives the time
each needs for the other's quality. Outputs are picked by gradient distance, never by the truth;
the truth is used only to score afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from common import RESULTS, SAMPLES, flat_own_colour, split_photos, write_result
from gias_search import _scores
from safetensors.torch import load_file, save_file

from gradinvert.client.capture import CaptureConfig, capture_update
from gradinvert.config import preset
from gradinvert.invert import run_attack
from gradinvert.invert.engine import Engine, Progress
from gradinvert.invert.group import group_targets
from gradinvert.io.files import UpdateFile
from gradinvert.models import NORMALIZATIONS, InputSpec, build_model, model_spec
from gradinvert.runtime.allocator import keep_freed_memory

BREACHING_PYTHON = SAMPLES.parent / ".venv-breaching" / "bin" / "python"
RUNNER = Path(__file__).resolve().parent / "breaching_runner.py"


@dataclass(frozen=True)
class Case:
    """One row pair: the client (batch, BN mode) and the attack both tools run."""

    name: str
    attack: str  # gradinvert preset; breaching's counterpart in breaching_runner.CONFIGS
    batch: int
    mode: str = "eval"  # train: BN in train mode, the batch's BN statistics shared


CASES = {
    c.name: c
    for c in (
        Case("ig-b1", "ig", 1),
        Case("ig-b4", "ig", 4),
        Case("gradinversion-b4", "gradinversion", 4, "train"),
    )
}


def capture(case: Case, images: torch.Tensor, labels: list[int]) -> UpdateFile:
    """The client's update, as `gradinvert capture --model resnet18 --init-seed 0` makes it."""
    mean, std = NORMALIZATIONS["imagenet"]
    input_spec = InputSpec(tuple(images.shape[1:]), mean, std)  # type: ignore[arg-type]
    spec = model_spec("resnet18", 10, input_spec.shape)
    model = build_model(spec, init_seed=0)
    config = CaptureConfig(mode=case.mode, share_bn_stats=case.mode == "train", seed=0)  # type: ignore[arg-type]
    return capture_update(model, spec, input_spec, images, torch.tensor(labels), config)


def mean_score(recon: torch.Tensor, truth: torch.Tensor) -> tuple[float, float]:
    """Mean PSNR and SSIM after Hungarian matching on MSE."""
    p, s, _ = _scores(recon, truth)
    return sum(p) / len(p), sum(s) / len(s)


# ---------------------------------------------------------------------- gradinvert


def run_gradinvert(
    case: Case, update: UpdateFile, args: argparse.Namespace
) -> tuple[torch.Tensor, list[int], dict[str, Any], list[tuple[float, torch.Tensor]]]:
    """The preset at ``--iterations``; returns output, labels, facts and timed outputs."""
    config = preset(case.attack, iterations=args.iterations, seeds=args.seeds)
    seen: list[tuple[float, int, torch.Tensor, torch.Tensor]] = []
    start = time.perf_counter()

    def snapshot(engine: Engine, progress: Progress) -> None:
        if progress.iteration % args.every == 0 or progress.iteration == progress.total:
            pixels = engine.pixels().detach().cpu().clone()
            distance = engine.last_distance.detach().cpu().clone()
            seen.append((time.perf_counter() - start, progress.iteration, pixels, distance))

    result = run_attack(update, None, config, "cpu", progress=False, on_iteration=snapshot)
    seconds = time.perf_counter() - start
    timed = []
    for at, _iteration, pixels, distance in seen:
        best = int(torch.nan_to_num(distance, nan=float("inf")).argmin())
        if config.pick == "consensus":
            timed.append((at, group_targets(pixels, registration=config.registration)[best]))
        else:
            timed.append((at, pixels[best]))
    timed.append((seconds, result.images))
    facts = {
        "seconds": seconds,
        "iterations": config.iterations,
        "candidates": config.seeds,
        "pick": config.pick,
        "settings": {k: v for k, v in config.to_dict().items() if k in _SHOWN},
    }
    return result.images, [int(x) for x in result.labels], facts, timed


_SHOWN = ("objective", "gradient_weight", "tv", "bn", "bn_first", "layer_weights", "group")

# ---------------------------------------------------------------------- breaching


def write_job(case: Case, update: UpdateFile, trials: int, folder: Path, args: Any) -> None:
    """The attacker's view of the update, for breaching_runner.py (no images, no labels)."""
    tensors = {f"param.{n}": t for n, t in update.params.items()}
    tensors.update({f"buffer.{n}": t for n, t in update.buffers.items()})
    tensors.update({f"grad.{n}": t for n, t in update.update.items()})
    for name, (mean, var) in update.bn_stats.items():  # biased variance, as BN normalizes
        tensors[f"shared.{name}.running_mean"] = mean
        tensors[f"shared.{name}.running_var"] = var
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(folder / "payload.safetensors"))
    job = {
        "attack": case.attack,
        "iterations": args.iterations,
        "trials": trials,
        "batch": case.batch,
        "mode": case.mode,
        "num_classes": update.model.num_classes,
        "shape": list(update.input.shape),
        "mean": list(update.input.mean),
        "std": list(update.input.std),
        "every": args.every,
        "threads": args.threads or torch.get_num_threads(),
        "seed": 0,
    }
    (folder / "job.json").write_text(json.dumps(job), encoding="utf-8")


def run_breaching(
    case: Case, update: UpdateFile, trials: int, args: argparse.Namespace
) -> tuple[torch.Tensor, list[int], dict[str, Any], list[tuple[float, torch.Tensor]]]:
    """breaching in its own venv on the same update; returns what :func:`run_gradinvert` does."""
    python = Path(args.breaching_python)
    if not python.exists():
        raise SystemExit(f"{python} not found: run `make bench-deps` first")
    with tempfile.TemporaryDirectory(prefix="vs-breaching-") as tmp:
        folder = Path(tmp)
        write_job(case, update, trials, folder, args)
        threads = str(args.threads or torch.get_num_threads())
        env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        subprocess.run([str(python), str(RUNNER), str(folder)], check=True, env=env)
        tensors = load_file(str(folder / "result.safetensors"))
        facts = json.loads((folder / "result.json").read_text(encoding="utf-8"))
    timed = _breaching_outputs(tensors, facts)
    timed.append((facts["seconds"], tensors["images"]))
    facts["candidates"] = trials
    return tensors["images"], [int(x) for x in tensors["labels"]], facts, timed


def _breaching_outputs(tensors: dict[str, torch.Tensor], facts: dict[str, Any]) -> list:
    """What breaching would output if stopped at each snapshot: the current candidate in its
    first trial, afterwards the finished trial with the lowest score."""
    timed = []
    ends = facts["trial_ends"]
    for record, image in zip(facts["snapshots"], tensors["snapshots"], strict=True):
        if record["trial"] == 0:
            timed.append((record["seconds"], image))
    for done in range(1, len(ends) + 1):
        best = min(range(done), key=lambda k: ends[k]["score"])
        timed.append((ends[done - 1]["seconds"], tensors["trial_images"][best]))
    return sorted(timed, key=lambda item: item[0])


# ---------------------------------------------------------------------- comparison


def time_to(curve: list[tuple[float, float]], target: float) -> float | None:
    """The first time at which the curve's PSNR reaches ``target`` (None: never)."""
    return next((at for at, value in curve if value >= target), None)


def run_case(case: Case, args: argparse.Namespace) -> dict[str, Any]:
    images, labels, names = split_photos("validation", case.batch)
    update = capture(case, images, labels)
    flat = flat_own_colour(images)
    row: dict[str, Any] = {
        "case": case.name,
        "images": names,
        "mode": case.mode,
        "iterations": args.iterations,
        "flat": mean_score(flat, images)[0],
    }
    candidates = preset(case.attack, iterations=args.iterations, seeds=args.seeds).seeds
    runs = {
        "gradinvert": run_gradinvert(case, update, args),
        "breaching": run_breaching(case, update, candidates, args),
    }
    for tool, (recon, found, facts, timed) in runs.items():
        psnr_value, ssim_value = mean_score(recon, images)
        curve = [(at, mean_score(out, images)[0]) for at, out in timed]
        row[tool] = {
            "psnr": psnr_value,
            "ssim": ssim_value,
            "labels_correct": sorted(found) == sorted(labels),
            "seconds": facts["seconds"],
            "iterations": facts["iterations"],
            "candidates": facts["candidates"],
            "curve": curve,
            "settings": facts.get("settings", facts.get("config")),
        }
    for tool, other in (("gradinvert", "breaching"), ("breaching", "gradinvert")):
        row[tool]["time_to_other"] = time_to(row[tool]["curve"], row[other]["psnr"])
    print(
        f"{case.name}: gradinvert {row['gradinvert']['psnr']:.2f} dB "
        f"({row['gradinvert']['seconds']:.0f} s), breaching {row['breaching']['psnr']:.2f} dB "
        f"({row['breaching']['seconds']:.0f} s), flat {row['flat']:.2f} dB",
        flush=True,
    )
    return row


def _seconds(value: float | None, total: float) -> str:
    if value is None:
        return "not reached"
    return f"{value:.0f} s ({value / total:.0%} of the other's run)"


def table(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        "# gradinvert vs breaching 0.1.2 on validation photos (ResNet-18, 32 px)",
        "",
        f"Machine: {platform.machine()} CPU ({os.cpu_count()} cores, shared with other jobs), "
        f"{args.threads or torch.get_num_threads()} torch thread per tool, tools run one after "
        f"the other in one run; torch {torch.__version__}. Client: torchvision "
        "resnet18(num_classes=10) seeded 0, one gradient of the mean cross-entropy, the first "
        "photos of samples/splits.json images32.validation (sorted). Labels restored by each "
        f"tool. Budget: {args.iterations} iterations per candidate, as many candidates for "
        "both (gradinvert's seeds run together; breaching's restarts run one after another). "
        "PSNR (dB) / SSIM by gradinvert.metrics after Hungarian matching on MSE, mean over the "
        "batch; outputs picked by gradient distance. Script: benchmarks/vs_breaching.py.",
        "",
        "| case | images | tool | PSNR | SSIM | labels | iterations × candidates | wall s "
        "| reaches the other's final PSNR at | flat own colour |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        for tool, other in (("gradinvert", "breaching"), ("breaching", "gradinvert")):
            r = row[tool]
            lines.append(
                f"| {row['case']} ({row['mode']}{' + shared BN' if row['mode'] == 'train' else ''})"
                f" | {len(row['images'])} | {tool} | {r['psnr']:.2f} | {r['ssim']:.3f} | "
                f"{'right' if r['labels_correct'] else 'WRONG'} | {r['iterations']} × "
                f"{r['candidates']} | {r['seconds']:.0f} | "
                f"{_seconds(r['time_to_other'], row[other]['seconds'])} | {row['flat']:.2f} |"
            )
    lines += ["", "Images: " + "; ".join(f"{r['case']}: {', '.join(r['images'])}" for r in rows)]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--seeds", type=int, default=None, help="candidates for both tools (default: the preset's)"
    )
    parser.add_argument("--every", type=int, default=0, help="snapshot interval (iterations/40)")
    parser.add_argument("--breaching-python", default=str(BREACHING_PYTHON))
    parser.add_argument("--out", type=Path, default=RESULTS / "vs_breaching.md")
    parser.add_argument("--fresh", action="store_true", help="forget earlier runs' rows")
    parser.add_argument(
        "--merge", type=Path, action="append", help="only tabulate, adding this --out's rows"
    )
    args = parser.parse_args()
    args.every = args.every or max(1, args.iterations // 40)
    if args.threads:
        torch.set_num_threads(args.threads)
    keep_freed_memory()
    unknown = [c for c in args.cases.split(",") if c not in CASES]
    if unknown:
        raise SystemExit(f"unknown cases {unknown}: choose from {', '.join(CASES)}")
    raw = args.out.with_suffix(".json")
    # Rows of earlier runs at the same budget stay unless rerun (cases can run separately).
    rows: list[dict[str, Any]] = []
    if raw.exists() and not args.fresh:
        rows = json.loads(raw.read_text(encoding="utf-8"))
    rows = [r for r in rows if r.get("iterations") == args.iterations]
    if args.merge:  # rows another run (e.g. --seeds) wrote to its own --out
        for path in args.merge:
            extra = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
            names = {r["case"] for r in extra}
            rows = [r for r in rows if r["case"] not in names] + extra
        args.cases = ""
    for name in filter(None, args.cases.split(",")):
        rows = [r for r in rows if r["case"] != name] + [run_case(CASES[name], args)]
        raw.write_text(json.dumps(rows, indent=1), encoding="utf-8")
    rows.sort(key=lambda r: list(CASES).index(r["case"]))
    write_result(table(rows, args), args.out)


if __name__ == "__main__":
    main()
