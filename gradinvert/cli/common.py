"""Shared CLI plumbing: stderr console, error-to-exit-code mapping, common options."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from gradinvert.errors import ExitCode, GradinvertError
from gradinvert.models.trust import CodeTrust, named_factories, trusting

# Data goes to stdout; everything for a human goes to stderr.
console = Console(stderr=True, highlight=False)
state: dict[str, bool] = {"debug": False}

F = TypeVar("F", bound=Callable[..., Any])

DeviceOption = Annotated[
    str, typer.Option("--device", help="auto (CUDA when present), cpu, cuda or cuda:N.")
]
SeedOption = Annotated[int, typer.Option("--seed", help="Random seed; recorded in the output.")]
TrustCodeOption = Annotated[
    bool,
    typer.Option(
        "--trust-code",
        help="Import and run any package.module:factory an input file names (a model, generator "
        "or inverter's model). Only for files you made yourself: a file from a client can name "
        "any Python function, and it runs with your rights. Without it such a file is refused "
        "(exit 65) unless --model/--generator names the same factory.",
    ),
]
ModelFactoryOption = Annotated[
    str | None,
    typer.Option(
        "--model",
        help="Your own model factory (package.module:factory) that the input files name: it "
        "is imported; no other code a file names is.",
    ),
]
# The options whose package.module:factory values name the user's own code (see handle_errors).
CODE_OPTIONS = ("model", "generator")


def fail(message: str, code: int) -> None:
    """Print one error line on stderr and exit with ``code``."""
    console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    raise typer.Exit(code)


def handle_errors(func: F) -> F:
    """Turn library errors into one stderr line and the documented exit code.

    The command runs under the trust policy its own options give: the factories named by
    ``--model``/``--generator``, and everything with ``--trust-code``; nothing else a file names
    is imported (:mod:`gradinvert.models.trust`).
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        policy = CodeTrust(
            named_factories(kwargs.get(name) for name in CODE_OPTIONS),
            bool(kwargs.get("trust_code", False)),
        )
        try:
            with trusting(policy):
                return func(*args, **kwargs)
        except GradinvertError as exc:
            if state["debug"]:
                console.print_exception()
            fail(exc.message, int(exc.exit_code))
        except KeyboardInterrupt:
            console.print("interrupted")
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except Exception as exc:  # an unexpected failure is ours, not the user's
            if state["debug"]:
                console.print_exception()
            fail(
                f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for details)",
                int(ExitCode.INTERNAL),
            )

    return wrapper  # type: ignore[return-value]


def emit_json(data: Any, destination: str | None = "-") -> None:
    """Write JSON to stdout (``-``) or atomically to a file."""
    text = json.dumps(data, indent=2) + "\n"
    if destination in (None, "-"):
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        from gradinvert.atomic import write_text_atomic

        write_text_atomic(destination, text)
