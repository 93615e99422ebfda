"""`gradinvert inspect`: what a gradinvert file holds."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from gradinvert.cli.common import MaxMemoryOption, console, emit_json, handle_errors


def _human_bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{count} B"
        size /= 1024
    return f"{count} B"


@handle_errors
def inspect(
    file: Annotated[Path, typer.Argument(help="An update, batch, generator or inverter file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON to stdout.")] = False,
    max_memory: MaxMemoryOption = None,
    print_config: Annotated[
        bool,
        typer.Option(
            "--print-config",
            help="Print the settings the run that wrote FILE used, as TOML (replay them with "
            "that command's --config).",
        ),
    ] = False,
) -> None:
    """Summarize a gradinvert file: kind, model, batch, input, defenses, tensors and size.

    Exit codes: 65 invalid file, 66 missing, 69 more memory needed than --max-memory.
    """
    if print_config:
        from gradinvert.config.base import recorded_settings
        from gradinvert.io.describe import recorded_config

        sys.stdout.write(recorded_settings(recorded_config(file), str(file)).to_toml())
        return
    from gradinvert.io.describe import summarize
    from gradinvert.io.tensorfile import read_header
    from gradinvert.runtime.memory import estimate_inspect
    from gradinvert.runtime.resources import check_memory

    check_memory(estimate_inspect(read_header(file)), max_memory)
    summary = summarize(file)
    if as_json:
        emit_json(summary)
        return
    table = Table(title=str(file), show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for key, value in summary.items():
        if key == "bytes":
            value = _human_bytes(value)
        elif isinstance(value, (dict, list)):
            value = json.dumps(value)
        table.add_row(key, "—" if value is None else str(value))
    console.print(table)
