"""Tiny audit plans for the audit tests: a folder of 16 px copies of four sample photos, a
plan writer, and the library run of a plan."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "images32"
NAMES = [
    "00_astronaut_face.png",
    "01_cat_face.png",
    "02_cup_and_saucer.png",
    "03_rocket_on_pad.png",
]

TINY = """
schema_version = 1
title = "tiny"
[victim]
model = "convnet"
size = 16
mode = "eval"
{victim}
[data]
images = "imgs"
batch_size = {batch_size}
batches = {batches}
[defense]
noise = {noise}
[[attack]]
preset = "ig"
iterations = {iterations}
seeds = 1
[resources]
device = "cpu"
{extra}
"""


def make_images(folder: Path) -> Path:
    """Four sample photos and their labels under ``folder/imgs``."""
    images = folder / "imgs"
    images.mkdir(parents=True, exist_ok=True)
    labels = json.loads((SAMPLES / "labels.json").read_text())
    for name in NAMES:
        shutil.copy(SAMPLES / name, images / name)
    (images / "labels.json").write_text(json.dumps({n: labels[n] for n in NAMES}))
    return images


def write_plan(folder: Path, **values: Any) -> Path:
    """A tiny plan in ``folder`` (with its images): defaults 2 noise levels × 1 batch."""
    make_images(folder)
    fields = {
        "victim": "",
        "batch_size": 1,
        "batches": 1,
        "noise": "[0.0, 0.01]",
        "iterations": 2,
        "extra": "",
    }
    fields.update(values)
    path = folder / "plan.toml"
    path.write_text(TINY.format(**fields))
    return path


def run_plan(plan: Path, out: Path, **settings: Any) -> Any:
    """The library run of ``plan`` (no CLI): grid, tally, stop flag."""
    from gradinvert.audit.plan import load_plan
    from gradinvert.audit.runner import run_audit
    from gradinvert.config.audit import AuditSettings

    return run_audit(load_plan(plan), out, AuditSettings(**settings), log=lambda m: None)


def job_files(out: Path) -> dict[str, bytes]:
    """Every output file of every finished job, by relative path (no timings)."""
    found = {}
    for path in sorted((out / "jobs").rglob("*")):
        if path.is_file() and path.name not in ("done.json", "error.json"):
            found[str(path.relative_to(out))] = path.read_bytes()
    return found
