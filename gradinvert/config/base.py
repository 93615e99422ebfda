"""The base of every command's settings: a pydantic model read from TOML or JSON, layered
(preset < file < command line), validated with every problem reported at once, and printed back
as TOML so a run can be stored, diffed and replayed."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from gradinvert.runtime.errors import InvalidInputError, MissingInputError, UsageError

SCHEMA_VERSION = 1
MAX_CONFIG_BYTES = 1_000_000  # a settings file is a page of text; refuse anything far larger

# The --help texts of settings several commands share.
DEVICE_HELP = "auto (CUDA when present), cpu, cuda or cuda:N."
MAX_MEMORY_HELP = (
    "Refuse (exit 69) runs estimated to need more memory than this, e.g. 8GB, 512MiB or none "
    "(no bound). Default: 80% of the RAM (of the GPU's memory on CUDA)."
)
SEED_HELP = "Random seed; recorded in the output."

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class Settings(BaseModel):
    """Settings of one command. Subclasses declare fields with ``Field(description=...)``: the
    description is the option's ``--help`` text, the field name (dashes for underscores) its
    name."""

    model_config = ConfigDict(extra="forbid", strict=True, validate_default=True)

    command: ClassVar[str] = ""
    schema_version: int = SCHEMA_VERSION

    @field_validator("schema_version")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if value != SCHEMA_VERSION:
            raise ValueError(f"this gradinvert reads settings schema {SCHEMA_VERSION}")
        return value

    @classmethod
    def layer(
        cls, file_values: dict[str, Any], cli_values: dict[str, Any], notes: list[str]
    ) -> dict[str, Any]:
        """The raw values before validation; commands with presets put them underneath."""
        return {**file_values, **cli_values}

    @classmethod
    def build(
        cls,
        cli_values: Mapping[str, Any] | None = None,
        file: str | Path | None = None,
        notes: list[str] | None = None,
    ) -> Settings:
        """Validated settings from a settings file and explicit command-line values (which win).
        Problems are reported together: exit 65 when any concerns the file, else exit 2."""
        cli = dict(cli_values or {})
        file_values = read_settings_file(file, cls.command) if file is not None else {}
        notes = [] if notes is None else notes
        try:
            values = cls.layer(file_values, cli, notes)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise settings_error(exc, cli, file_values, file) from None

    def to_toml(self) -> str:
        """Every setting as TOML (``None`` values, which TOML cannot hold, are left out)."""
        import tomli_w

        return tomli_w.dumps(self.record())

    def record(self) -> dict[str, Any]:
        """Every setting as a JSON-ready dict naming its command, for an output's metadata
        (``None`` values are left out: they are the defaults)."""
        return {"command": self.command, **self.model_dump(mode="json", exclude_none=True)}


def settings_classes() -> dict[str, type[Settings]]:
    """Every command's settings class by command name."""
    found: dict[str, type[Settings]] = {}
    pending = list(Settings.__subclasses__())
    while pending:
        cls = pending.pop()
        found.setdefault(cls.command, cls)
        pending.extend(cls.__subclasses__())
    return found


def recorded_settings(record: Any, source: str) -> Settings:
    """The settings an output file recorded (``record()``), validated again: a file may come
    from anyone, so every problem is an invalid input (exit 65)."""
    from gradinvert.config import commands  # noqa: F401  (registers every command's class)

    if not isinstance(record, dict) or not isinstance(record.get("command"), str):
        raise InvalidInputError(f"{source}: records no settings (no 'command' in its config)")
    values = dict(record)
    command = values.pop("command")
    cls = settings_classes().get(command)
    if cls is None:
        raise InvalidInputError(f"{source}: records settings of an unknown command {command!r}")
    try:
        return cls.model_validate(values)
    except ValidationError as exc:
        raise settings_error(exc, {}, values, source, always_file=True) from None


def read_settings_file(path: str | Path, command: str) -> dict[str, Any]:
    """The values of a TOML or JSON settings file (``--config``); a ``command`` key, when
    present, must name ``command``."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"{path}: no such settings file")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise InvalidInputError(f"{path}: a settings file over {MAX_CONFIG_BYTES} bytes")
    text = path.read_bytes().decode("utf-8", errors="replace")
    try:
        values = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (ValueError, RecursionError) as exc:  # TOMLDecodeError and JSONDecodeError
        kind = "JSON" if path.suffix == ".json" else "TOML"
        raise InvalidInputError(f"{path}: not valid {kind} ({exc})") from None
    if not isinstance(values, dict):
        raise InvalidInputError(f"{path}: settings must be a table of keys and values")
    named = values.pop("command", command)
    if named != command:
        raise InvalidInputError(f"{path}: holds settings of {named!r}, not of {command!r}")
    return values


def _label(key: str, origin: str, file: str | Path | None) -> str:
    if origin == "cli":
        return "--" + key.replace("_", "-")
    if origin == "file":
        return f"{file}: {key}"
    return key


def settings_error(
    exc: ValidationError,
    cli: Mapping[str, Any],
    file_values: Mapping[str, Any],
    file: str | Path | None,
    always_file: bool = False,
) -> UsageError | InvalidInputError:
    """One line naming every problem and where its value came from."""
    problems: list[str] = []
    from_file = always_file
    for error in exc.errors(include_url=False):
        location = [str(part) for part in error["loc"]]
        key = location[0] if location else ""
        origin = "cli" if key in cli else "file" if key in file_values else "preset"
        from_file = from_file or origin == "file"
        if not key:
            problems.append(str(error["msg"]).removeprefix("Value error, "))
            continue
        where = _label(key, origin, file) + "".join(f"[{part}]" for part in location[1:])
        if error["type"] == "extra_forbidden":
            problems.append(f"{where}: unknown setting")
            continue
        message = str(error["msg"]).removeprefix("Value error, ")
        problems.append(f"{where}: {message} (got {error['input']!r})")
    text = "invalid settings: " + "; ".join(problems)
    return InvalidInputError(text) if from_file else UsageError(text)
