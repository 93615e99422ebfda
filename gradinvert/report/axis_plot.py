"""Plots of an audit grid: for one swept axis, PSNR, SSIM and label accuracy against its values,
one line per combination of the other swept axes (averaged over batches), the bars dashed."""

from __future__ import annotations

import io
import os
from pathlib import PurePosixPath
from typing import Any

from gradinvert.metrics import Gate
from gradinvert.report.console import inert

TITLES = {
    "psnr": "PSNR (dB)",
    "psnr_registered": "registered PSNR (dB)",
    "ssim": "SSIM",
    "lpips": "LPIPS",
    "label_acc": "label accuracy",
    "iip": "IIP",
}
PANELS = ("psnr", "ssim", "label_acc")
MAX_LINES = 8  # more combinations than this: their mean with the min–max band


def _key(value: Any) -> str:
    return repr(value)


def _text(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else inert(str(value))


SEPARATORS = "-_/. "


def tick_labels(values: list[Any]) -> list[str]:
    """Short labels for an axis's values: file paths by their stem, and a prefix or suffix that
    every label shares cut back to a separator (``…/convnet-epoch1.safetensors`` → ``epoch1``)."""
    labels = [_text(v) for v in values]
    if len(labels) < 2 or not all(isinstance(v, str) for v in values):
        return labels
    labels = [PurePosixPath(label).stem if "/" in label else label for label in labels]

    def shared_prefix(texts: list[str]) -> int:
        common = os.path.commonprefix(texts)
        cut = max((common.rfind(c) for c in SEPARATORS), default=-1) + 1
        return cut if all(len(t) > cut for t in texts) else 0

    start = shared_prefix(labels)
    labels = [label[start:] for label in labels]
    end = shared_prefix([label[::-1] for label in labels])
    return [label[: len(label) - end] for label in labels]


def axis_series(
    rows: list[dict[str, Any]], axis: str, others: list[str], metric: str
) -> dict[str, dict[str, list[float]]]:
    """line label → axis value (repr) → the metric of every finished row there."""
    series: dict[str, dict[str, list[float]]] = {}
    for row in rows:
        value = row.get(metric)
        if value is None:
            continue
        line = ", ".join(f"{o.split('.')[-1]}={_text(row.get(o))}" for o in others) or "all"
        series.setdefault(line, {}).setdefault(_key(row.get(axis)), []).append(float(value))
    return series


def axis_plot_png(
    rows: list[dict[str, Any]],
    axis: str,
    values: list[Any],
    others: list[str],
    gates: list[Gate],
    metrics: tuple[str, ...] | list[str] = PANELS,
) -> bytes:
    """The PNG of ``axis``'s plot, one panel per metric (values evenly spaced in the plan's
    order)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    position = {_key(v): i for i, v in enumerate(values)}
    with matplotlib.rc_context({"text.parse_math": False, "text.usetex": False}):
        figure, axes = plt.subplots(
            1, len(metrics), figsize=(4.2 * len(metrics), 3.4), dpi=100, squeeze=False
        )
        try:
            for panel, metric in zip(axes[0], metrics, strict=True):
                title = TITLES[metric]
                series = axis_series(rows, axis, others, metric)
                if len(series) > MAX_LINES:
                    means: dict[int, list[float]] = {}
                    for line in series.values():
                        for key, ys in line.items():
                            means.setdefault(position[key], []).append(sum(ys) / len(ys))
                    xs = sorted(means)
                    panel.plot(
                        xs,
                        [sum(means[x]) / len(means[x]) for x in xs],
                        marker="o",
                        label=f"mean of {len(series)} settings",
                    )
                    panel.fill_between(
                        xs, [min(means[x]) for x in xs], [max(means[x]) for x in xs], alpha=0.2
                    )
                else:
                    for label, line in series.items():
                        xs = sorted(position[k] for k in line)
                        keys = {position[k]: k for k in line}
                        ys = [sum(line[keys[x]]) / len(line[keys[x]]) for x in xs]
                        panel.plot(xs, ys, marker="o", label=inert(label))
                for gate in gates:
                    if gate.metric == metric:
                        panel.axhline(
                            gate.value, color="#d62728", linestyle="--", label=f"bar {gate}"
                        )
                if not metric.startswith("psnr"):  # SSIM can go below 0
                    panel.set_ylim(min(-0.05, panel.get_ylim()[0]), 1.05)
                panel.set_xticks(range(len(values)), tick_labels(values))
                panel.set_xlabel(inert(axis))
                panel.set_title(title)
                panel.grid(alpha=0.3)
            _figure_legend(figure, axes[0])
            buffer = io.BytesIO()
            figure.savefig(buffer, format="png", metadata={"Software": None}, bbox_inches="tight")
        finally:
            plt.close(figure)
    return buffer.getvalue()


def _figure_legend(figure: Any, panels: Any) -> None:
    """One legend for every panel, below them (lines are the same in each panel; a bar is drawn
    only in its metric's panel)."""
    handles: dict[str, Any] = {}
    for panel in panels:
        for handle, label in zip(*panel.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    figure.tight_layout()
    if handles:
        columns = min(len(panels), 2 if max(len(label) for label in handles) > 40 else 4)
        figure.legend(
            list(handles.values()),
            list(handles),
            loc="upper center",
            bbox_to_anchor=(0.5, 0.0),
            ncol=columns,
            fontsize=8,
            frameon=False,
        )
