"""Why trained victims matter: label restoration and inversion against the shipped convnet
before training (epoch 0) and after 5 epochs on the tuning digits.

    python benchmarks/victims_attack.py [--epochs 0,5] [--attacks ig] [--iterations 200]
        [--seeds 2] [--start 1400] [--batch 4] [--out benchmarks/results/victims_attack]

Victims: samples/victims/convnet-digits32-epochN.safetensors (samples/train_victims.py; epoch 0
is the seeded init). Data (DESIGN.md §8): validation digits ``start … start+batch-1`` of
samples/digits32 (default 1400-1403, the first validation batch, not picked), never a training
or reserved digit. Each victim runs the commands a user types: ``capture`` (one gradient, BN in
eval mode, ``--normalize imagenet`` as trained), ``labels`` (``auto``, scored against the truth),
``invert`` with the restored labels, ``evaluate`` (PSNR, SSIM after matching). One batch and few
iterations: a quick look, not a budget that shows what the attack can do.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, SAMPLES, write_result  # noqa: E402

from gradinvert.models.victims import read_victim_info  # noqa: E402

VICTIMS = SAMPLES / "victims"


def gradinvert(*args: str) -> None:
    """One gradinvert command, as a user runs it; stderr kept for a failure."""
    command = [sys.executable, "-m", "gradinvert", *args]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr}")


def run_victim(epoch: int, args: argparse.Namespace, work: Path) -> list[dict]:
    weights = VICTIMS / f"convnet-digits32-epoch{epoch}.safetensors"
    info = read_victim_info(weights) or {}
    update, truth, labels = work / "u.safetensors", work / "t.safetensors", work / "labels.json"
    gradinvert(
        "capture", "--model", "convnet", "--weights", str(weights),
        "--images", str(SAMPLES / "digits32"), "--start", str(args.start),
        "--batch-size", str(args.batch), "--seed", "0", "--device", "cpu",
        "--out", str(update), "--truth", str(truth),
    )  # fmt: skip
    gradinvert("labels", str(update), "--truth", str(truth), "--out", str(labels))
    document = json.loads(labels.read_text())
    rows = []
    for attack in args.attacks.split(","):
        recon, scores = work / f"r-{attack}.safetensors", work / f"s-{attack}.json"
        started = time.perf_counter()
        gradinvert(
            "invert", str(update), "--attack", attack, "--labels", str(labels),
            "--iterations", str(args.iterations), "--seeds", str(args.seeds),
            "--seed", "0", "--device", "cpu", "--no-progress", "--out", str(recon),
        )  # fmt: skip
        seconds = time.perf_counter() - started
        gradinvert("evaluate", str(recon), "--truth", str(truth), "--lpips", "off",
                   "--json", str(scores))  # fmt: skip
        summary = json.loads(scores.read_text())["summary"]
        rows.append(
            {
                "epoch": epoch,
                "victim_val_accuracy": info["val_accuracy"],
                "attack": attack,
                "label_method": document["method"],
                "labels": document["labels"],
                "truth": document["truth"],
                "label_accuracy": document["accuracy"],
                "psnr": summary["psnr"]["mean"],
                "ssim": summary["ssim"]["mean"],
                "invert_seconds": round(seconds, 1),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def table(rows: list[dict], args: argparse.Namespace, command: str) -> str:
    lines = [
        "# Trained vs untrained victim: labels and inversion",
        "",
        f"Made by `{command}` (nice -n 10; 2-core CPU shared with other jobs, load average "
        f"{os.getloadavg()[0]:.1f} at the end; {platform.processor() or platform.machine()}).",
        "",
        "Victim: convnet from samples/victims (epoch 0 = seeded init; its accuracy on the 100 "
        "validation digits from the file's metadata). Batch: validation digits "
        f"{args.start}-{args.start + args.batch - 1} of samples/digits32, one gradient, BN in "
        "eval mode. Labels: `gradinvert labels` "
        f"(auto). Attack: {args.iterations} iterations × {args.seeds} seeds with the restored "
        "labels; PSNR/SSIM means over the batch after matching.",
        "",
        "| epoch | victim val acc | attack | label method | restored | truth | label acc | "
        "PSNR (dB) | SSIM | invert (s) |",
        "|---:|---:|---|---|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['epoch']} | {r['victim_val_accuracy']:.2f} | {r['attack']} | "
            f"{r['label_method']} | {r['labels']} | "
            f"{sorted(r['truth'])} | {r['label_accuracy']:.2f} | {r['psnr']:.2f} | "
            f"{r['ssim']:.3f} | {r['invert_seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", default="0,5")
    parser.add_argument("--attacks", default="ig")
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--start", type=int, default=1400)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--out", type=Path, default=RESULTS / "victims_attack")
    args = parser.parse_args()
    if args.start < 1400 or args.start + args.batch > 1500:
        raise SystemExit("--start/--batch must stay within the validation digits 1400-1499")
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for epoch in (int(e) for e in args.epochs.split(",")):
            work = Path(tmp) / f"epoch{epoch}"
            work.mkdir()
            rows += run_victim(epoch, args, work)
    command = "python benchmarks/victims_attack.py " + " ".join(sys.argv[1:])
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=2) + "\n")
    write_result(table(rows, args, command.strip()), args.out.with_suffix(".md"))


if __name__ == "__main__":
    main()
