"""Label restoration accuracy per method over batch sizes, label kinds, class counts and models.

    .venv/bin/python benchmarks/labels.py                    # full run, table on stdout
    .venv/bin/python benchmarks/labels.py --out benchmarks/results/labels.md
    .venv/bin/python benchmarks/labels.py --trials 2 --steps 50 --quick   # smoke run

Each cell is the mean multiset accuracy over ``--trials`` random batches. A batch draws images
from samples/images32 (with replacement, random 4 px-padded crops and flips) and labels at
random: "distinct" draws B different classes; "repeated" draws B labels uniformly with
replacement from a random pool of max(2, B/4) classes (at most C), so classes repeat about four
times each. Every batch goes through capture_update and restore_labels, as the CLI does.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from gradinvert.client.capture import CaptureConfig, capture_update
from gradinvert.io.files import LocalTraining
from gradinvert.io.images import load_images
from gradinvert.labels import multiset_accuracy, restore_labels
from gradinvert.models import InputSpec, build_model, model_spec
from gradinvert.runtime.errors import InvalidInputError, UsageError

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples" / "images32"
METHODS = ("auto", "idlg", "yin", "ilrg", "llg", "bias")
ARCH = "resnet18"  # torchvision ResNet-18 (ImageNet stem) on 32 px inputs


@dataclass
class Setting:
    """One block of rows: a model state and how the client computes its update."""

    name: str
    trained: bool = False
    mode: str = "eval"
    local: tuple[int, int, float] | None = None  # (steps, minibatches per epoch, lr)
    max_classes: int = 1000


def crop_flip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random 32 px crops of the 4 px reflect-padded images, each flipped with probability 1/2."""
    count = images.shape[0]
    padded = F.pad(images, (4, 4, 4, 4), mode="reflect")
    shifts = torch.randint(0, 9, (count, 2), generator=generator)
    flips = torch.rand(count, generator=generator) < 0.5
    out = []
    for i in range(count):
        dy, dx = shifts[i].tolist()
        crop = padded[i, :, dy : dy + 32, dx : dx + 32]
        out.append(crop.flip(-1) if flips[i] else crop)
    return torch.stack(out)


def augment(images: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` images drawn with replacement, then randomly cropped and flipped."""
    index = torch.randint(0, images.shape[0], (count,), generator=generator)
    return crop_flip(images[index], generator)


def draw_labels(
    num_classes: int, batch: int, repeated: bool, generator: torch.Generator
) -> torch.Tensor:
    if not repeated:
        return torch.randperm(num_classes, generator=generator)[:batch]
    pool_size = min(num_classes, max(2, batch // 4))
    pool = torch.randperm(num_classes, generator=generator)[:pool_size]
    return pool[torch.randint(0, pool_size, (batch,), generator=generator)]


def train_model(
    num_classes: int, images: torch.Tensor, labels: torch.Tensor, steps: int
) -> tuple[torch.nn.Module, dict[str, float]]:
    """A few hundred SGD steps on the sample photos (their labels.json classes)."""
    spec = model_spec(ARCH, num_classes, (3, 32, 32))
    model = build_model(spec, init_seed=0)
    input_spec = InputSpec((3, 32, 32))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    generator = torch.Generator().manual_seed(0)
    model.train()
    loss = torch.tensor(float("nan"))
    for _ in range(steps):
        index = torch.randint(0, images.shape[0], (32,), generator=generator)
        batch = crop_flip(images[index], generator)
        loss = F.cross_entropy(model(input_spec.normalize(batch)), labels[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        probs = model(input_spec.normalize(images)).softmax(dim=1)
    return model, {"loss": loss.item(), "max_prob": float(probs.max(dim=1).values.mean())}


def run_cell(
    setting: Setting,
    num_classes: int,
    batch: int,
    repeated: bool,
    trials: int,
    images: torch.Tensor,
    trained: torch.nn.Module | None,
) -> tuple[dict[str, float | None], str]:
    spec = model_spec(ARCH, num_classes, (3, 32, 32))
    input_spec = InputSpec((3, 32, 32))
    scores: dict[str, list[float]] = {m: [] for m in METHODS}
    chosen: Counter[str] = Counter()
    for trial in range(trials):
        generator = torch.Generator().manual_seed(10_000 * trial + 100 * batch + num_classes)
        pixels = augment(images, batch, generator)
        labels = draw_labels(num_classes, batch, repeated, generator)
        model = trained if trained is not None else build_model(spec, init_seed=trial)
        local = None
        if setting.local is not None:
            steps, per_epoch, lr = setting.local
            local = LocalTraining(steps, lr, max(1, batch // per_epoch))
        config = CaptureConfig(mode=setting.mode, local=local, seed=trial)  # type: ignore[arg-type]
        update = capture_update(model, spec, input_spec, pixels, labels, config)
        for method in METHODS:
            try:
                result = restore_labels(update, method)
            except UsageError:
                continue  # the method does not apply (idlg beyond one sample, yin with B > C)
            except InvalidInputError:  # e.g. an all-zero last-layer gradient: nothing leaked
                scores[method].append(0.0)
                continue
            scores[method].append(multiset_accuracy(result.labels, labels.tolist()))
            if method == "auto":
                chosen[result.method] += 1
    means = {m: (sum(v) / len(v) if len(v) == trials else None) for m, v in scores.items()}
    return means, ", ".join(f"{m}×{n}" for m, n in sorted(chosen.items()))


def cells(num_classes: int, quick: bool) -> list[tuple[int, bool]]:
    sizes = [1, 8, 32] if quick else [1, 8, 32, 64, 128]
    rows = [(b, False) for b in sizes if b <= num_classes]
    rows += [(b, True) for b in sizes if b > 1]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5, help="random batches per cell")
    parser.add_argument("--steps", type=int, default=300, help="SGD steps of the trained models")
    parser.add_argument("--classes", default="10,100,1000")
    parser.add_argument("--quick", action="store_true", help="batch sizes 1, 8, 32 only")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, help="also write the table here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.time()

    images, paths = load_images([SAMPLES])
    known = json.loads((ROOT / "samples" / "labels.json").read_text())["images32"]
    sample_labels = torch.tensor([known[p.name] for p in paths])
    class_counts = [int(c) for c in args.classes.split(",")]
    settings = [
        Setting("untrained"),
        Setting("untrained, BN train mode", mode="train", max_classes=100),
        Setting(f"trained ({args.steps} steps)", trained=True),
        Setting(
            "untrained, delta: 5 full-batch steps, lr 0.001", local=(5, 1, 1e-3), max_classes=100
        ),
        Setting(
            "untrained, delta: 5 full-batch steps, lr 0.01", local=(5, 1, 0.01), max_classes=100
        ),
        Setting(
            "untrained, delta: 1 epoch of 4 minibatches, lr 0.01",
            local=(4, 4, 0.01),
            max_classes=100,
        ),
    ]
    header = "| model state | classes | labels | B | " + " | ".join(METHODS) + " | auto chose |"
    lines = [header, "|" + "---|" * (5 + len(METHODS))]
    training_notes = []
    for setting in settings:
        for num_classes in class_counts:
            if num_classes > setting.max_classes:
                continue  # keeps the run short
            trained = None
            if setting.trained:
                trained, info = train_model(num_classes, images, sample_labels, args.steps)
                training_notes.append(
                    f"{num_classes} classes: final training loss {info['loss']:.3f}, mean max "
                    f"softmax on the samples {info['max_prob']:.3f}"
                )
            for batch, repeated in cells(num_classes, args.quick):
                if setting.local is not None and (batch == 1 or batch == 128 or not repeated):
                    continue
                if setting.mode == "train" and batch == 1:
                    continue  # BatchNorm cannot train on one sample
                accuracy, auto_chose = run_cell(
                    setting, num_classes, batch, repeated, args.trials, images, trained
                )
                values = ["—" if a is None else f"{100 * a:.1f}" for a in accuracy.values()]
                kind = "repeated" if repeated else "distinct"
                line = f"| {setting.name} | {num_classes} | {kind} | {batch} | "
                lines.append(line + " | ".join(values) + f" | {auto_chose} |")
                print(lines[-1], file=sys.stderr, flush=True)

    minutes = (time.time() - start) / 60
    cpu = platform.processor() or platform.machine()
    preamble = [
        "# Label restoration accuracy (multiset, %)",
        "",
        f"Machine: {cpu}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
        f"{args.threads} threads, CPU only; run time {minutes:.1f} min. "
        f"Command: `python benchmarks/labels.py --trials {args.trials} --steps {args.steps}"
        + (" --quick" if args.quick else "")
        + "`.",
        "",
        f"Model: torchvision {ARCH} (ImageNet stem) on 32 px inputs, random init per trial "
        "(init seed = trial); updates are mean cross-entropy gradients of the whole batch, BN in "
        "eval mode (capture's default) unless the row says otherwise. Trained: one model per "
        f"class count, {args.steps} SGD steps (lr 0.05, momentum 0.9, batch 32, random crops "
        "and flips) on the 30 samples/images32 photos with their labels.json classes; "
        + "; ".join(training_notes)
        + ". Deltas: plain local SGD (capture's local_sgd_delta), minibatches are consecutive "
        "slices. Each cell: mean over "
        f"{args.trials} random batches (images with replacement + augmentation; labels "
        "distinct, or repeated: uniform with replacement from max(2, B/4) random classes). "
        "— : the method does not apply (idlg needs B = 1, yin needs B ≤ classes). "
        "auto = idlg at B = 1, else ilrg, or bias when the model is confident (top softmax "
        "≥ 0.3 at the estimated batch-mean feature); the last column counts its choices. "
        "BN train mode and deltas: 10 and 100 classes only, to keep the run short.",
        "",
    ]
    table = "\n".join(preamble + lines) + "\n"
    sys.stdout.write(table)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table, encoding="utf-8")


if __name__ == "__main__":
    main()
