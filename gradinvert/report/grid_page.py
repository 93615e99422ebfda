"""The report of an audit grid (``gradinvert audit``): the verdict and what it rests on, one
row per job, a plot per swept axis and each job's image grid — one self-contained HTML page."""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

from gradinvert import __version__
from gradinvert.metrics import Gate
from gradinvert.report.axis_plot import axis_plot_png
from gradinvert.report.page import STYLE, data_uri

MAX_GRIDS = 200  # image grids shown; the rest are in DIR/jobs/<id>/grid.png
SCORE_COLUMNS = (("psnr", 2), ("ssim", 3), ("lpips", 3), ("label_acc", 2))
EXTRA_STYLE = ".weak { color: #b26a00; font-weight: bold; } td.flag { color: #b26a00; }"


def _cell(value: Any, digits: int = 3) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if digits else f"{value:g}"
    return html.escape(str(value))


def rests_on(rows: list[dict[str, Any]]) -> list[str]:
    """One line per attack: the budgets and seeds its finished cells ran, against its preset's."""
    lines = []
    for attack in dict.fromkeys(row["attack"] for row in rows):
        mine = [r for r in rows if r["attack"] == attack and r["status"] == "done"]
        if not mine:
            lines.append(f"{attack}: no finished cell")
            continue
        iterations = sorted({r["iterations"] for r in mine if r["iterations"] is not None})
        seeds = sorted({r["seeds"] for r in mine if r["seeds"] is not None})
        seed = sorted({r["seed"] for r in mine if r["seed"] is not None})
        budget = mine[0]["preset_iterations"]
        below = sum(bool(r["below_budget"]) for r in mine)
        text = (
            f"{attack}: {', '.join(map(str, iterations))} iterations, {', '.join(map(str, seeds))} "
            f"restarts, seed {', '.join(map(str, seed))}"
        )
        if budget is not None:
            text += f" (its preset's budget: {budget} iterations"
            text += f"; {below} of {len(mine)} cells ran below it)" if below else ")"
        lines.append(text)
    return lines


def verdict_html(rows: list[dict[str, Any]], gates: list[Gate]) -> str:
    """The verdict, never a bare PASS: what leaked, or what the absence of leakage rests on."""
    basis = "".join(f"<li>{html.escape(line)}</li>" for line in rests_on(rows))
    basis = f"<p>It rests on:</p><ul>{basis}</ul>"
    unfinished = [r for r in rows if r["status"] != "done"]
    unscored = [r for r in rows if r["status"] == "done" and r["leaks"] is None]
    note = ""
    if unfinished:
        note += (
            f'<p class="fail">{len(unfinished)} of {len(rows)} cells did not finish '
            "(failed or not run): no verdict covers them.</p>"
        )
    if unscored:
        note += (
            f'<p class="weak">{len(unscored)} of {len(rows)} cells have no truth to score '
            "against (recorded updates): reconstructions only, no verdict covers them.</p>"
        )
    if not gates:
        return '<p class="note" id="verdict">No bars given (--fail-above): no verdict.</p>' + basis
    bars = ", ".join(str(g) for g in gates)
    leaking = [r for r in rows if r["leaks"]]
    if leaking:
        text = f"LEAKS: {len(leaking)} of {len(rows)} cells leak above the bars ({bars})"
        return f'<p id="verdict" class="fail">{html.escape(text)}</p>{note}{basis}'
    done = [r for r in rows if r["status"] == "done" and r["leaks"] is not None]
    below = [r for r in done if r["below_budget"]]
    text = f"No leak above the bars ({bars}) in {len(done)} finished cells"
    if below:
        text += (
            f" — weak evidence: {len(below)} of them ran their attack below its preset's "
            "iteration budget, and a short attack failing says little about a full one"
        )
        css = "weak"
    else:
        text += " — at their presets' full budgets; stronger attacks may still leak"
        css = "pass"
    return f'<p id="verdict" class="{css}">{html.escape(text)}</p>{note}{basis}'


def table_html(rows: list[dict[str, Any]], axes: list[str]) -> str:
    head = ["job", *axes, "iterations", "below budget"]
    head += [name for name, _ in SCORE_COLUMNS] + ["status", "leaks"]
    body = []
    for row in rows:
        cells = [f'<td class="name">{html.escape(row["job"][:8])}</td>']
        cells += [f"<td>{_cell(row.get(a), 0)}</td>" for a in axes]
        cells.append(f"<td>{_cell(row['iterations'])}</td>")
        flag = "flag" if row["below_budget"] else ""
        cells.append(f'<td class="{flag}">{_cell(row["below_budget"])}</td>')
        cells += [f"<td>{_cell(row.get(n), d)}</td>" for n, d in SCORE_COLUMNS]
        cells.append(f"<td>{_cell(row['status'])}</td>")
        css = "fail" if row["leaks"] else ""
        cells.append(f'<td class="{css}">{_cell(row["leaks"] or row.get("error"))}</td>')
        body.append('<tr class="run">' + "".join(cells) + "</tr>")
    header = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    return f'<table id="runs"><tr>{header}</tr>{"".join(body)}</table>'


def swept_axes(axes: dict[str, list[Any]]) -> list[str]:
    """The axes a plot is drawn against (every axis but the batch number)."""
    return [a for a in axes if a != "batch"]


def axis_plots(
    rows: list[dict[str, Any]],
    axes: dict[str, list[Any]],
    gates: list[Gate],
    metrics: list[str] | None = None,
) -> dict[str, bytes]:
    """Swept axis → the PNG of its plot (one panel per metric, one line per value of the other
    swept axes)."""
    swept = swept_axes(axes)
    panels = metrics or ["psnr", "ssim", "label_acc"]
    return {
        axis: axis_plot_png(rows, axis, axes[axis], [o for o in swept if o != axis], gates, panels)
        for axis in swept
    }


def render_grid_report(
    title: str,
    rows: list[dict[str, Any]],
    axes: dict[str, list[Any]],
    gates: list[Gate],
    grid_png: Callable[[str], bytes | None],
    metrics: list[str] | None = None,
    plots: dict[str, bytes] | None = None,
) -> str:
    """The page; ``grid_png(job id)`` gives a job's image grid (None: none), ``plots`` the axis
    plots when already drawn (see :func:`axis_plots`)."""
    swept = swept_axes(axes)
    parts = [f"<h1>{html.escape(title)}</h1>", verdict_html(rows, gates), "<h2>Cells</h2>"]
    parts.append(table_html(rows, list(axes)))
    plots = plots if plots is not None else axis_plots(rows, axes, gates, metrics)
    panels = metrics or ["psnr", "ssim", "label_acc"]
    for axis in swept:
        heading = f"{', '.join(panels)} against {axis}"
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        parts.append(
            f'<img class="plot" alt="{html.escape(heading)}" src="{data_uri(plots[axis])}">'
        )
    if not swept:
        parts.append('<p class="note">No swept axis: no plot.</p>')
    parts.append("<h2>Reconstructions (originals above, reconstructions below)</h2>")
    shown = 0
    for row in rows:
        if shown >= MAX_GRIDS:
            parts.append('<p class="note">More grids in jobs/&lt;id&gt;/grid.png.</p>')
            break
        png = grid_png(row["job"]) if row["status"] == "done" else None
        if png is None:
            continue
        shown += 1
        label = ", ".join(f"{a}={row.get(a)}" for a in axes)
        parts.append(f"<h3>{html.escape(row['job'][:8])}: {html.escape(label)}</h3>")
        parts.append(f'<img class="grid" alt="grid of {row["job"][:8]}" src="{data_uri(png)}">')
    parts.append(f'<p class="note">Written by gradinvert {html.escape(__version__)}.</p>')
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{STYLE}{EXTRA_STYLE}</style></head>"
        f"<body>{''.join(parts)}</body></html>\n"
    )
