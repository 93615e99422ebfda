"""The demo: capture → labels → invert → evaluate on the shipped sample photographs."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gradinvert.client.capture import CaptureConfig, capture_update
from gradinvert.io.atomic import write_text_atomic
from gradinvert.io.files import (
    BatchFile,
    labels_document,
    load_batch,
    load_update,
    save_batch,
    save_update,
    write_labels,
)
from gradinvert.io.images import load_images
from gradinvert.io.outputs import refuse_clobbering
from gradinvert.models import NORMALIZATIONS, InputSpec, build_model, model_spec
from gradinvert.runtime.errors import MissingInputError

Log = Callable[[str], None]
DEMO_FILES = (
    "update.safetensors",
    "truth.safetensors",
    "labels.json",
    "recon.safetensors",
    "scores.json",
    "grid.png",
)


def default_samples_dir() -> Path:
    """``samples/images32`` of the working directory, else of the source checkout."""
    for root in (Path.cwd(), Path(__file__).resolve().parents[1]):
        candidate = root / "samples" / "images32"
        if candidate.is_dir():
            return candidate
    raise MissingInputError("samples/images32 not found: run the demo from the gradinvert checkout")


@dataclass
class DemoConfig:
    """What the demo attacks and how hard it tries (defaults: about 5 minutes on 2 CPU cores)."""

    out: Path = Path("demo-out")
    samples: Path | None = None
    images: list[str] = field(
        default_factory=lambda: [
            "00_astronaut_face.png",
            "01_cat_face.png",
            "02_cup_and_saucer.png",
            "03_rocket_on_pad.png",
        ]
    )
    model: str = "convnet"
    num_classes: int = 10
    mode: str = "train"
    share_bn_stats: bool = True
    attack: str = "gradinversion"
    seeds: int = 4
    iterations: int = 1000
    seed: int = 0
    device: str = "cpu"
    # The demo's model is tiny: one CPU thread beats several (measured 77 s vs 677 s of CPU time
    # for the same run on 2 cores), so the demo sets it unless told otherwise.
    cpu_threads: int | None = 1
    # Settings over the preset. None: the preset's calibrated weights (--calibrate start) need no
    # per-model tuning; benchmarks/demo.py compares them with hand-tuned absolute weights.
    overrides: dict[str, Any] = field(default_factory=dict)


def _sample_batch(config: DemoConfig) -> tuple[torch.Tensor, list[int], list[str]]:
    folder = config.samples or default_samples_dir()
    labels_file = folder.parent / "labels.json"
    if not labels_file.exists():
        raise MissingInputError(f"{labels_file}: the samples' labels file is missing")
    known = json.loads(labels_file.read_text(encoding="utf-8"))[folder.name]
    paths = [folder / name for name in config.images]
    images, _ = load_images(paths)
    return images, [int(known[name]) for name in config.images], [str(p) for p in paths]


def run_demo(config: DemoConfig, log: Log = print, progress: bool = True) -> dict[str, Any]:
    """Run the whole chain, leaving every intermediate file in ``config.out``; return the scores."""
    from gradinvert.config import preset
    from gradinvert.invert import run_attack
    from gradinvert.labels import restore_labels
    from gradinvert.metrics import evaluate_batches
    from gradinvert.report.grid import save_result_grid

    out = config.out
    folder = config.samples or default_samples_dir()
    refuse_clobbering(
        [folder, folder.parent / "labels.json"],
        {f"--out ({name})": out / name for name in DEMO_FILES},
    )
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(config.device)
    if device.type == "cpu" and config.cpu_threads:
        torch.set_num_threads(config.cpu_threads)
    images, labels, names = _sample_batch(config)

    log(f"1/4 capture: {config.model}, {len(names)} photos, BN {config.mode} mode")
    mean, std = NORMALIZATIONS["imagenet"]
    input_spec = InputSpec(tuple(images.shape[1:]), mean, std)  # type: ignore[arg-type]
    spec = model_spec(config.model, config.num_classes, input_spec.shape)
    model = build_model(spec, init_seed=config.seed)
    capture_config = CaptureConfig(
        mode=config.mode,  # type: ignore[arg-type]
        share_bn_stats=config.share_bn_stats,
        seed=config.seed,
    )
    truth_labels = torch.tensor(labels)
    update = capture_update(model, spec, input_spec, images, truth_labels, capture_config, device)
    save_update(update, out / "update.safetensors")
    save_batch(BatchFile(images, truth_labels, {"files": names}), out / "truth.safetensors")

    # The attacker's side reads only the update file.
    update = load_update(out / "update.safetensors")
    restored = restore_labels(update)
    write_labels(labels_document(restored.labels, restored.method), out / "labels.json")
    log(f"2/4 labels: {restored.labels} ({restored.method})")

    attack = preset(
        config.attack,
        seeds=config.seeds,
        iterations=config.iterations,
        seed=config.seed,
        **config.overrides,
    )
    log(f"3/4 invert: {config.attack}, {config.seeds} seeds × {config.iterations} iterations")
    recon = run_attack(update, restored.labels, attack, device, progress=progress)
    save_batch(recon, out / "recon.safetensors")

    log("4/4 evaluate")
    truth = load_batch(out / "truth.safetensors")
    scores = evaluate_batches(recon, truth, match="mse", lpips="auto")
    write_text_atomic(out / "scores.json", json.dumps(scores, indent=2) + "\n")
    save_result_grid(scores, truth.images, recon.images, out / "grid.png")
    for warning in scores.get("warnings", []):
        log(f"note: {warning}")
    return scores
