"""Train the victims an FL audit attacks: convnet and cifar-resnet18 on the tuning digits.

    python samples/train_victims.py                                   # both models -> build/victims
    python samples/train_victims.py --models convnet --out samples/victims   # the shipped ones
    python samples/train_victims.py --report benchmarks/results/victims.md   # and the figures

Data (samples/splits.json, DESIGN.md §8): the model trains on the ``digits.prior_training``
range of samples/digits32 (0000-1399, the tuning part) and is scored on the ``validation`` range
(1400-1499). Files are named from those ranges, never by listing the folder; digits 1500 and up
are reserved and never read (nor written into samples/ at all).

Checkpoints after 0, 1 and 5 epochs (``--epochs``) as ``ARCH-digits32-epochN.safetensors``:
``gradinvert capture --model ARCH --weights FILE`` (default ``--normalize imagenet``, as trained)
attacks them. The library call is :func:`gradinvert.models.victims.train_victim`; this script
only picks the data and writes the summary. Same command twice, same machine, same ``--threads``:
byte-identical files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

from gradinvert.io.images import load_images
from gradinvert.models.victims import VictimRecipe, train_victim

SAMPLES = Path(__file__).resolve().parent
ROOT = SAMPLES.parent
DIGITS = SAMPLES / "digits32"
RESERVED_FROM = 1500  # load_digits() indices 1500 and up: independent evaluation only
DATA_NAME = "digits32"


def digit_range(split: str) -> range:
    """The indices of a digits split of samples/splits.json (``prior_training``: the tuning
    part, ``validation``), checked to stay below the reserved indices."""
    splits = json.loads((SAMPLES / "splits.json").read_text(encoding="utf-8"))["digits"]
    first, last = (int(x) for x in splits[split].split("-"))
    if last >= RESERVED_FROM:
        raise SystemExit(f"splits.json digits.{split} reaches reserved index {last}")
    return range(first, last + 1)


def digit_files(split: str, limit: int | None = None) -> list[Path]:
    """The files of a digits split, in index order (the first ``limit`` when given)."""
    indices = digit_range(split)
    if limit is not None:
        indices = indices[:limit]
    return [DIGITS / f"{i:04d}.png" for i in indices]


def load_digits(split: str, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Images in [0, 1] and labels of a digits split."""
    files = digit_files(split, limit)
    known = json.loads((DIGITS / "labels.json").read_text(encoding="utf-8"))
    images, _ = load_images(files)
    labels = torch.tensor([int(known[f.name]) for f in files], dtype=torch.long)
    return images, labels


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def machine() -> str:
    """The CPU model and what torch runs on, in one line."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}; torch {torch.__version__}; Python {platform.python_version()}"


def report(
    rows: list[dict], times: dict[str, float], load: tuple[float, ...], args: argparse.Namespace
) -> str:
    """The markdown summary: one row per checkpoint, training time per model."""
    n_train = len(digit_files("prior_training", args.train_limit))
    n_val = len(digit_files("validation", args.val_limit))
    command = "python samples/train_victims.py " + shlex.join(sys.argv[1:])
    lines = [
        "# Trained victims: accuracy of each checkpoint",
        "",
        f"Made by `{command}` (nice -n 10, on a machine shared with other jobs).",
        "",
        f"Training: the first {n_train} digits of samples/digits32 (0000-{n_train - 1:04d}, the "
        f"tuning part); scored on {n_val} validation digits (1400-{1399 + n_val}); digits 1500+ "
        f"are reserved and never read. SGD lr {args.lr}, momentum 0.9, weight decay 5e-4, batch "
        f"{args.batch_size}, constant rate, seed {args.seed}, {args.threads} threads, "
        "inputs normalized as `--normalize imagenet`. Accuracies with BatchNorm in eval mode "
        "(running statistics); chance is 0.10.",
        "",
        "| model | epoch | SGD steps | train loss | train acc | validation acc | file | "
        "MB | sha256 (first 12) |",
        "|---|---:|---:|---:|---:|---:|---|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['epoch']} | {r['steps']} | {r['train_loss']:.4f} | "
            f"{r['train_accuracy']:.3f} | {r['val_accuracy']:.3f} | `{r['file']}` | "
            f"{r['mb']:.2f} | `{r['sha256'][:12]}` |"
        )
    lines += ["", "| model | training time, all epochs (s) |", "|---|---:|"]
    lines += [f"| {model} | {seconds:.0f} |" for model, seconds in times.items()]
    lines += [
        "",
        f"Machine: {machine()}; {os.cpu_count()} cores; load average {load[0]:.1f} at the "
        f"start and {os.getloadavg()[0]:.1f} at the end (other jobs share the cores).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["convnet", "cifar-resnet18"])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "victims")
    parser.add_argument("--epochs", default="0,1,5", help="checkpoints after these epochs")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0, help="init seed and shuffling seed")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (results depend)")
    parser.add_argument("--train-limit", type=int, default=None, help="first N tuning digits")
    parser.add_argument("--val-limit", type=int, default=None, help="first N validation digits")
    parser.add_argument("--report", type=Path, default=None, help="write a markdown summary")
    args = parser.parse_args(argv)
    load = os.getloadavg()
    epochs = tuple(int(e) for e in args.epochs.split(","))
    train = load_digits("prior_training", args.train_limit)
    validation = load_digits("validation", args.val_limit)
    rows: list[dict] = []
    times: dict[str, float] = {}
    for arch in args.models:
        recipe = VictimRecipe(
            arch=arch,
            epochs=epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            seed=args.seed,
            threads=args.threads,
        )
        started = time.perf_counter()
        checkpoints = train_victim(recipe, train, args.out, validation, DATA_NAME)
        times[arch] = time.perf_counter() - started
        for c in checkpoints:
            rows.append(
                {
                    "model": arch,
                    "epoch": c.epoch,
                    "steps": c.steps,
                    "train_loss": c.train_loss,
                    "train_accuracy": c.train_accuracy,
                    "val_accuracy": c.val_accuracy,
                    "file": c.path.name,
                    "mb": c.path.stat().st_size / 1e6,
                    "sha256": sha256(c.path),
                }
            )
    if args.report is not None:
        text = report(rows, times, load, args)
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(text, encoding="utf-8")
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
