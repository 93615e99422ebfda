"""Command-line options generated from a command's settings model: one ``--option`` per field
(help text from the field's description), plus ``--config FILE`` and ``--print-config``. The
settings model stays the one source of truth for names, types, defaults and ranges."""

from __future__ import annotations

import functools
import inspect
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import typer

from gradinvert.cli.common import console
from gradinvert.config.base import Settings

HIDDEN = ("schema_version",)


def _cli_type(annotation: Any) -> Any:
    """The type typer parses for a field: its scalar type (choices are checked by the model)."""
    origin = get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        inner = [arg for arg in get_args(annotation) if arg is not type(None)]
        return _cli_type(inner[0]) if len(inner) == 1 else str
    if origin is Literal:
        return type(get_args(annotation)[0])
    if origin is list:  # a repeatable option
        return list[_cli_type(get_args(annotation)[0])]
    if annotation in (int, float, str, bool):
        return annotation
    return str


def option_name(field: str) -> str:
    """``--name-with-dashes`` of a field."""
    return "--" + field.replace("_", "-")


def with_settings(
    settings: type[Settings],
    *,
    flags: dict[str, str] | None = None,
    parsers: dict[str, Callable[[Any], Any]] | None = None,
    skip: tuple[str, ...] = (),
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a command ``f(..., config: S)``: its own parameters stay, every field of
    ``settings`` becomes an option (``flags`` overrides an option's declaration, e.g.
    ``"--flip/--no-flip"``; ``parsers`` turns an option's text into the field's value), and
    ``f`` receives the validated settings (preset < ``--config`` file < explicit options), and,
    when it has a ``given`` parameter, the explicit options as typed."""
    flags = flags or {}
    parsers = parsers or {}

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        own = [
            p
            for p in inspect.signature(func, eval_str=True).parameters.values()
            if p.name not in ("config", "given")
        ]
        wants_given = "given" in inspect.signature(func).parameters
        fields = [name for name in settings.model_fields if name not in HIDDEN and name not in skip]
        generated = []
        for name in fields:
            info = settings.model_fields[name]
            cli_type = str if name in parsers else _cli_type(info.annotation)
            declaration = flags.get(name) or (
                f"{option_name(name)}/--no-{name.replace('_', '-')}"
                if cli_type is bool
                else option_name(name)
            )
            option = typer.Option(declaration, help=info.description, show_default=False)
            generated.append(
                inspect.Parameter(
                    name,
                    inspect.Parameter.KEYWORD_ONLY,
                    default=None,
                    annotation=Annotated[cli_type | None, option],
                )
            )
        extra = [
            inspect.Parameter(
                "config_file",
                inspect.Parameter.KEYWORD_ONLY,
                default=None,
                annotation=Annotated[
                    Path | None,
                    typer.Option(
                        "--config",
                        help="Settings file (TOML or JSON, e.g. from --print-config); options "
                        "given on the command line override it.",
                    ),
                ],
            ),
            inspect.Parameter(
                "print_config",
                inspect.Parameter.KEYWORD_ONLY,
                default=False,
                annotation=Annotated[
                    bool,
                    typer.Option(
                        "--print-config",
                        help="Print the effective settings as TOML and exit.",
                    ),
                ],
            ),
        ]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            config_file = kwargs.pop("config_file", None)
            print_config = kwargs.pop("print_config", False)
            given = {name: kwargs.pop(name) for name in fields if name in kwargs}
            cli = {
                name: parsers[name](value) if name in parsers else value
                for name, value in given.items()
                if value is not None
            }
            notes: list[str] = []
            config = settings.build(cli, config_file, notes)
            if print_config:
                sys.stdout.write(config.to_toml())
                raise typer.Exit(0)
            for note in notes:
                console.print(f"note: {note}", soft_wrap=True)
            if wants_given:  # the option texts as typed (e.g. a --labels file's path)
                kwargs["given"] = {k: v for k, v in given.items() if v is not None}
            return func(*args, **kwargs, config=config)

        parameters = own + generated + extra
        wrapper.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
        return wrapper

    return decorate
