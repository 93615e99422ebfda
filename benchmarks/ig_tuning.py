"""How the ``ig`` preset's settings were chosen: on TUNING photos only (issue 12).

    .venv/bin/python benchmarks/ig_tuning.py --batch 1 --start 0 [--iterations 1000]
        [--seeds 4] [--out results/ig_tuning_b1_s0.md] SETTINGS...
    e.g. ... '{"tv": 0.01}' '{"tv": 0.05}' '{"tv": 0.2}'

The client, as in benchmarks/vs_breaching.py but on other photos: torchvision
``resnet18(num_classes=10)`` seeded 0, BN in eval mode, one gradient of the mean cross-entropy on
photos ``start … start+batch-1`` of the sorted ``images32.tuning`` list of samples/splits.json
(32 px; no crop of a validation photo). Each SETTINGS (a JSON object of attack settings over
the ``ig`` preset) runs ``--iterations`` × ``--seeds`` with the labels restored by the tool and
the preset's pick (lowest gradient distance). One row per setting: PSNR / SSIM after Hungarian
matching on MSE (the metric code of ``evaluate``), mean over the batch, and wall seconds; the
flat own-colour baseline in the header. The truth only scores; it never picks.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from common import RESULTS, flat_own_colour, split_photos, write_result
from gias_search import _scores

from gradinvert.client.capture import CaptureConfig, capture_update
from gradinvert.config import preset
from gradinvert.invert import run_attack
from gradinvert.models import NORMALIZATIONS, InputSpec, build_model, model_spec


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("settings", nargs="+", help="JSON objects of settings over the preset")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--start", type=int, default=0, help="offset into the tuning list")
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = args.out or RESULTS / f"ig_tuning_b{args.batch}_s{args.start}.md"

    images, labels, names = split_photos("tuning", args.batch, start=args.start)
    norm_mean, norm_std = NORMALIZATIONS["imagenet"]
    input_spec = InputSpec(tuple(images.shape[1:]), norm_mean, norm_std)  # type: ignore[arg-type]
    spec = model_spec("resnet18", 10, input_spec.shape)
    model = build_model(spec, init_seed=0)
    update = capture_update(
        model, spec, input_spec, images, torch.tensor(labels), CaptureConfig(mode="eval", seed=0)
    )
    flat = flat_own_colour(images)
    flat_psnr = mean(_scores(flat, images)[0])

    rows = []
    for text in args.settings:
        settings = json.loads(text)
        config = preset("ig", iterations=args.iterations, seeds=args.seeds, **settings)
        start = time.perf_counter()
        result = run_attack(update, None, config, "cpu", progress=False)
        seconds = time.perf_counter() - start
        p, s, _ = _scores(result.images, images)
        right = sorted(int(x) for x in result.labels) == sorted(labels)
        rows.append(
            f"| `{text}` | {mean(p):.2f} | {mean(s):.3f} | {'right' if right else 'WRONG'} | "
            f"{seconds:.0f} |"
        )
        print(rows[-1], flush=True)

    header = [
        f"# ig preset tuning: batch {args.batch}, tuning photos {', '.join(names)}",
        "",
        f"{platform.machine()} CPU, {torch.get_num_threads()} torch thread(s), torch "
        f"{torch.__version__}. resnet18(num_classes=10) seeded 0, eval mode, one gradient of the "
        f"mean cross-entropy, labels restored by the tool; ig preset with each row's settings, "
        f"{args.iterations} iterations × {args.seeds} seeds, output picked by gradient distance. "
        f"Flat own-colour baseline: {flat_psnr:.2f} dB. Script: benchmarks/ig_tuning.py.",
        "",
        "| settings over `ig` | PSNR (dB) | SSIM | labels | s |",
        "|---|---|---|---|---|",
    ]
    write_result("\n".join(header + rows) + "\n", out)


if __name__ == "__main__":
    main()
