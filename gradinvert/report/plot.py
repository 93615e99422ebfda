"""The sweep plot: PSNR, SSIM and label accuracy against the one setting the runs differ in."""

from __future__ import annotations

import io
from typing import Any

from gradinvert.metrics import Gate
from gradinvert.metrics.gates import gate_figure
from gradinvert.report.console import inert
from gradinvert.report.runs import Run

PANELS = (("psnr", "PSNR (dB)"), ("ssim", "SSIM"), ("label_acc", "label accuracy"))


def _order(values: list[Any]) -> list[Any]:
    distinct = list(dict.fromkeys(values))
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in distinct):
        return sorted(distinct)
    return sorted(distinct, key=lambda v: (v is None, str(v)))


def sweep_plot_png(runs: list[Run], setting: str, gates: list[Gate]) -> bytes:
    """A PNG with one panel per metric: each run a point at its setting's value (evenly spaced
    in sorted order, so 0 and log-spaced values share one axis), the mean per value joined by a
    line, and each ``--fail-above`` bar of that metric as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    values = _order([run.settings[setting] for run in runs])
    position = {repr(v): i for i, v in enumerate(values)}
    # Settings come from files: every string is drawn as text (no mathtext, no TeX).
    with matplotlib.rc_context({"text.parse_math": False, "text.usetex": False}):
        figure, axes = plt.subplots(1, len(PANELS), figsize=(4 * len(PANELS), 3.2), dpi=100)
        try:
            for axis, (metric, title) in zip(axes, PANELS, strict=True):
                points: dict[int, list[float]] = {}
                for run in runs:
                    figure_value = gate_figure(run.summary, metric)
                    if figure_value is not None:
                        points.setdefault(position[repr(run.settings[setting])], []).append(
                            float(figure_value)
                        )
                for x, ys in points.items():
                    axis.scatter([x] * len(ys), ys, color="#1f77b4", s=18, zorder=3)
                xs = sorted(points)
                axis.plot(xs, [sum(points[x]) / len(points[x]) for x in xs], color="#1f77b4")
                for gate in gates:
                    if gate.metric == metric:
                        axis.axhline(
                            gate.value, color="#d62728", linestyle="--", label=f"bar {gate}"
                        )
                        axis.legend(loc="best", fontsize=8)
                if metric != "psnr" and points:
                    lowest = min(min(ys) for ys in points.values())
                    axis.set_ylim(min(0.0, lowest) - 0.05, 1.05)
                labels = [f"{v:g}" if isinstance(v, float) else inert(str(v)) for v in values]
                axis.set_xticks(range(len(values)), labels)
                axis.set_xlabel(setting.replace("_", " "))
                axis.set_title(title)
                axis.grid(alpha=0.3)
            figure.tight_layout()
            buffer = io.BytesIO()
            figure.savefig(buffer, format="png", metadata={"Software": None})
        finally:
            plt.close(figure)
    return buffer.getvalue()
