"""GIML: a generative prior learned from a stream of updates alone, used by GIAS (Jeon et al.
2021, Table 3 style) on validation digits.

    .venv/bin/python benchmarks/giml.py [--task-latent 10] [--task-iterations 10]
        [--counts 0,25,50,100,200] [--meta-lrs 1e-2,1e-3] [--latent-iterations 50]
        [--iterations 100] [--threads 1]

The stream: samples/digits32 indices 0 … 999 in 250 client batches of 4 (in order), each one
gradient of the mean cross-entropy of the CLI's ``convnet`` (10 classes, seeded 0, BN in eval
mode; the same global model for every batch: no model drift between rounds). The labels of
each update are restored by the tool (``labels --method auto``). ``learn-prior`` runs once
for the largest count from an untrained ``dcgan`` (seed 0) and the generator is snapshotted
after each count of tasks (a run of N tasks is the first N tasks of a longer run). The
per-task budget (``--task-latent`` + ``--task-iterations``) is far below the official
1000 + 500, to fit a CPU hour: one task of 8 + 8 iterations took 2.9 s on one thread
(``--measure`` times one). Each meta lr (``--meta-lrs``: the official 1e-2, and 1e-3) is
its own learn-prior run: Adam's meta step moves every weight by about the meta lr whatever
the inner budget, which with 10 + 10 inner iterations at lr 1e-3 is far more than the copy
itself moved. The whole default run takes about 45 minutes.

Evaluation: validation digits 1400 … 1407 (two batches of 4; never 1500+, never what a prior
trained on) on the same convnet, labels restored, attacked with GIAS (``gias`` preset, one
restart, the generator lr 1e-3 absolute as in the paper: ``--generator-lr-scale absolute``,
with which the committed table was made) for ``--latent-iterations`` + ``--iterations`` using
each prior: the untrained dcgan
(0 tasks), GIML after each count, samples/priors/digits32.safetensors (image-trained on digits
0 … 1399: an upper reference; skipped when absent), samples/priors/patches32.safetensors (the
wrong domain), and GI-x (``ig`` preset, one restart, the same total iterations). PSNR and SSIM
per image after Hungarian matching on MSE, mean over the 8 digits. Writes
benchmarks/results/giml.md.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from common import RESULTS, SAMPLES, write_result
from gias_search import _scores, validation_batch

from gradinvert.capture import CaptureConfig, capture_update
from gradinvert.files import save_update
from gradinvert.generators import Generator, load_generator, save_generator
from gradinvert.images import load_images
from gradinvert.invert import preset, run_attack
from gradinvert.models import NORMALIZATIONS, InputSpec, build_model, model_spec
from gradinvert.priors.learn import LearnPriorConfig, MetaLearner, TaskInfo, learn_prior

STREAM = range(0, 1000)
BATCH = 4
DIGITS_PRIOR = SAMPLES / "priors" / "digits32.safetensors"
PATCHES_PRIOR = SAMPLES / "priors" / "patches32.safetensors"


def client() -> tuple[torch.nn.Module, Any, InputSpec]:
    mean, std = NORMALIZATIONS["imagenet"]
    input_spec = InputSpec((3, 32, 32), mean, std)
    spec = model_spec("convnet", 10, input_spec.shape)
    return build_model(spec, init_seed=0), spec, input_spec


def write_stream(folder: Path) -> list[Path]:
    """The 250 update files of the stream (the labels from labels.json go into the update's
    loss only, as a client's would; the learner restores them from the update)."""
    import json

    known = json.loads((SAMPLES / "digits32" / "labels.json").read_text(encoding="utf-8"))
    model, spec, input_spec = client()
    paths = []
    indices = list(STREAM)
    for b in range(len(indices) // BATCH):
        names = [f"{i:04d}.png" for i in indices[BATCH * b : BATCH * (b + 1)]]
        images, _ = load_images([SAMPLES / "digits32" / n for n in names])
        labels = torch.tensor([int(known[n]) for n in names])
        update = capture_update(model, spec, input_spec, images, labels, CaptureConfig(seed=b))
        path = folder / f"u{b:03d}.safetensors"
        save_update(update, path)
        paths.append(path)
    return paths


def attack_row(
    name: str, generator: str | None, args: argparse.Namespace, extra: dict[str, Any]
) -> dict[str, Any]:
    model, spec, input_spec = client()
    psnrs, ssims, seconds, correct = [], [], 0.0, 0
    for index in range(2):
        images, labels, _ = validation_batch("digits", index)
        update = capture_update(
            model, spec, input_spec, images, torch.tensor(labels), CaptureConfig()
        )
        total = args.latent_iterations + args.iterations
        if generator is None:
            config = preset("ig", seeds=1, iterations=total)
        else:
            config = preset(
                "gias",
                seeds=1,
                generator=generator,
                latent_iterations=args.latent_iterations,
                iterations=args.iterations,
                generator_lr_scale="absolute",
            )
        start = time.perf_counter()
        result = run_attack(update, None, config, "cpu", progress=False)
        seconds += time.perf_counter() - start
        p, s, _ = _scores(result.images, images)
        psnrs += p
        ssims += s
        correct += sorted(result.labels.tolist()) == sorted(labels)
    row = {
        "prior": name,
        "psnr": sum(psnrs) / len(psnrs),
        "ssim": sum(ssims) / len(ssims),
        "labels": f"{correct}/2",
        "seconds": seconds,
        **extra,
    }
    print(row, flush=True)
    return row


def table(rows: list[dict[str, Any]], args: argparse.Namespace, notes: list[str]) -> str:
    lines = [
        "# GIML: a prior learned from updates alone (digits, convnet, batch 4)",
        "",
        "Written by `benchmarks/giml.py` (see its docstring for the setup). Stream: digits "
        f"0 … 999 in 250 gradients of batch 4 of the CLI's convnet (eval mode, one global "
        f"model, labels restored); per task {args.task_latent} latent + {args.task_iterations} "
        "generator iterations (official: 1000 + 500), K = 1, ||z|| 1e-3, Adam meta step "
        "(official meta lr 1e-2). "
        f"Evaluation: digits 1400 … 1407 (two batches of 4), GIAS with {args.latent_iterations} "
        f"latent + {args.iterations} generator iterations (one restart, generator lr 1e-3 "
        "absolute); GI-x the ig preset for "
        "the same total; PSNR/SSIM after Hungarian matching, mean over the 8 digits.",
        "",
        "| prior | tasks | learn time (s) | PSNR (dB) | SSIM | labels | attack time (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['prior']} | {row.get('tasks', '–')} | {row.get('learn_seconds', '–')} | "
            f"{row['psnr']:.2f} | {row['ssim']:.3f} | {row['labels']} | {row['seconds']:.0f} |"
        )
    lines += ["", *notes, "", f"Machine: {platform.machine()}, torch {torch.__version__}, "
              f"{torch.get_num_threads()} thread(s), CPU."]  # fmt: skip
    return "\n".join(lines) + "\n"


def learn(
    folder: Path, counts: list[int], meta_lr: float, args: argparse.Namespace, notes: list[str]
) -> dict[int, tuple[dict[str, torch.Tensor], float]]:
    """One learn-prior run to the largest count; the generator after each count of tasks."""
    snapshots: dict[int, tuple[dict[str, torch.Tensor], float]] = {}
    tasks = 1 if args.measure else max(counts)
    if tasks == 0:
        return snapshots
    config = LearnPriorConfig(
        tasks=tasks,
        latent_iterations=args.task_latent,
        iterations=args.task_iterations,
        meta_lr=meta_lr,
    )
    began = time.perf_counter()

    def keep(learner: MetaLearner, info: TaskInfo) -> None:
        if info.done in counts:
            state = {k: v.detach().clone() for k, v in learner.module.state_dict().items()}
            snapshots[info.done] = (state, time.perf_counter() - began)
        if info.done % 25 == 0 or info.done == 1:
            print(
                f"meta lr {meta_lr:g}, task {info.done}: distance {info.distance:.4f} "
                f"({time.perf_counter() - began:.0f} s)",
                flush=True,
            )

    result = learn_prior([folder / "u*.safetensors"], config, "dcgan", "cpu", on_task=keep)
    distances = result.training["task_distances"]
    if args.measure:
        print(f"one task: {time.perf_counter() - began:.1f} s", flush=True)
        return snapshots
    for k in counts:
        if k:
            window = distances[max(0, k - 25) : k]
            notes.append(
                f"- GIML (meta lr {meta_lr:g}) after {k} tasks: mean final gradient distance of "
                f"tasks {max(1, k - 24)} … {k}: {sum(window) / len(window):.4f}"
            )
    return snapshots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task-latent", type=int, default=10)
    parser.add_argument("--task-iterations", type=int, default=10)
    parser.add_argument("--counts", default="0,25,50,100,200")
    parser.add_argument("--meta-lrs", default="1e-2,1e-3", help="comma-separated meta lrs")
    parser.add_argument("--latent-iterations", type=int, default=50)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--measure", action="store_true", help="time one task, then stop")
    parser.add_argument("--out", type=Path, default=RESULTS / "giml.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    counts = sorted(int(c) for c in args.counts.split(","))
    meta_lrs = [float(v) for v in args.meta_lrs.split(",")]
    notes: list[str] = []
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        write_stream(folder)
        print(f"stream written in {time.perf_counter() - start:.0f} s", flush=True)
        if 0 in counts and not args.measure:
            path = folder / "G0.safetensors"
            _save(load_generator("dcgan", (3, 32, 32), seed=0), path)
            rows.append(attack_row("untrained dcgan", str(path), args, {"tasks": 0}))
        for meta_lr in meta_lrs:
            snapshots = learn(folder, counts, meta_lr, args, notes)
            if args.measure:
                return
            for k in (c for c in counts if c):
                generator = load_generator("dcgan", (3, 32, 32), seed=0)
                state, seconds = snapshots[k]
                generator.module.load_state_dict(state)
                path = folder / f"G{k}-{meta_lr:g}.safetensors"
                _save(generator, path)
                extra = {"tasks": k, "learn_seconds": f"{seconds:.0f}"}
                rows.append(attack_row(f"GIML, meta lr {meta_lr:g}", str(path), args, extra))
        for name, prior in (
            ("digits32 (image-trained on digits 0 … 1399)", DIGITS_PRIOR),
            ("patches32 (image-trained, wrong domain)", PATCHES_PRIOR),
        ):
            if prior.exists():
                rows.append(attack_row(name, str(prior), args, {}))
            else:
                notes.append(f"- {prior.relative_to(SAMPLES.parent)} absent: its row is skipped")
        rows.append(attack_row("GI-x (ig, no prior)", None, args, {}))
    write_result(table(rows, args, notes), args.out)


def _save(generator: Generator, path: Path) -> None:
    module = generator.module
    save_generator(path, module, module.arch(), {"method": "benchmark snapshot"})


if __name__ == "__main__":
    main()
