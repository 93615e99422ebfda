"""Shared CLI plumbing: stderr console, error-to-exit-code mapping, common options."""

from __future__ import annotations

import contextlib
import functools
import json
import sys
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.text import Text

from gradinvert.models.trust import CodeTrust, named_factories, trusting
from gradinvert.report.console import InertConsole, one_line
from gradinvert.runtime.errors import ExitCode, GradinvertError

# Data goes to stdout; everything for a human goes to stderr. Strings print as they are (no
# markup, no control characters): many of them come from files (gradinvert.report.console).
console = InertConsole(stderr=True)
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
MaxMemoryOption = Annotated[
    str | None,
    typer.Option(
        "--max-memory",
        help="Refuse (exit 69) runs estimated to need more memory than this, e.g. 8GB, 512MiB "
        "or none (no bound). Default: 80% of the RAM (of the GPU's memory on CUDA).",
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


def labelled(label: str, style: str, message: str) -> Text:
    """``label`` in ``style``, then ``message`` as plain text (e.g. a red "error:")."""
    return Text.assemble((label, style), " ", message)


def fail(message: str, code: int) -> None:
    """Print one error line on stderr and exit with ``code`` (whatever the message holds)."""
    with contextlib.suppress(Exception):  # no message may change the exit code
        console.print(labelled("error:", "bold red", one_line(message)), soft_wrap=True)
    raise typer.Exit(code)


def _terminated() -> bool:
    """Whether SIGTERM (not Ctrl-C) stopped the run."""
    from gradinvert.runtime.runstate import terminated

    return terminated()


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
            from gradinvert.runtime.runstate import sigterm_interrupts  # torch: not at start-up

            with sigterm_interrupts(), trusting(policy):
                return func(*args, **kwargs)
        except GradinvertError as exc:
            if state["debug"]:
                console.print_exception()
            code = exc.exit_code
            if code == ExitCode.INTERRUPTED and _terminated():
                code = ExitCode.TERMINATED
            fail(exc.message, int(code))
        except KeyboardInterrupt:
            console.print("terminated" if _terminated() else "interrupted")
            code = ExitCode.TERMINATED if _terminated() else ExitCode.INTERRUPTED
            raise typer.Exit(int(code)) from None
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
        from gradinvert.io.atomic import write_text_atomic

        write_text_atomic(destination, text)


def parse_labels_option(value: str) -> list[int]:
    """``--labels``: an inline list such as ``3,3,7,1`` or a labels JSON file."""
    from gradinvert.io.files import parse_labels

    return parse_labels(value)
