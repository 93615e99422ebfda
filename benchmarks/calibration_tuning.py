"""How the calibrated GradInversion weights were chosen: on TUNING photos only.

    .venv/bin/python benchmarks/calibration_tuning.py MODEL ITERATIONS SEEDS SETTINGS...
    e.g. convnet 500 4 '{"gradient_weight": 1, "bn_first": 10, "calibrate": "none"}' \
         '{"calibrate": "start", "gradient_weight": 1, "bn": 0.01, "bn_first": 3}'

The client: MODEL (``convnet`` or ``resnet18``, seeded 0, 10 classes) in BN train mode with the
batch's BN statistics shared, one gradient of the mean cross-entropy on the first 4 photos of
the sorted ``images32.tuning`` list of samples/splits.json (32 px). Each SETTINGS (a JSON object
of attack settings over the ``gradinversion`` preset) runs ITERATIONS × SEEDS with labels
restored by the tool; one line per setting: PSNR / SSIM after Hungarian matching (as
benchmarks/gias_search.py), wall seconds. Prints the flat own-colour baseline first.
"""

from __future__ import annotations

import json
import sys
import time

import torch
from common import flat_own_colour, split_photos
from gias_search import _scores

from gradinvert.client.capture import CaptureConfig, capture_update
from gradinvert.config import preset
from gradinvert.invert import run_attack
from gradinvert.models import NORMALIZATIONS, InputSpec, build_model, model_spec


def main() -> None:
    torch.set_num_threads(1)
    model_name, iterations, seeds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    images, labels, _ = split_photos("tuning", 4)
    mean, std = NORMALIZATIONS["imagenet"]
    input_spec = InputSpec((3, 32, 32), mean, std)
    spec = model_spec(model_name, 10, input_spec.shape)
    model = build_model(spec, init_seed=0)
    capture = CaptureConfig(mode="train", share_bn_stats=True, seed=0)
    update = capture_update(model, spec, input_spec, images, torch.tensor(labels), capture)
    flat = flat_own_colour(images)
    print(f"flat own colour {sum(_scores(flat, images)[0]) / 4:.2f} dB", flush=True)
    for text in sys.argv[4:]:
        settings = json.loads(text)
        config = preset("gradinversion", iterations=iterations, seeds=seeds, **settings)
        start = time.perf_counter()
        result = run_attack(update, None, config, "cpu", progress=False)
        p, s, _ = _scores(result.images, images)
        print(
            f"{text}: {sum(p) / len(p):.2f} dB, SSIM {sum(s) / len(s):.3f}, "
            f"{time.perf_counter() - start:.0f} s",
            flush=True,
        )


if __name__ == "__main__":
    main()
