"""The `gradinvert` command: one subcommand per pipeline step."""

from __future__ import annotations

from typing import Annotated

import typer

from gradinvert import __version__
from gradinvert.cli import aggregate, capture, import_cmd, inspect
from gradinvert.cli import audit as audit_cmd
from gradinvert.cli import demo as demo_cmd
from gradinvert.cli import evaluate as evaluate_cmd
from gradinvert.cli import invert as invert_cmd
from gradinvert.cli import labels as labels_cmd
from gradinvert.cli import learn_prior as learn_prior_cmd
from gradinvert.cli import report as report_cmd
from gradinvert.cli import train_inverter as train_inverter_cmd
from gradinvert.cli import train_prior as train_prior_cmd
from gradinvert.cli.common import state
from gradinvert.io.atomic import set_public_outputs

app = typer.Typer(
    name="gradinvert",
    help=(
        "Audit how much private training data leaks through gradients shared in federated "
        "learning: capture an update, restore labels, invert images, evaluate the leak."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"gradinvert {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    public_outputs: Annotated[
        bool,
        typer.Option(
            "--public-outputs",
            envvar="GRADINVERT_PUBLIC_OUTPUTS",
            help="Write files holding images (reconstructions, truth, grids, PNGs, reports, "
            "checkpoints) with your umask's mode instead of owner-only (0600).",
        ),
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """gradinvert: gradient-inversion attacks and leakage scores for FL audits."""
    state["debug"] = debug
    set_public_outputs(public_outputs)


app.command("capture")(capture.capture)
app.command("aggregate")(aggregate.aggregate)
app.command("inspect")(inspect.inspect)
app.command("import")(import_cmd.import_command)
app.command("evaluate")(evaluate_cmd.evaluate)
app.command("report")(report_cmd.report)
app.command("invert")(invert_cmd.invert)
app.command("labels")(labels_cmd.labels)
app.command("demo")(demo_cmd.demo)
app.command("audit")(audit_cmd.audit)
app.command("train-prior")(train_prior_cmd.train_prior_command)
app.command("learn-prior")(learn_prior_cmd.learn_prior_command)
app.command("train-inverter")(train_inverter_cmd.train_inverter_command)


def run() -> None:
    """Console-script entry point."""
    app()
