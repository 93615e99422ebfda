"""`gradinvert report`: an audit's runs in one self-contained HTML page."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gradinvert.cli.common import console, handle_errors
from gradinvert.cli.options import with_settings
from gradinvert.config.report import ReportSettings
from gradinvert.runtime.errors import UsageError


@handle_errors
@with_settings(ReportSettings)
def report(
    scores: Annotated[
        list[Path], typer.Argument(help="Scores files written by `evaluate --json`.")
    ],
    *,
    out: Annotated[Path | None, typer.Option("--out", help="HTML file to write.")] = None,
    config: ReportSettings,
) -> None:
    """Write one self-contained HTML report of an audit: every run's settings and scores, a plot
    against the swept setting (when the runs differ in one), the reconstruction grids and the
    verdict of the --fail-above bars. Nothing in it is fetched from the network.

    The settings and grids come from the files each scores file names (tried as written and
    relative to the scores file). The report only shows the verdict: it exits 0 either way;
    gate a script on `evaluate --fail-above`.
    """
    from gradinvert.io.atomic import write_text_atomic
    from gradinvert.io.outputs import refuse_clobbering
    from gradinvert.metrics.gates import parse_gate
    from gradinvert.report import load_run, render_report, verdict

    if out is None:
        raise UsageError("--out FILE is required (the HTML file to write)")
    gates = [parse_gate(text) for text in config.fail_above]
    runs = [load_run(path) for path in scores]
    refuse_clobbering([file for run in runs for file in run.files], {"--out": out})
    write_text_atomic(out, render_report(runs, gates, config.title), private=True)
    failed = verdict(runs, gates).failed
    summary = f", {len(failed)} above the bars" if gates else ""
    console.print(f"report of {len(runs)} runs{summary} -> {out}", soft_wrap=True)
