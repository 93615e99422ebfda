"""`gradinvert demo`: the whole chain on the shipped samples."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gradinvert.audit.demo import DemoConfig, run_demo
from gradinvert.cli.common import DeviceOption, console, handle_errors
from gradinvert.report.tables import summary_table
from gradinvert.runtime.device import resolve_device


@handle_errors
def demo(
    out: Annotated[Path, typer.Option("--out", help="Folder for every file the demo writes.")] = (
        Path("demo-out")
    ),
    samples: Annotated[
        Path | None, typer.Option("--samples", help="Sample folder (default samples/images32).")
    ] = None,
    iterations: Annotated[
        int, typer.Option("--iterations", help="Iterations per seed.")
    ] = DemoConfig.iterations,
    seeds: Annotated[int, typer.Option("--seeds", help="Seeds optimized together.")] = (
        DemoConfig.seeds
    ),
    seed: Annotated[int, typer.Option("--seed")] = 0,
    device: DeviceOption = "auto",
) -> None:
    """Capture a gradient of a small BN model on 4 sample photos, restore the labels, invert it
    with the GradInversion preset and score the result: leaves update, truth, labels,
    reconstruction, scores.json and grid.png in --out."""
    config = DemoConfig(
        out=out,
        samples=samples,
        iterations=iterations,
        seeds=seeds,
        seed=seed,
        device=str(resolve_device(device)),
    )
    scores = run_demo(config, log=lambda message: console.print(message))
    console.print(summary_table(scores))
    console.print(f"scores: {out / 'scores.json'}")
    console.print(f"grid:   {out / 'grid.png'}")
