"""The memory one job needs, estimated before anything runs (``audit --dry-run``), with the
factors of :mod:`gradinvert.runtime.memory` (the invert step dominates a job)."""

from __future__ import annotations

from functools import cache
from typing import Any

from gradinvert.runtime import memory

PROCESS = 1_000_000_000  # a Python process with torch loaded, about 1 GB


@cache
def _footprint(arch: str, classes: int, shape: tuple[int, int, int]) -> tuple[int, int]:
    from gradinvert.models import model_spec
    from gradinvert.models.footprint import activations_per_sample, meta_model

    model = meta_model(model_spec(arch, classes, shape))
    if model is None:
        return 0, memory.UNKNOWN_ACTIVATIONS * shape[0] * shape[1] * shape[2]
    params = sum(p.numel() for p in model.parameters())
    activations = activations_per_sample(model, shape)
    return params, activations or memory.UNKNOWN_ACTIVATIONS * shape[0] * shape[1] * shape[2]


def _shape(job: dict[str, Any], blobs: dict[str, Any]) -> tuple[int, int, int]:
    from PIL import Image

    size = job["capture"].get("size")
    if "batch" in job["inputs"]:
        from gradinvert.io.tensorfile import read_header

        shape = read_header(blobs[job["inputs"]["batch"][1]]).shapes["images"][0]
        return (int(shape[1]), size or int(shape[2]), size or int(shape[3]))
    name, digest = job["inputs"]["images"][0]
    with Image.open(blobs[digest]) as image:
        channels = 1 if image.mode in ("L", "1", "I", "F") else 3
        return (channels, size or image.height, size or image.width)


def job_memory(job: dict[str, Any], blobs: dict[str, Any]) -> int | None:
    """Bytes a simulated job needs at its peak (None: a recorded update, sized when read)."""
    if job["kind"] != "simulated":
        return None
    capture, invert = job["capture"], job["invert"]
    shape = _shape(job, blobs)
    params, activations = _footprint(capture["model"], capture["num_classes"], shape)
    batch, seeds = capture["batch_size"], invert.get("seeds", 1)
    pixels = shape[0] * shape[1] * shape[2]
    factor = memory.ACTIVATION_FACTOR[capture["mode"]]
    samples = batch * activations * factor
    per_seed_params = params * memory.PER_SEED_PARAMS
    steps = capture.get("local_steps", 0)
    if steps:
        local = capture.get("local_batch_size") or batch
        samples = steps * local * activations * factor
        per_seed_params = steps * params * memory.PER_SEED_PARAMS
    total = 3 * params * memory.FLOAT + memory.FLOAT * params
    total += (
        memory.FLOAT * seeds * (per_seed_params + samples + batch * pixels * memory.PIXEL_COPIES)
    )
    return int(PROCESS + total)
