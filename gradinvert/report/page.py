"""The audit report: one self-contained HTML page (inline CSS, images as data URIs, no links)."""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from typing import Any

from gradinvert import __version__
from gradinvert.metrics import Gate, check_gates
from gradinvert.metrics.gates import gate_figure
from gradinvert.report.grid import result_grid
from gradinvert.report.plot import sweep_plot_png
from gradinvert.report.runs import SETTINGS, Run, swept_setting

STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; max-width: 1400px; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
th { background: #f0f0f0; } td.name { text-align: left; font-family: monospace; }
.pass { color: #1a7f37; font-weight: bold; } .fail { color: #c62828; font-weight: bold; }
.note { color: #666; font-size: 90%; } img { max-width: 100%; border: 1px solid #ddd; }
"""
METRICS = (("psnr", "PSNR (dB)", 2), ("ssim", "SSIM", 3), ("lpips", "LPIPS", 3))


@dataclass
class Verdict:
    """Which runs leak above the bars."""

    gates: list[Gate]
    tripped: dict[str, list[str]]  # run name -> messages of the gates it tripped

    @property
    def failed(self) -> list[str]:
        return [name for name, messages in self.tripped.items() if messages]


def verdict(runs: list[Run], gates: list[Gate]) -> Verdict:
    """Each run's summary against the ``--fail-above`` bars, as ``evaluate`` checks them."""
    return Verdict(gates, {run.name: check_gates(run.summary, gates) for run in runs})


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _png(image: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _cell(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2g}"
    return html.escape(str(value))


def _setting(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else _cell(value)


def _table(runs: list[Run], result: Verdict) -> str:
    shown = [key for key in SETTINGS if any(run.settings.get(key) is not None for run in runs)]
    head = ["run", *(key.replace("_", " ") for key in shown)]
    head += [title for _, title, _ in METRICS] + ["label accuracy"]
    if result.gates:
        head.append("verdict")
    rows = []
    for run in runs:
        cells = [f'<td class="name">{html.escape(run.name)}</td>']
        cells += [f"<td>{_setting(run.settings.get(key))}</td>" for key in shown]
        for metric, _, digits in METRICS:
            cells.append(f"<td>{_cell(gate_figure(run.summary, metric), digits)}</td>")
        cells.append(f"<td>{_cell(run.summary.get('label_acc'), 2)}</td>")
        if result.gates:
            messages = result.tripped[run.name]
            text = "leaks: " + "; ".join(messages) if messages else "under the bars"
            cells.append(f'<td class="{"fail" if messages else "pass"}">{html.escape(text)}</td>')
        rows.append('<tr class="run">' + "".join(cells) + "</tr>")
    header = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    return f'<table id="runs"><tr>{header}</tr>{"".join(rows)}</table>'


def _verdict_html(runs: list[Run], result: Verdict) -> str:
    if not result.gates:
        return '<p class="note">No <code>--fail-above</code> bars given: no verdict.</p>'
    bars = ", ".join(str(g) for g in result.gates)
    failed = result.failed
    if failed:
        text = f"FAIL: {len(failed)} of {len(runs)} runs leak above the bars ({bars})"
        return f'<p id="verdict" class="fail">{html.escape(text)}</p>'
    text = f"PASS: all {len(runs)} runs stay under the bars ({bars})"
    short = below_budget(runs)
    if short:
        text += (
            f" — weak evidence: {len(short)} of them ran their attack below its preset's "
            f"iteration budget ({'; '.join(short)})"
        )
    return f'<p id="verdict" class="pass">{html.escape(text)}</p>'


def below_budget(runs: list[Run]) -> list[str]:
    """``name: attack I of B iterations`` for each run whose attack ran fewer iterations than
    its preset's paper (B): such a run staying under a bar is weak evidence of safety."""
    from gradinvert.config.attack import PRESETS, AttackConfig

    found = []
    for run in runs:
        attack, iterations = run.settings.get("attack"), run.settings.get("iterations")
        if attack not in PRESETS or not isinstance(iterations, int):
            continue
        default = AttackConfig.model_fields["iterations"].default
        budget = int(PRESETS[attack].settings.get("iterations", default))
        if iterations < budget:
            found.append(f"{run.name}: {attack} {iterations} of {budget} iterations")
    return found


def _plot_html(runs: list[Run], gates: list[Gate]) -> str:
    setting, differing = swept_setting(runs)
    if setting is None:
        if len(runs) < 2:
            why = "one run: nothing swept"
        elif not differing:
            why = "the runs share every known setting"
        else:
            why = "the runs differ in several settings (" + ", ".join(differing) + ")"
        return f'<p class="note">No sweep plot: {html.escape(why)}.</p>'
    png = sweep_plot_png(runs, setting, gates)
    title = f"PSNR, SSIM and label accuracy against {setting.replace('_', ' ')}"
    return (
        f"<h2>{html.escape(title)}</h2>"
        f'<img class="plot" alt="{html.escape(title)}" src="{data_uri(png)}">'
    )


def _grids_html(runs: list[Run]) -> str:
    parts = ["<h2>Reconstructions (originals above, reconstructions below)</h2>"]
    for run in runs:
        parts.append(f"<h3>{html.escape(run.name)}</h3>")
        image = None
        if run.truth is not None and run.recon is not None:
            image = result_grid(run.scores, run.truth, run.recon)
        if image is not None:
            alt = html.escape(f"grid of {run.name}")
            parts.append(f'<img class="grid" alt="{alt}" src="{data_uri(_png(image))}">')
        else:
            parts.append('<p class="note">No grid: the batches were not found.</p>')
        for note in run.notes + list(run.scores.get("warnings") or []):
            parts.append(f'<p class="note">{html.escape(str(note))}</p>')
    return "".join(parts)


def render_report(runs: list[Run], gates: list[Gate], title: str = "gradinvert audit") -> str:
    """The whole page as a string."""
    result = verdict(runs, gates)
    body = [
        f"<h1>{html.escape(title)}</h1>",
        _verdict_html(runs, result),
        "<h2>Runs</h2>",
        _table(runs, result),
        _plot_html(runs, gates),
        _grids_html(runs),
        f'<p class="note">Written by gradinvert {html.escape(__version__)}.</p>',
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
        f"<body>{''.join(body)}</body></html>\n"
    )
