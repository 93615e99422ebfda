"""Rich tables of an evaluation for the terminal: per-image scores and the batch summary."""

from __future__ import annotations

from typing import Any

from rich.table import Table


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def images_table(result: dict[str, Any]) -> Table:
    """Per-image scores of an evaluation result."""
    spaces = list(result["summary"].get("iip_spaces", {}))
    table = Table(title=f"reconstructions (matching: {result['matching']})")
    for column in ("recon", "truth", "label ok", "PSNR", "reg. PSNR", "SSIM", "LPIPS"):
        table.add_column(column, justify="right")
    for space in spaces:
        table.add_column(f"NN {space}", justify="right")
    for row in result["images"]:
        table.add_row(
            str(row["index"]),
            str(row["truth_index"]),
            _fmt(row["label_ok"]),
            _fmt(row["psnr"], 2),
            _fmt(row["psnr_registered"], 2),
            _fmt(row["ssim"]),
            _fmt(row["lpips"]),
            *(_fmt(row["identified"].get(space)) for space in spaces),
        )
    return table


def summary_table(result: dict[str, Any]) -> Table:
    """Batch summary: mean, best and worst per metric, then label accuracy and IIP."""
    summary = result["summary"]
    table = Table(title=f"summary ({summary['count']} pairs)")
    for column in ("metric", "mean", "best", "worst"):
        table.add_column(column, justify="right" if column != "metric" else "left")
    for key, label, digits in (
        ("psnr", "PSNR (dB)", 2),
        ("psnr_registered", "registered PSNR (dB)", 2),
        ("ssim", "SSIM", 3),
        ("lpips", "LPIPS (lower = closer)", 3),
    ):
        block = summary.get(key)
        if block is None:
            table.add_row(label, "unavailable", "", "")
            continue
        best, worst = (
            (block["max"], block["min"]) if key != "lpips" else (block["min"], block["max"])
        )
        table.add_row(label, _fmt(block["mean"], digits), _fmt(best, digits), _fmt(worst, digits))
    table.add_row("label accuracy", _fmt(summary["label_acc"]), "", "")
    for space, value in summary.get("iip_spaces", {}).items():
        table.add_row(f"IIP ({space})", _fmt(value), "", "")
    return table
