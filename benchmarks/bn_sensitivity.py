"""Why GradInversion stays near noise on ResNet-18 in BN train mode at 32 px: how far the
gradient moves when the true batch moves a little.

    .venv/bin/python benchmarks/bn_sensitivity.py [--batch 4]

For each model and BN mode, one update of the first sample photos is captured; then the
client's gradient is recomputed (plain autograd on the restored model) at the true batch plus
Gaussian noise of standard deviation σ (in normalized input units; 0.01 ≈ 0.6/255 of a pixel)
and compared with the shared gradient by cosine similarity over all parameters. An attack can
only find the batch if this similarity still guides it from a distance; near 0 at σ = 0.01 means
that a candidate within a fraction of a grey level of the truth already looks unrelated. The
last column is the smallest per-channel batch variance at any BN layer's input (train mode),
the 1/σ_BN factor that amplifies small input changes.
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import torch
import torch.nn.functional as F
from common import RESULTS, sample_photos, write_result

from gradinvert.client.capture import CaptureConfig, capture_update
from gradinvert.models import NORMALIZATIONS, InputSpec, build_model, model_spec
from gradinvert.models.restore import model_from_update

SIGMAS = (0.001, 0.01, 0.1, 1.0)


def similarities(
    model_name: str, mode: str, batch: int, size: int
) -> tuple[list[float], float | None]:
    """Cosine similarity to the shared gradient per σ, and the smallest BN batch variance."""
    images, label_list = sample_photos(batch, size)
    labels = torch.tensor(label_list)
    mean, std = NORMALIZATIONS["imagenet"]
    input_spec = InputSpec(tuple(images.shape[1:]), mean, std)  # type: ignore[arg-type]
    spec = model_spec(model_name, 10, input_spec.shape)
    capture = CaptureConfig(mode=mode, share_bn_stats=mode == "train", seed=0)  # type: ignore[arg-type]
    update = capture_update(
        build_model(spec, init_seed=0), spec, input_spec, images, labels, capture
    )
    model = model_from_update(update)
    model.train(mode == "train")
    params = [p for n, p in model.named_parameters() if n in update.update]
    target = torch.cat([update.update[n].flatten() for n, _ in model.named_parameters()])
    clean = input_spec.normalize(images)
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(1))
    result = []
    for sigma in SIGMAS:
        state = {k: v.clone() for k, v in model.state_dict().items()}
        grads = torch.autograd.grad(F.cross_entropy(model(clean + sigma * noise), labels), params)
        model.load_state_dict(state)  # train-mode forwards move the running statistics
        flat = torch.cat([g.flatten() for g in grads])
        result.append(float(F.cosine_similarity(flat.double(), target.double(), dim=0)))
    smallest = None
    if update.bn_stats:
        smallest = min(float(var.min()) for _, var in update.bn_stats.values())
    return result, smallest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="4,8", help="batch sizes, comma-separated")
    parser.add_argument("--size", type=int, default=32, choices=[32, 64, 224])
    parser.add_argument("--out", type=Path, default=RESULTS / "bn_sensitivity.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    lines = [
        f"# Gradient similarity near the true batch (samples/images{args.size}, random-init "
        "models)",
        "",
        f"{platform.machine()} CPU, torch {torch.__version__}; {args.size} px; cosine "
        "similarity between the gradient at truth + σ·N(0, 1) (normalized input units) and the "
        "shared gradient.",
        "",
        "| model | batch | BN mode | "
        + " | ".join(f"σ = {s:g}" for s in SIGMAS)
        + " | smallest BN batch variance |",
        "|---|---|---|" + "---|" * (len(SIGMAS) + 1),
    ]
    for model_name in ("resnet18", "convnet"):
        for batch in [int(b) for b in args.batches.split(",")]:
            for mode in ("eval", "train"):
                sims, smallest = similarities(model_name, mode, batch, args.size)
                cells = " | ".join(f"{s:.3f}" for s in sims)
                tail = "–" if smallest is None else f"{smallest:.2g}"
                lines.append(f"| {model_name} | {batch} | {mode} | {cells} | {tail} |")
                print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    write_result(text, args.out)


if __name__ == "__main__":
    main()
