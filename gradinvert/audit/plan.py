"""Read an audit plan (TOML): bounded, schema-checked, every problem reported at once (exit 65)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gradinvert.config.audit import Plan
from gradinvert.config.base import MAX_CONFIG_BYTES, tomllib
from gradinvert.runtime.errors import InvalidInputError, MissingInputError


@dataclass
class LoadedPlan:
    """A validated plan, the folder its relative paths start from, and its text."""

    plan: Plan
    base: Path
    path: Path
    text: str


def plan_problems(exc: ValidationError) -> list[str]:
    """One ``where: what`` line per setting pydantic found wrong (a value-or-list setting is
    reported once: as a list when a list was given, else as a value)."""
    groups: dict[tuple[str, ...], list[tuple[tuple[str, ...], bool, dict[str, Any]]]] = {}
    for error in exc.errors(include_url=False):
        loc = tuple(str(part) for part in error["loc"])
        arm = len(loc) > 2 and loc[0] != "attack" and not loc[2].isdigit()
        key = loc[:2] if arm else loc
        groups.setdefault(key, []).append((loc, arm and loc[2].startswith("list["), error))
    problems = []
    for key, errors in groups.items():
        given_list = any(is_list and len(loc) > 3 for loc, is_list, _ in errors)
        chosen = [e for e in errors if e[1] == given_list] or errors
        loc, is_list, error = chosen[0]
        where = ".".join(key) or "plan"
        if is_list and len(loc) > 3:
            where += "".join(f"[{i}]" for i in loc[3:])
        if error["type"] == "extra_forbidden":
            problems.append(f"{where}: unknown setting")
        elif error["type"] == "missing":
            problems.append(f"{where}: missing")
        else:
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(f"{where}: {message} (got {error['input']!r})")
    return problems


def invalid_plan(path: Path, problems: list[str]) -> InvalidInputError:
    """One line naming every problem of the plan at ``path``."""
    return InvalidInputError(f"{path}: invalid audit plan: " + "; ".join(problems))


def load_plan(path: str | Path) -> LoadedPlan:
    """The plan at ``path``; relative paths in it are relative to its folder."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"{path}: no such audit plan")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise InvalidInputError(f"{path}: an audit plan over {MAX_CONFIG_BYTES} bytes")
    text = path.read_bytes().decode("utf-8", errors="replace")
    try:
        values = tomllib.loads(text)
    except (ValueError, RecursionError) as exc:
        raise InvalidInputError(f"{path}: not valid TOML ({exc})") from None
    version = values.get("schema_version", 1)
    if version != 1:
        raise InvalidInputError(
            f"{path}: schema_version {version!r}: this gradinvert reads audit plans of schema 1"
        )
    try:
        plan = Plan.model_validate(values)
    except ValidationError as exc:
        raise invalid_plan(path, plan_problems(exc)) from None
    problems = []
    if plan.recorded is None and (plan.victim is None or plan.data is None):
        problems.append("a plan needs [victim] and [data] tables, or a [recorded] table")
    if plan.recorded is not None and (plan.victim is not None or plan.data is not None):
        problems.append("[recorded] updates come with their model and data: drop [victim]/[data]")
    if problems:
        raise invalid_plan(path, problems)
    return LoadedPlan(plan, path.resolve().parent, path, text)
