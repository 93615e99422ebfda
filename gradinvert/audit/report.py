"""``DIR/report.html`` of an audit (the page: :mod:`gradinvert.report.grid_page`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gradinvert.audit.grid import Grid
from gradinvert.audit.plan import LoadedPlan
from gradinvert.audit.store import Store
from gradinvert.io.atomic import write_text_atomic
from gradinvert.metrics import Gate


def write_report(
    loaded: LoadedPlan, grid: Grid, rows: list[dict[str, Any]], gates: list[Gate], path: Path
) -> None:
    """Write the report of the audit's rows (owner-only: it shows the batches' images)."""
    from gradinvert.report.grid_page import render_grid_report

    store = Store(path.parent)

    def grid_png(job_id: str) -> bytes | None:
        png = store.folder(job_id) / "grid.png"
        return png.read_bytes() if png.is_file() else None

    metrics = list(loaded.plan.evaluation.metrics)
    page = render_grid_report(loaded.plan.title, rows, grid.axes, gates, grid_png, metrics)
    write_text_atomic(path, page, private=True)
