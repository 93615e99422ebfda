"""``DIR/report.html`` of an audit and its plots as files, ``DIR/plots/<axis>.png`` (the page:
:mod:`gradinvert.report.grid_page`)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from gradinvert.audit.grid import Grid
from gradinvert.audit.plan import LoadedPlan
from gradinvert.audit.store import Store
from gradinvert.io.atomic import atomic_path, write_text_atomic
from gradinvert.metrics import Gate


def write_report(
    loaded: LoadedPlan, grid: Grid, rows: list[dict[str, Any]], gates: list[Gate], path: Path
) -> None:
    """Write the report of the audit's rows (owner-only: it shows the batches' images) and, beside
    it, each swept axis's plot (scores only) as ``plots/<axis>.png``."""
    from gradinvert.report.grid_page import axis_plots, render_grid_report

    store = Store(path.parent)

    def grid_png(job_id: str) -> bytes | None:
        png = store.folder(job_id) / "grid.png"
        return png.read_bytes() if png.is_file() else None

    metrics = list(loaded.plan.evaluation.metrics)
    plots = axis_plots(rows, grid.axes, gates, metrics)
    for axis, png in plots.items():
        with atomic_path(path.parent / "plots" / f"{plot_name(axis)}.png") as tmp:
            tmp.write_bytes(png)
    page = render_grid_report(loaded.plan.title, rows, grid.axes, gates, grid_png, metrics, plots)
    write_text_atomic(path, page, private=True)


def plot_name(axis: str) -> str:
    """An axis's plot file name: its dotted name with anything but letters, digits, ``.``, ``_``
    and ``-`` replaced (axis names come from the plan's own fields)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", axis)
