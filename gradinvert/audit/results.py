"""``DIR/results.csv`` and ``DIR/results.json``: one row per job of the grid (in grid order),
every setting of its cell and every score, the bars it trips and whether its attack ran below
its preset's iteration budget. Rows hold no timings, so the same audit gives the same bytes."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from gradinvert.audit.grid import Grid
from gradinvert.audit.store import Store
from gradinvert.config.attack import PRESETS
from gradinvert.io.atomic import write_text_atomic
from gradinvert.metrics.gates import Gate, check_gates, gate_figure

SCORES = ("psnr", "psnr_registered", "ssim", "lpips", "label_acc", "iip")


def preset_budget(preset: str) -> int | None:
    """The iterations the preset's paper ran (None: a learned inverter, no budget)."""
    if preset not in PRESETS:
        return None
    from gradinvert.config.attack import AttackConfig

    settings = {**PRESETS[preset].settings}
    return int(settings.get("iterations", AttackConfig.model_fields["iterations"].default))


def job_row(job: dict[str, Any], store: Store, gates: list[Gate]) -> dict[str, Any]:
    """The row of one grid cell's job."""
    invert = job["invert"]
    budget = preset_budget(invert["attack"])
    row: dict[str, Any] = {"job": job["id"], "attack": job["attack_name"], "batch": job["batch"]}
    row.update(job["cell"])
    row.update({f"attack.{k}": v for k, v in job["attack"].items()})
    row["iterations"] = invert.get("iterations")
    row["seeds"] = invert.get("seeds")
    row["seed"] = invert.get("seed")
    row["preset_iterations"] = budget
    row["below_budget"] = budget is not None and int(invert.get("iterations", 0)) < budget
    scores = store.scores(job["id"])
    error = store.error(job["id"])
    row["status"] = "done" if store.done(job["id"]) else "failed" if error else "not run"
    summary = (scores or {}).get("summary") or {}
    for metric in SCORES:
        row[metric] = gate_figure(summary, metric) if summary else None
    restoration = (scores or {}).get("label_restoration") or {}
    row["label_method"] = restoration.get("method")
    if summary:
        row["leaks"] = "; ".join(check_gates(summary, gates))
    else:
        row["leaks"] = None
    row["error"] = (error or {}).get("message")
    return row


def result_rows(grid: Grid, store: Store, gates: list[Gate]) -> list[dict[str, Any]]:
    """Every job's row, in grid order."""
    return [job_row(job, store, gates) for job in grid.jobs]


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True)
    return value


def write_results(rows: list[dict[str, Any]], out: Path) -> None:
    """``results.json`` and ``results.csv`` under ``out`` (atomically)."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_value(row.get(k)) for k in columns})
    write_text_atomic(out / "results.csv", buffer.getvalue())
    write_text_atomic(out / "results.json", json.dumps(rows, indent=1, sort_keys=False) + "\n")
