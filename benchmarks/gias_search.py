"""Generative search spaces (GIAS's GI-x, GI-z, GI-z/w old and new; GIFD's GI-f) on validation
images, at equal total iterations, several batches per corpus (mean ± sd over batches).

    nice -n 10 .venv/bin/python benchmarks/gias_search.py [--total 120] [--latent 60]
        [--seeds 2] [--corpora digits,photos32,photos64] [--batches 3] [--cases all]
        [--split validation|tuning] [--out results/gias_search.md]

The client: torchvision resnet18(num_classes=10) seeded 0, one gradient of the mean
cross-entropy on a batch of 4 images (BN in eval mode), labels restored by the tool (as
`gradinvert invert` without --labels). Corpora and priors (samples/splits.json):

* digits: samples/digits32 indices 1400 + 4b … (validation; the digits32 prior trained on
  0 … 1399); ``--split tuning`` reads 1300 + 4b … (the prior's training range: there is no
  other digit split, and 1500+ is reserved);
* photos32: samples/validation32 crops 4b … 4b + 3 of the held-out photographs (chelsea,
  retina), prior photos32 (trained on corpus32, which never saw them); ``--split tuning``
  reads the images32 tuning photographs;
* photos64: the images64 validation photographs (8: two batches), prior photos64; tuning: the
  images64 tuning photographs.

Cases (every one runs ``--total`` iterations in all; ``L`` = ``--latent``):

* gi-x: the ``ig`` preset (pixels);
* gi-z: the ``gias`` preset, latents only, with the corpus's prior;
* gi-zw-old: ``gias`` as first shipped: L latent, then the best restart's free copies;
* gi-zw-new: ``gias`` with ``--weight-stage prior``: every restart refined, copies kept near G
  (trust region, proximity), the lr scale probed (the probe's 2 × P iterations come out of the
  weight stage's budget);
* gi-f: the ``gifd`` preset: L latent, then ``--layers`` feature stages sharing the rest;
* rows on digits: the wrong prior (gi-f with the photo prior), an untrained dcgan (gi-w, new
  stage), gi-x and gi-f against prune 0.9 / 0.99 and Gaussian noise 0.01.

Scores come only after the attack: PSNR and SSIM per image after Hungarian matching on MSE,
mean over the batch. The output is picked by gradient distance, never by the truth. Raw rows go
to ``--out`` with .json; grids to benchmarks/results/gias/.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
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
from gradinvert.invert.engine import Engine
from gradinvert.io.images import load_images
from gradinvert.metrics import assign, pairwise_mse, psnr, ssim
from gradinvert.models import NORMALIZATIONS, InputSpec, build_model, model_spec
from gradinvert.report.grid import save_grid
from gradinvert.runtime.allocator import keep_freed_memory
from gradinvert.runtime.device import resolve_device

PRIORS = {
    "digits": SAMPLES / "priors" / "digits32.safetensors",
    "photos32": SAMPLES / "priors" / "photos32.safetensors",
    "photos64": SAMPLES / "priors" / "photos64.safetensors",
}
WRONG = {"digits": "photos32", "photos32": "digits"}
# The new weight stage and GIFD's radii: chosen on tuning images (see the docs page).
NEW_STAGE = dict(
    weight_stage="prior",
    generator_trust=0.05,
    generator_proximity=1.0,
    generator_lr_scale="auto",
    probe_iterations=5,
)


@dataclass
class Case:
    """One row: which preset and search, which generator, which client setup."""

    name: str
    attack: str
    search: str
    generator: str  # "own" | "wrong" | "dcgan" | ""
    defense: dict[str, float] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    corpora: tuple[str, ...] = ("digits", "photos32", "photos64")


MAIN = [
    Case("gi-x", "ig", "x", ""),
    Case("gi-z", "gias", "z", "own"),
    Case("gi-zw-old", "gias", "zw", "own"),
    Case("gi-zw-new", "gias", "zw", "own", settings=NEW_STAGE),
    Case("gi-f", "gifd", "f", "own"),
]
EXTRA = [
    Case("gi-f-wrong", "gifd", "f", "wrong", corpora=("digits",)),
    Case("gi-w-untrained", "gias", "w", "dcgan", settings=NEW_STAGE, corpora=("digits",)),
    *[
        Case(f"{base}-{label}", attack, search, gen, defense=defense, corpora=("digits",))
        for label, defense in (
            ("prune0.9", {"prune": 0.9}),
            ("prune0.99", {"prune": 0.99}),
            ("noise0.01", {"noise": 0.01}),
        )
        for base, attack, search, gen in (("gi-x", "ig", "x", ""), ("gi-f", "gifd", "f", "own"))
    ],
]
CASES = MAIN + EXTRA


def _folder_batch(folder: Path, names: list[str]) -> tuple[torch.Tensor, list[str]]:
    images, _ = load_images([folder / n for n in names])
    return images, names


def batch_of(corpus: str, index: int, split: str) -> tuple[torch.Tensor, list[int], list[str]]:
    """Batch ``index`` (4 images) of ``corpus``'s ``split`` images, labels and names. Labels
    of photo crops: 4 distinct classes (the client's labels carry no meaning here)."""
    splits = json.loads((SAMPLES / "splits.json").read_text(encoding="utf-8"))
    if corpus == "digits":
        first = 1400 if split == "validation" else 1300
        names = [f"{first + 4 * index + k:04d}.png" for k in range(4)]
        known = json.loads((SAMPLES / "digits32" / "labels.json").read_text(encoding="utf-8"))
        images, _ = _folder_batch(SAMPLES / "digits32", names)
        return images, [int(known[n]) for n in names], names
    if corpus == "photos32" and split == "validation":
        names = [f"{4 * index + k:05d}.png" for k in range(4)]
        folder = SAMPLES / "validation32"
    else:
        folder_name = "images32" if corpus == "photos32" else "images64"
        names = sorted(splits[folder_name][split])[4 * index : 4 * index + 4]
        folder = SAMPLES / folder_name
    if len(names) < 4:
        raise SystemExit(f"{corpus}: not enough {split} images for batch {index}")
    images, _ = _folder_batch(folder, names)
    return images, [(4 * index + k) % 10 for k in range(4)], names


def _scores(recon: torch.Tensor, truth: torch.Tensor) -> tuple[list[float], list[float], list]:
    pairs = sorted(assign(pairwise_mse(recon, truth), "mse").truth_of().items())
    p = [float(psnr(recon[r : r + 1], truth[t : t + 1])[0]) for r, t in pairs]
    s = [float(ssim(recon[r : r + 1], truth[t : t + 1])[0]) for r, t in pairs]
    return p, s, pairs


def settings_for(case: Case, corpus: str, args: argparse.Namespace) -> dict[str, Any]:
    """The case's preset overrides at ``args.total`` iterations in all."""
    total, latent = args.total, args.latent
    settings: dict[str, Any] = {"seeds": args.seeds, **case.settings}
    if case.search in ("x", "z"):
        settings["iterations"] = total
    elif case.search == "w":
        settings["iterations"] = total - 2 * NEW_STAGE["probe_iterations"]
    elif case.search == "zw":
        weights = total - latent
        if settings.get("generator_lr_scale") == "auto":
            weights -= 2 * settings["probe_iterations"]
        settings.update(latent_iterations=latent, iterations=weights)
    else:  # f: the rest shared by the feature stages
        settings.update(
            latent_iterations=latent,
            iterations=(total - latent) // args.layers,
            feature_layers=args.layers,
        )
    if case.search != "x":
        settings["search"] = case.search
        settings["generator"] = {
            "own": str(PRIORS[corpus]),
            "wrong": str(PRIORS.get(WRONG.get(corpus, ""), "")),
            "dcgan": "dcgan",
        }[case.generator]
    return settings


def run_case(
    case: Case, corpus: str, index: int, args: argparse.Namespace, device: torch.device
) -> dict[str, Any]:
    images, labels, names = batch_of(corpus, index, args.split)
    mean, std = NORMALIZATIONS["imagenet"]
    input_spec = InputSpec(tuple(images.shape[1:]), mean, std)  # type: ignore[arg-type]
    spec = model_spec("resnet18", 10, input_spec.shape)
    model = build_model(spec, init_seed=0)
    capture = CaptureConfig(mode="eval", defense=DefenseConfig(**case.defense), seed=0)
    update = capture_update(model, spec, input_spec, images, torch.tensor(labels), capture)
    config = preset(case.attack, **settings_for(case, corpus, args))
    stage_psnr: dict[str, float] = {}

    def at_stage_end(engine: Engine, _progress: object) -> None:
        """For the ablation only (reported, never used by the attack): the PSNR of the
        restart an attacker would pick (lowest gradient distance) at the end of each stage."""
        if not engine.finished() or engine.stage == "x":
            return
        with torch.no_grad():
            distances, _ = engine.simulator.evaluate(engine.candidates, engine.label_logits)
            best = int(torch.nan_to_num(distances, nan=float("inf")).argmin())
            found = engine.pixels()[best].cpu()
        values = _scores(found, images)[0]
        stage_psnr[engine.stage] = sum(values) / len(values)

    start = time.perf_counter()
    result = run_attack(
        update, None, config, device, progress=not args.no_progress, on_iteration=at_stage_end
    )
    seconds = time.perf_counter() - start
    p, s, pairs = _scores(result.images, images)
    grid = RESULTS / "gias" / f"{args.split}-{corpus}-b{index}-{case.name}.png"
    save_grid(
        images[[t for _, t in pairs]],
        result.images[[r for r, _ in pairs]],
        [f"{v:.1f} dB" for v in p],
        grid,
    )
    meta = result.metadata
    probe = next((s for s in meta["stages"] if s["stage"] == "probe"), None)
    return {
        "case": case.name,
        "corpus": corpus,
        "split": args.split,
        "batch": index,
        "images": names,
        "search": case.search,
        "generator": case.generator or "–",
        "defense": case.defense,
        "total": args.total,
        "labels_correct": sorted(result.labels.tolist()) == sorted(labels),
        "psnr": sum(p) / len(p),
        "ssim": sum(s) / len(s),
        "psnr_images": p,
        "seconds": seconds,
        "chosen_stage": meta.get("chosen_stage"),
        "stage_psnr": stage_psnr,
        "probe": probe["chosen"] if probe else None,
        "grid": str(grid.relative_to(RESULTS)),
    }


def flat_baseline(corpus: str, batches: int, split: str) -> float:
    """PSNR of a flat image of each image's own mean colour (needs the truth; reference)."""
    values = []
    for index in range(batches):
        images, _, _ = batch_of(corpus, index, split)
        values += _scores(flat_own_colour(images), images)[0]
    return sum(values) / len(values)


def _mean_sd(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def table(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        f"# Generative search spaces on {args.split} images (ResNet-18, batch 4)",
        "",
        f"Machine: {platform.machine()} CPU shared with other jobs, {torch.get_num_threads()} "
        f"torch thread(s); torch {torch.__version__}. Every row runs {args.total} iterations in "
        f"all ({args.latent} latent + the rest; GI-f: {args.layers} feature stages sharing the "
        f"rest; GI-z/w new: its lr-scale probe's iterations included), {args.seeds} restarts, "
        "labels restored by the tool. The papers run 10–40× more (GIAS 500 + 5000, GIFD 1000 "
        "per stage). PSNR (dB) and SSIM after Hungarian matching on MSE, mean over each batch, "
        "then mean ± sd over the batches; the output is picked by gradient distance. Script: "
        "benchmarks/gias_search.py.",
        "",
    ]
    for corpus in ("digits", "photos32", "photos64"):
        mine = [r for r in rows if r["corpus"] == corpus and r["split"] == args.split]
        if not mine:
            continue
        batches = sorted({r["batch"] for r in mine})
        count = len(batches)
        lines += [
            f"## {corpus} ({count} batch{'es' if count > 1 else ''} of 4; flat own-colour "
            f"image {flat_baseline(corpus, count, args.split):.2f} dB)",
            "",
            "| case | search | generator | client | PSNR | SSIM | labels | s / run | picked "
            "| PSNR at each stage's end | grids |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for case in CASES:
            found = sorted((r for r in mine if r["case"] == case.name), key=lambda r: r["batch"])
            if not found:
                continue
            first = found[0]
            client = "eval" + "".join(f", {k} {v:g}" for k, v in first["defense"].items())
            picked = ", ".join(str(r["chosen_stage"] or r["probe"] or "–") for r in found)
            grids = " ".join(f"[b{r['batch']}]({r['grid']})" for r in found)
            stages = list(found[0].get("stage_psnr", {}))
            by_stage = " → ".join(
                f"{name} {statistics.mean(r['stage_psnr'][name] for r in found):.2f}"
                for name in stages
                if all(name in r.get("stage_psnr", {}) for r in found)
            )
            lines.append(
                f"| {case.name} | {first['search']} | {first['generator']} | {client} | "
                f"{_mean_sd([r['psnr'] for r in found])} | "
                f"{_mean_sd([r['ssim'] for r in found])} | "
                f"{sum(r['labels_correct'] for r in found)}/{len(found)} | "
                f"{statistics.mean(r['seconds'] for r in found):.0f} | {picked} | "
                f"{by_stage or '–'} | {grids} |"
            )
        lines.append("")
    lines += [
        "`picked`: per batch, the GIFD stage whose output was kept (z, f1, f2, …) or the lr "
        "scale the probe chose (GI-z/w new, GI-w untrained). `PSNR at each stage's end`: the "
        "ablation: the restart with the lowest gradient distance scored at the end of each "
        "stage, mean over the batches (for reporting only; the attack never sees the truth).",
        "",
    ]
    return "\n".join(lines)


def summary(paths: list[Path], link: str = "") -> str:
    """One table over the corpora of several result files: PSNR mean ± sd per case (n batches),
    and the stage ablation of the multi-stage cases. ``link``: prefix of the grid links."""
    unique = {}  # one row per (corpus, case, batch): files written side by side may overlap
    for path in paths:
        for r in json.loads(path.read_text(encoding="utf-8")):
            unique[(r["split"], r["corpus"], r["case"], r["batch"])] = r
    rows = [r for r in unique.values() if r["split"] == "validation"]
    corpora = [c for c in ("digits", "photos32", "photos64") if any(r["corpus"] == c for r in rows)]
    lines = [
        "| case | " + " | ".join(corpora) + " |",
        "|---|" + "---|" * len(corpora),
    ]
    flat = {}
    for corpus in corpora:
        count = len({r["batch"] for r in rows if r["corpus"] == corpus and r["case"] == "gi-x"})
        flat[corpus] = flat_baseline(corpus, max(count, 1), "validation")
    for case in CASES:
        cells = []
        for corpus in corpora:
            found = [r for r in rows if r["corpus"] == corpus and r["case"] == case.name]
            if not found:
                cells.append("–")
                continue
            found.sort(key=lambda r: r["batch"])
            grid = f"[grid]({link}{found[0]['grid']})" if link else ""
            cells.append(f"{_mean_sd([r['psnr'] for r in found])} (n={len(found)}) {grid}")
        if any(c != "–" for c in cells):
            lines.append(f"| {case.name} | " + " | ".join(cells) + " |")
    lines.append(
        "| flat own-colour image | " + " | ".join(f"{flat[c]:.2f}" for c in corpora) + " |"
    )
    lines += ["", "Stage ablation (PSNR of the restart an attacker picks, at each stage's end):"]
    lines.append("")
    lines += ["| corpus | case | stages |", "|---|---|---|"]
    for corpus in corpora:
        for name in ("gi-zw-old", "gi-zw-new", "gi-f"):
            found = [r for r in rows if r["corpus"] == corpus and r["case"] == name]
            stages = list(found[0]["stage_psnr"]) if found else []
            text = " → ".join(
                f"{stage} {statistics.mean(r['stage_psnr'][stage] for r in found):.2f}"
                for stage in stages
                if all(stage in r["stage_psnr"] for r in found)
            )
            if text:
                lines.append(f"| {corpus} | {name} | {text} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--total", type=int, default=120)
    parser.add_argument("--latent", type=int, default=60)
    parser.add_argument("--layers", type=int, default=2, help="GIFD feature stages")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--corpora", default="digits,photos32,photos64")
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--extra-batches", type=int, default=1)
    parser.add_argument("--batch-list", default="", help="run these batches only (e.g. 2)")
    parser.add_argument("--cases", default="all", help="comma-separated case names")
    parser.add_argument("--split", default="validation", choices=("validation", "tuning"))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--fresh", action="store_true", help="forget earlier runs' rows")
    parser.add_argument("--out", type=Path, default=RESULTS / "gias_search.md")
    parser.add_argument(
        "--summary", nargs="+", type=Path, help="only write one table over these .json files"
    )
    parser.add_argument("--link", default="", help="--summary: prefix of the grid links")
    args = parser.parse_args()
    if args.summary:
        write_result(summary(args.summary, args.link), args.out)
        return
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    device = resolve_device(args.device)
    wanted = None if args.cases == "all" else set(args.cases.split(","))
    raw = args.out.with_suffix(".json")
    rows: list[dict[str, Any]] = []
    if raw.exists() and not args.fresh:
        rows = json.loads(raw.read_text(encoding="utf-8"))
    # Batch by batch (every main case of batch 0 first; the extra rows last), so a run stopped
    # early leaves whole batches; rows already in the .json (earlier runs) are not run again.
    done = {(r["split"], r["corpus"], r["case"], r["batch"]) for r in rows}
    chosen = range(args.batches)
    if args.batch_list:
        chosen = [int(b) for b in args.batch_list.split(",")]
    order = [(index, MAIN) for index in chosen]
    order += [(index, EXTRA) for index in range(args.extra_batches)]
    for corpus in args.corpora.split(","):
        available = 2 if corpus == "photos64" else 25  # 8 validation photos at 64 px
        for index, cases in order:
            if index >= available:
                continue
            for case in cases:
                if corpus not in case.corpora or (wanted and case.name not in wanted):
                    continue
                key = (args.split, corpus, case.name, index)
                if key in done:
                    continue
                row = run_case(case, corpus, index, args, device)
                rows = [r for r in rows if (r["split"], r["corpus"], r["case"], r["batch"]) != key]
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
