"""Reconstruction quality of `gradinvert invert` on the shipped 32 px photographs.

    .venv/bin/python benchmarks/invert_quality.py [--scenarios ig-b1,ig-b4,gi-b4,dlg]
        [--iterations N] [--seeds K] [--set key=value ...]

Each scenario captures one update of a seeded random-init model on the first photos of
samples/images32 (labels from samples/labels.json), restores the labels with the tool (unless
--labels truth), runs the attack, and only then scores the reconstruction against the truth:
PSNR per image after Hungarian matching on MSE, mean over the batch. The attack never sees the
truth; the extra columns "best seed" and "consensus" score every seed and the group consensus
after the run, for analysis only (the output itself is picked by gradient distance). Prints a
markdown table and writes it to benchmarks/results/invert_quality.md (or --out).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from common import RESULTS, sample_photos, write_result

from gradinvert.client.capture import CaptureConfig, capture_update
from gradinvert.config import preset
from gradinvert.invert import run_attack
from gradinvert.invert.engine import Engine
from gradinvert.metrics import assign, pairwise_mse, psnr
from gradinvert.models import NORMALIZATIONS, InputSpec, build_model, model_spec
from gradinvert.runtime.allocator import keep_freed_memory
from gradinvert.runtime.device import resolve_device


@dataclass
class Scenario:
    """One benchmark row: the client (model, batch, BN mode) and the attack."""

    name: str
    model: str
    batch: int
    attack: str
    iterations: int
    mode: str = "eval"
    share_bn_stats: bool = False
    target_db: float | None = None
    note: str = ""
    overrides: dict[str, Any] = field(default_factory=dict)


SCENARIOS = {
    "ig-b1": Scenario("ig-b1", "resnet18", 1, "ig", 1000, target_db=15.0),
    "ig-b4": Scenario("ig-b4", "resnet18", 4, "ig", 1000, target_db=14.9),
    "gi-b4": Scenario("gi-b4", "resnet18", 4, "gradinversion", 1000, "train", True, target_db=13.0),
    "dlg": Scenario("dlg", "lenet", 1, "dlg", 300, target_db=30.0),
}


def _score(recon: torch.Tensor, truth: torch.Tensor) -> list[float]:
    matching = assign(pairwise_mse(recon, truth), "mse")
    pairs = matching.truth_of()
    return [float(psnr(recon[r : r + 1], truth[t : t + 1])[0]) for r, t in sorted(pairs.items())]


def run_scenario(
    scenario: Scenario,
    device: torch.device,
    labels_from: str,
    iterations: int | None,
    seeds: int | None,
    overrides: dict[str, Any],
) -> dict[str, Any]:
    """Capture, attack, then score; returns one table row."""
    images, truth_labels = sample_photos(scenario.batch)
    mean, std = NORMALIZATIONS["imagenet"]
    input_spec = InputSpec(tuple(images.shape[1:]), mean, std)  # type: ignore[arg-type]
    spec = model_spec(scenario.model, 10, input_spec.shape)
    model = build_model(spec, init_seed=0)
    capture = CaptureConfig(
        mode=scenario.mode,  # type: ignore[arg-type]
        share_bn_stats=scenario.share_bn_stats,
        seed=0,
    )
    update = capture_update(model, spec, input_spec, images, torch.tensor(truth_labels), capture)

    # As `gradinvert invert` without --labels: the tool restores (or, for DLG, learns) them.
    labels_used = truth_labels if labels_from == "truth" else None
    settings = {**scenario.overrides, **overrides}
    config = preset(
        scenario.attack,
        iterations=iterations or scenario.iterations,
        seeds=seeds,
        **settings,
    )
    engines: list[Engine] = []

    def keep_engine(engine: Engine, _progress: object) -> None:
        if not engines:
            engines.append(engine)

    start = time.perf_counter()
    result = run_attack(
        update, labels_used, config, device, progress=True, on_iteration=keep_engine
    )
    seconds = time.perf_counter() - start
    scores = _score(result.images, images)
    # Analysis only, after the attack: how good each seed and the consensus were.
    pixels = engines[0].pixels().detach().cpu()
    per_seed = [sum(_score(seed_images, images)) / scenario.batch for seed_images in pixels]
    consensus = None
    if config.seeds > 1:
        from gradinvert.invert.group import group_targets

        merged = group_targets(pixels, registration=config.registration)[0]
        consensus = sum(_score(merged, images)) / scenario.batch
    correct = sorted(result.labels.tolist()) == sorted(truth_labels)
    record = result.metadata["labels"]
    source = "truth" if labels_from == "truth" else f"{record['source']} ({record['method']})"
    return {
        "scenario": scenario.name,
        "model": scenario.model,
        "batch": scenario.batch,
        "mode": scenario.mode + (" + shared BN stats" if scenario.share_bn_stats else ""),
        "attack": scenario.attack,
        "iterations": config.iterations,
        "seeds": config.seeds,
        "labels": f"{source}, {'correct' if correct else 'WRONG'}",
        "psnr": sum(scores) / len(scores),
        "psnr_images": scores,
        "psnr_seeds": per_seed,
        "psnr_consensus": consensus,
        "picked_seed": result.metadata["chosen_seed"],
        "target": scenario.target_db,
        "seconds": seconds,
        "overrides": settings,
    }


def reference_baselines(batch: int) -> dict[str, float]:
    """PSNR of trivial guesses that need the truth: what a "reconstruction" without content
    scores (mid-gray; the batch's mean colour; each image's own mean colour)."""
    images, _ = sample_photos(batch)
    guesses = {
        "mid-gray 0.5": torch.full_like(images, 0.5),
        "batch mean colour": images.mean(dim=(0, 2, 3), keepdim=True).expand_as(images),
        "own mean colour": images.mean(dim=(2, 3), keepdim=True).expand_as(images),
    }
    return {name: sum(_score(guess, images)) / batch for name, guess in guesses.items()}


def _baselines_table(batches: list[int]) -> str:
    rows = {b: reference_baselines(b) for b in batches}
    names = list(next(iter(rows.values())))
    lines = [
        "# PSNR of content-free guesses on samples/images32 (reference for invert_quality.md)",
        "",
        "Flat images built from the truth itself; an attack's PSNR near these numbers has "
        "recovered colour at most, no structure.",
        "",
        "| batch | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for batch, values in rows.items():
        lines.append(f"| {batch} | " + " | ".join(f"{values[n]:.2f}" for n in names) + " |")
    return "\n".join(lines) + "\n"


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--iterations", type=int, default=None, help="override every scenario")
    parser.add_argument("--seeds", type=int, default=None, help="override the preset's seeds")
    parser.add_argument("--labels", choices=["restored", "truth"], default="restored")
    parser.add_argument("--set", action="append", default=[], help="attack setting key=value")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "invert_quality.md")
    parser.add_argument(
        "--baselines",
        action="store_true",
        help="only write the content-free reference table (results/invert_baselines.md)",
    )
    args = parser.parse_args()
    if args.baselines:
        text = _baselines_table([1, 4])
        write_result(text, RESULTS / "invert_baselines.md")
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    keep_freed_memory()  # as the command line does
    device = resolve_device(args.device)
    overrides: dict[str, Any] = {}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = json.loads(value) if value[:1] in "0123456789-.[{tf" else value

    rows = []
    for name in args.scenarios.split(","):
        row = run_scenario(
            SCENARIOS[name], device, args.labels, args.iterations, args.seeds, overrides
        )
        rows.append(row)
        print(json.dumps(row), flush=True)

    where = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU {platform.machine()}, {torch.get_num_threads()} torch threads"
    )
    lines = [
        "# invert quality on samples/images32 (random-init models, seed 0)",
        "",
        f"Device: {where}; torch {torch.__version__}. PSNR in dB after Hungarian matching on "
        "MSE, mean over the batch; the attack never sees the truth.",
        "",
        "| scenario | model | batch | BN | attack | iterations | seeds | labels | PSNR | target "
        "| best seed (analysis) | consensus (analysis) | time (s) | settings |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        target = "–" if r["target"] is None else f"≥ {r['target']:.1f}"
        lines.append(
            f"| {r['scenario']} | {r['model']} | {r['batch']} | {r['mode']} | {r['attack']} "
            f"| {r['iterations']} | {r['seeds']} | {r['labels']} | {r['psnr']:.2f} | {target} "
            f"| {max(r['psnr_seeds']):.2f} | {_fmt(r['psnr_consensus'])} | {r['seconds']:.0f} "
            f"| {json.dumps(r['overrides']) if r['overrides'] else 'preset'} |"
        )
    text = "\n".join(lines) + "\n"
    write_result(text, args.out)


if __name__ == "__main__":
    main()
