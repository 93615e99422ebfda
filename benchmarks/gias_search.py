"""GIAS search-space comparison (Jeon et al. 2021, Table 1 style) on validation images.

    .venv/bin/python benchmarks/gias_search.py [--latent-iterations 200] [--iterations 400]
        [--corpora photos,digits] [--batches 1] [--cases all] [--threads 1]
        [--out results/gias_search_{photos,digits}.md]

The client: torchvision resnet18(num_classes=10) seeded 0, one gradient of the mean
cross-entropy on a batch of 4 images at 32 px (BN in eval mode unless a case says train). The
labels are restored by the tool (as `gradinvert invert` without --labels). Images are never
ones a prior was trained on or a preset tuned on (samples/splits.json):

* photos: samples/images32 crops of the held-out photographs (chelsea, retina), which the
  patches32 prior never saw;
* digits: samples/digits32 indices 1400 … 1407 (the digits32 prior trained on 0 … 1399).

Cases (``L`` latent + ``W`` weight iterations; every case runs ``L + W`` iterations in all):

* gi-x: the ``ig`` preset (pixels), 3 restarts, L + W iterations;
* gi-z: the trained prior of the corpus, latents only, 3 restarts, L + W iterations;
* gi-w-untrained: an untrained ``dcgan``, one generator copy per image, L + W iterations;
* gi-zw: GIAS with the corpus's own prior (L, then W);
* gi-zw-wrong: GIAS with the other corpus's prior;
* gi-zw-bn-train: GIAS + BN prior, the client in train mode with shared BN statistics;
* defense rows (photos): gi-x and gi-zw against pruning 0.9 / 0.99 and Gaussian noise 0.01.

Scores come only after the attack: PSNR and SSIM per image after Hungarian matching on MSE,
mean over the batch. The output is picked by gradient distance, never by the truth. Writes
benchmarks/results/gias_search.md and a grid per row under benchmarks/results/gias/.
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
from common import RESULTS, SAMPLES, flat_own_colour, write_result

from gradinvert.client.capture import CaptureConfig, capture_update
from gradinvert.client.defenses import DefenseConfig
from gradinvert.config import preset
from gradinvert.invert import run_attack
from gradinvert.io.images import load_images
from gradinvert.metrics import assign, pairwise_mse, psnr, ssim
from gradinvert.models import NORMALIZATIONS, InputSpec, build_model, model_spec
from gradinvert.report.grid import save_grid
from gradinvert.runtime.allocator import keep_freed_memory
from gradinvert.runtime.device import resolve_device

PRIORS = {
    "photos": SAMPLES / "priors" / "patches32.safetensors",
    "digits": SAMPLES / "priors" / "digits32.safetensors",
}
OTHER = {"photos": "digits", "digits": "photos"}
RESTARTS = 3


@dataclass
class Case:
    """One row: which search, which generator, which client setup."""

    name: str
    attack: str
    search: str
    generator: str  # "own" | "other" | "dcgan" | ""
    mode: str = "eval"
    defense: dict[str, float] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    corpora: tuple[str, ...] = ("photos", "digits")


CASES = [
    Case("gi-x", "ig", "x", ""),
    Case("gi-z", "gias", "z", "own"),
    Case("gi-w-untrained", "gias", "w", "dcgan", settings={"seeds": 1}),
    Case("gi-zw", "gias", "zw", "own"),
    Case("gi-zw-wrong", "gias", "zw", "other"),
    Case("gi-zw-bn-train", "gias", "zw", "own", mode="train", settings={"bn": 1e-2}),
    *[
        Case(f"{base}-{label}", attack, search, gen, defense=defense, corpora=("photos",))
        for label, defense in (
            ("prune0.9", {"prune": 0.9}),
            ("prune0.99", {"prune": 0.99}),
            ("noise0.01", {"noise": 0.01}),
        )
        for base, attack, search, gen in (("gi-x", "ig", "x", ""), ("gi-zw", "gias", "zw", "own"))
    ],
]


def validation_batch(corpus: str, index: int) -> tuple[torch.Tensor, list[int], list[str]]:
    """Batch ``index`` (of 4) of the corpus's validation images, with labels and names."""
    if corpus == "digits":
        folder = SAMPLES / "digits32"
        names = [f"{1400 + 4 * index + k:04d}.png" for k in range(4)]
        known = json.loads((folder / "labels.json").read_text(encoding="utf-8"))
    else:
        folder = SAMPLES / "images32"
        splits = json.loads((SAMPLES / "splits.json").read_text(encoding="utf-8"))
        validation = sorted(splits["images32"]["validation"])
        names = validation[3 * index : 3 * index + 4]
        known = json.loads((SAMPLES / "labels.json").read_text(encoding="utf-8"))["images32"]
    if len(names) < 4:
        raise SystemExit(f"{corpus}: not enough validation images for batch {index}")
    images, _ = load_images([folder / n for n in names])
    return images, [int(known[n]) for n in names], names


def _scores(recon: torch.Tensor, truth: torch.Tensor) -> tuple[list[float], list[float], list]:
    pairs = sorted(assign(pairwise_mse(recon, truth), "mse").truth_of().items())
    p = [float(psnr(recon[r : r + 1], truth[t : t + 1])[0]) for r, t in pairs]
    s = [float(ssim(recon[r : r + 1], truth[t : t + 1])[0]) for r, t in pairs]
    return p, s, pairs


def run_case(
    case: Case, corpus: str, batch_index: int, args: argparse.Namespace, device: torch.device
) -> dict[str, Any]:
    images, labels, names = validation_batch(corpus, batch_index)
    mean, std = NORMALIZATIONS["imagenet"]
    input_spec = InputSpec(tuple(images.shape[1:]), mean, std)  # type: ignore[arg-type]
    spec = model_spec("resnet18", 10, input_spec.shape)
    model = build_model(spec, init_seed=0)
    capture = CaptureConfig(
        mode=case.mode,  # type: ignore[arg-type]
        share_bn_stats=case.mode == "train",
        defense=DefenseConfig(**case.defense),
        seed=0,
    )
    update = capture_update(model, spec, input_spec, images, torch.tensor(labels), capture)
    total = args.latent_iterations + args.iterations
    settings: dict[str, Any] = {"seeds": RESTARTS, **case.settings}
    if case.search == "zw":
        settings.update(latent_iterations=args.latent_iterations, iterations=args.iterations)
    else:
        settings.update(iterations=total)
    if case.search != "x":
        settings["search"] = case.search
        settings["generator"] = {
            "own": str(PRIORS[corpus]),
            "other": str(PRIORS[OTHER[corpus]]),
            "dcgan": "dcgan",
        }[case.generator]
    config = preset(case.attack, **settings)
    start = time.perf_counter()
    result = run_attack(update, None, config, device, progress=not args.no_progress)
    seconds = time.perf_counter() - start
    p, s, pairs = _scores(result.images, images)
    grid = RESULTS / "gias" / f"{corpus}-b{batch_index}-{case.name}.png"
    save_grid(
        images[[t for _, t in pairs]],
        result.images[[r for r, _ in pairs]],
        [f"{v:.1f} dB" for v in p],
        grid,
    )
    correct = sorted(result.labels.tolist()) == sorted(labels)
    return {
        "case": case.name,
        "corpus": corpus,
        "batch": batch_index,
        "images": names,
        "search": case.search,
        "generator": case.generator or "–",
        "mode": case.mode,
        "defense": case.defense,
        "iterations": total,
        "labels_correct": correct,
        "psnr": sum(p) / len(p),
        "ssim": sum(s) / len(s),
        "psnr_images": p,
        "seconds": seconds,
        "threads": torch.get_num_threads(),
        "latent_iterations": args.latent_iterations,
        "grid": str(grid.relative_to(RESULTS)),
    }


def own_colour_baseline(corpus: str, batches: int) -> float:
    """PSNR of a flat image of each photo's own mean colour (needs the truth; reference)."""
    values = []
    for index in range(batches):
        images, _, _ = validation_batch(corpus, index)
        flat = flat_own_colour(images)
        values += _scores(flat, images)[0]
    return sum(values) / len(values)


def table(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    header = [
        "# GIAS search spaces on validation images (ResNet-18, batch 4, 32 px)",
        "",
        f"Machine: {platform.machine()} CPU, {torch.get_num_threads()} torch threads; torch "
        f"{torch.__version__}. Latent {args.latent_iterations} + weight {args.iterations} "
        f"iterations (every row runs {args.latent_iterations + args.iterations} in all), "
        f"{RESTARTS} restarts unless noted, labels restored by the tool. PSNR (dB) and SSIM "
        "after Hungarian matching on MSE, mean over the batch(es); the output is picked by "
        "gradient distance. Script: benchmarks/gias_search.py.",
        "",
    ]
    rows = [r for r in rows if r["batch"] < args.batches]  # every row on the same images
    corpora = sorted({r["corpus"] for r in rows}, reverse=True)
    for corpus in corpora:
        batches = len({r["batch"] for r in rows if r["corpus"] == corpus})
        header += [
            f"## {corpus} ({batches} batch{'es' if batches > 1 else ''} of 4; flat own-colour "
            f"baseline {own_colour_baseline(corpus, batches):.2f} dB)",
            "",
            "| case | search | generator | client | PSNR | SSIM | labels | time (s) | grid |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        present = {r["case"] for r in rows if r["corpus"] == corpus}
        names = [case.name for case in CASES if case.name in present]
        for name in names:
            mine = [r for r in rows if r["corpus"] == corpus and r["case"] == name]
            first = mine[0]
            client = first["mode"] + (" + shared BN" if first["mode"] == "train" else "")
            if first["defense"]:
                client += ", " + ", ".join(f"{k} {v:g}" for k, v in first["defense"].items())
            psnr_mean = sum(r["psnr"] for r in mine) / len(mine)
            ssim_mean = sum(r["ssim"] for r in mine) / len(mine)
            correct = sum(r["labels_correct"] for r in mine)
            seconds = sum(r["seconds"] for r in mine) / len(mine)
            grids = " ".join(f"[b{r['batch']}]({r['grid']})" for r in mine)
            header.append(
                f"| {name} | {first['search']} | {first['generator']} | {client} | "
                f"{psnr_mean:.2f} | {ssim_mean:.3f} | {correct}/{len(mine)} right | "
                f"{seconds:.0f} | {grids} |"
            )
        header.append("")
    return "\n".join(header)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latent-iterations", type=int, default=200)
    parser.add_argument("--iterations", type=int, default=400)
    parser.add_argument("--corpora", default="photos,digits")
    parser.add_argument("--batches", type=int, default=1)
    parser.add_argument("--cases", default="all", help="comma-separated case names")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--fresh", action="store_true", help="forget earlier runs' rows")
    parser.add_argument("--out", type=Path, default=RESULTS / "gias_search.md")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    keep_freed_memory()
    device = resolve_device(args.device)
    wanted = None if args.cases == "all" else set(args.cases.split(","))
    raw = args.out.with_suffix(".json")
    # Rows of earlier runs stay unless rerun (so cases can run separately); --fresh drops them.
    rows: list[dict[str, Any]] = []
    if raw.exists() and not args.fresh:
        rows = json.loads(raw.read_text(encoding="utf-8"))
    for corpus in args.corpora.split(","):
        for case in CASES:
            if corpus not in case.corpora or (wanted and case.name not in wanted):
                continue
            for index in range(args.batches):
                row = run_case(case, corpus, index, args, device)
                key = (corpus, case.name, index)
                rows = [r for r in rows if (r["corpus"], r["case"], r["batch"]) != key]
                rows.append(row)
                print(
                    f"{corpus} b{index} {case.name}: {row['psnr']:.2f} dB, SSIM "
                    f"{row['ssim']:.3f}, {row['seconds']:.0f} s",
                    flush=True,
                )
                raw.write_text(json.dumps(rows, indent=1), encoding="utf-8")
    write_result(table(rows, args), args.out)


if __name__ == "__main__":
    main()
