"""Relative against absolute generator learning rate, on TUNING digits 0000-0003.

    .venv/bin/python benchmarks/generator_lr_check.py relative|absolute

Digits 0000-0003 are training images of the digits prior, never validation or reserved ones.
GIAS (the gias preset, digits32 prior, 300 latent + 300 weight iterations, 1 thread) on a
ResNet-18 gradient; prints each latent restart's PSNR at the end of the latent stage, the
chosen restart, the weight stage's PSNR every 100 iterations and the final PSNR/SSIM (the
figures of the README's "Search spaces and generative priors").
"""

from __future__ import annotations

import json
import sys

import torch
from common import SAMPLES
from gias_search import _scores

from gradinvert.client.capture import CaptureConfig, capture_update
from gradinvert.config import preset
from gradinvert.invert import run_attack
from gradinvert.io.images import load_images
from gradinvert.models import NORMALIZATIONS, InputSpec, build_model, model_spec


def main() -> None:
    mode = sys.argv[1]
    torch.set_num_threads(1)
    folder = SAMPLES / "digits32"
    names = [f"{i:04d}.png" for i in range(4)]
    known = json.loads((folder / "labels.json").read_text(encoding="utf-8"))
    labels = [known[n] for n in names]
    images, _ = load_images([folder / n for n in names])
    mean, std = NORMALIZATIONS["imagenet"]
    input_spec = InputSpec(tuple(images.shape[1:]), mean, std)  # type: ignore[arg-type]
    spec = model_spec("resnet18", 10, input_spec.shape)
    model = build_model(spec, init_seed=0)
    update = capture_update(
        model, spec, input_spec, images, torch.tensor(labels), CaptureConfig(seed=0)
    )
    seen: dict[str, torch.Tensor] = {}

    def hook(engine, _progress) -> None:  # noqa: ANN001
        if engine.stage == "z" and engine.iteration == engine.config.iterations:
            seen["z"] = engine.pixels().detach().clone()
        if engine.stage == "w" and engine.iteration % 100 == 0:
            psnr = _scores(engine.pixels()[0].detach(), images)[0]
            print(mode, "weight iteration", engine.iteration, sum(psnr) / 4, flush=True)

    config = preset(
        "gias",
        generator=str(SAMPLES / "priors" / "digits32.safetensors"),
        latent_iterations=300,
        iterations=300,
        generator_lr_scale=mode,
    )
    result = run_attack(update, labels, config, progress=False, on_iteration=hook)
    restarts = [sum(_scores(seen["z"][k], images)[0]) / 4 for k in range(config.seeds)]
    psnr, ssim, _ = _scores(result.images, images)
    print(mode, "latent restarts", restarts, "chosen", result.metadata["stages"][0]["chosen_seed"])
    print(mode, "final PSNR", sum(psnr) / 4, "SSIM", sum(ssim) / 4)


if __name__ == "__main__":
    main()
