"""`gradinvert demo`: the whole chain on the shipped samples."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gradinvert.cli.common import console, handle_errors
from gradinvert.cli.options import with_settings
from gradinvert.config.demo import DemoSettings


@handle_errors
@with_settings(DemoSettings)
def demo(
    *,
    out: Annotated[Path, typer.Option("--out", help="Folder for every file the demo writes.")] = (
        Path("demo-out")
    ),
    samples: Annotated[
        Path | None, typer.Option("--samples", help="Sample folder (default samples/images32).")
    ] = None,
    config: DemoSettings,
) -> None:
    """Capture a gradient of a small BN model on 4 sample photos, restore the labels, invert it
    with the GradInversion preset and score the result: leaves update, truth, labels,
    reconstruction, scores.json and grid.png in --out."""
    from gradinvert.audit.demo import DemoConfig, run_demo
    from gradinvert.report.tables import summary_table
    from gradinvert.runtime.device import resolve_device

    demo_config = DemoConfig(
        out=out,
        samples=samples,
        iterations=config.iterations,
        seeds=config.seeds,
        seed=config.seed,
        device=str(resolve_device(config.device)),
    )
    scores = run_demo(demo_config, log=lambda message: console.print(message))
    console.print(summary_table(scores))
    console.print(f"scores: {out / 'scores.json'}")
    console.print(f"grid:   {out / 'grid.png'}")
