"""The shipped generative priors: how each was trained, its size, and a checkerboard measure.

    .venv/bin/python benchmarks/priors_summary.py [--count 256] [--threads 1]

For every generator file in samples/priors/ (each with the folder of images it was trained on):
its architecture, the training record it carries (images, epochs, steps, wall time, device),
its size on disk, and two numbers on ``--count`` samples from fixed latents (seed 0) beside the
same numbers on as many of its training images (the first ones by name):

* checkerboard: the periodic pattern a stride-2 transposed convolution stamps on its output
  (Odena et al. 2016) shows as isolated peaks of the power spectrum at the frequencies of
  periods 2, 4 and 8 px (k·N/8 cycles per image along each axis, DC left out). For each such
  frequency, the mean power spectrum of the images' luminance (each image's mean removed) is
  divided by the mean of its 8 neighbours; the score is the geometric mean of those ratios.
  Training images, whose spectra fall off smoothly, score near 1; a checkerboard scores well
  above.
* spread: the mean distance between two images (root of the mean squared pixel difference,
  [0, 1] pixels) over all pairs; a generator that makes the same few images (mode collapse)
  has a far smaller spread than its training images.

Writes benchmarks/results/priors.md. The sample grids are the PNGs next to each prior.
"""

from __future__ import annotations

import argparse
import math
import platform
from pathlib import Path

import torch
from common import RESULTS, SAMPLES, write_result

from gradinvert.generators import load_generator
from gradinvert.generators.store import load_generator_file
from gradinvert.io.images import expand_image_paths, load_images

PRIORS = SAMPLES / "priors"
# prior file stem -> the images it was trained on (a folder, or file names under one)
TRAINED_ON: dict[str, list[Path]] = {
    "digits32": [SAMPLES / "digits32" / f"{i:04d}.png" for i in range(1400)],
    "patches32": [SAMPLES / "patches32"],
    "photos32": [SAMPLES / "corpus32"],
    "photos64": [SAMPLES / "corpus64"],
}
PERIODS = (2, 4, 8)


def grid_frequencies(size: int) -> list[tuple[int, int]]:
    """Frequencies (u, v) of the periods in ``PERIODS``: multiples of size/8 along each axis."""
    step = size // max(PERIODS)
    return [(u, v) for u in range(0, size, step) for v in range(0, size, step) if (u, v) != (0, 0)]


def checkerboard_score(images: torch.Tensor) -> float:
    """Geometric mean over ``grid_frequencies`` of power / mean power of the 8 neighbours."""
    grey = images.double().mean(dim=1)
    grey = grey - grey.mean(dim=(1, 2), keepdim=True)
    power = torch.fft.fft2(grey).abs().pow(2).mean(dim=0)
    size = power.shape[0]
    logs = []
    for u, v in grid_frequencies(size):
        around = [
            power[(u + du) % size, (v + dv) % size]
            for du in (-1, 0, 1)
            for dv in (-1, 0, 1)
            if (du, dv) != (0, 0)
        ]
        logs.append(math.log(float(power[u, v]) / float(torch.stack(around).mean())))
    return math.exp(sum(logs) / len(logs))


def spread(images: torch.Tensor) -> float:
    """Mean over pairs of the RMS pixel difference between two images."""
    flat = images.flatten(1).double()
    distances = torch.cdist(flat, flat) / math.sqrt(flat.shape[1])
    count = flat.shape[0]
    return float(distances.sum() / (count * (count - 1)))


def summarize(path: Path, count: int) -> list[str]:
    stored = load_generator_file(path)
    arch, training = stored.arch, stored.training
    size = int(arch["size"])
    generator = load_generator(str(path), (int(arch["channels"]), size, size))
    latents = generator.sample_latents(count, torch.Generator().manual_seed(0))
    with torch.no_grad():
        samples = ((generator.module(latents) + 1) / 2).clamp(0, 1)
    cells = [
        f"`{path.name}`",
        f"{arch.get('upsample', 'transpose')}, ngf {arch['ngf']}, {size} px",
        str(training.get("images", "?")),
        f"{training.get('epochs', '?')} ({training.get('steps', '?')} steps)",
        f"{training.get('seconds', 0) / 60:.0f} min ({training.get('device', '?')})",
        f"{path.stat().st_size / 1e6:.1f}",
        f"{checkerboard_score(samples):.2f}",
        f"{spread(samples):.3f}",
    ]
    sources = TRAINED_ON.get(path.stem)
    if sources and all(s.exists() for s in sources):
        real, _ = load_images(expand_image_paths(sources)[:count], size=size)
        cells += [f"{checkerboard_score(real):.2f}", f"{spread(real):.3f}"]
    else:
        cells += ["–", "–"]
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lines = [
        "# Shipped generative priors (samples/priors/)",
        "",
        f"Written by `benchmarks/priors_summary.py --count {args.count}` (see its docstring). "
        "Training time and steps are the files' own `training` records; checkerboard and "
        f"spread on {args.count} samples from fixed latents (seed 0) and on the first "
        f"{args.count} training images.",
        "",
        "| prior | up-stages, width | images | epochs (steps) | training time | MB | "
        "checkerboard (samples) | spread (samples) | checkerboard (training images) "
        "| spread (training images) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for path in sorted(PRIORS.glob("*.safetensors")):
        lines.append("| " + " | ".join(summarize(path, args.count)) + " |")
        print(lines[-1], flush=True)
    lines += ["", f"Machine: {platform.machine()}, torch {torch.__version__}, CPU."]
    write_result("\n".join(lines), RESULTS / "priors.md")


if __name__ == "__main__":
    main()
