"""Typed settings: the command line and settings files reach the same fields, every problem is
reported at once with the right exit code, TOML round trips, presets validate, replays are exact."""

from __future__ import annotations

import sys
import typing
from pathlib import Path

import pytest
from invert_support import make_update, one_thread  # noqa: F401 (fixture)
from typer.testing import CliRunner

from gradinvert.cli.main import app
from gradinvert.config.attack import PRESETS, AttackConfig
from gradinvert.config.base import recorded_settings
from gradinvert.config.invert import InvertSettings
from gradinvert.io.files import save_update

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

runner = CliRunner()


def invoke(*args: object):  # noqa: ANN201
    return runner.invoke(app, [str(a) for a in args])


def _sample_value(name: str, default: object) -> tuple[list[str], object]:
    """Command-line words that set field ``name`` to a value other than its default."""
    annotation = InvertSettings.model_fields[name].annotation
    choices = [a for a in typing.get_args(annotation) if isinstance(a, str)]
    flag = "--" + name.replace("_", "-")
    if name == "learn_labels":
        return ["--learn-labels"], True
    if name == "labels":
        return [flag, "3,1"], [3, 1]
    if name == "attack":
        return [flag, "ig"], "ig"
    if name == "layers":
        return [flag, "top-k:2"], "top-k:2"
    if name in ("generator", "generator_weights", "inverter", "max_memory", "device"):
        return [flag, "x.safetensors" if name != "max_memory" else "8GB"], (
            "x.safetensors" if name != "max_memory" else "8GB"
        )
    if choices:
        other = next(c for c in choices if c != default)
        return [flag, other], other
    if isinstance(default, bool):
        return ([f"--no-{name.replace('_', '-')}"], False) if default else ([flag], True)
    if isinstance(default, int):
        return [flag, str(default + 2)], default + 2
    if isinstance(default, float):
        value = 0.375 if default != 0.375 else 0.25
        return [flag, str(value)], value
    raise AssertionError(f"no sample for {name}")


@pytest.fixture
def update_file(tmp_path: Path) -> Path:
    update, _, _ = make_update(count=2, labels=[1, 3], mode="train", share_bn_stats=True)
    path = tmp_path / "u.safetensors"
    save_update(update, path)
    return path


def _printed(update: Path, *args: object) -> dict:
    result = invoke("invert", update, "--attack", "ig", *args, "--print-config")
    assert result.exit_code == 0, result.output
    return tomllib.loads(result.stdout)


@pytest.mark.parametrize("name", [n for n in InvertSettings.model_fields if n != "schema_version"])
def test_every_option_reaches_its_field(update_file: Path, name: str) -> None:
    """Each generated option sets exactly its field (compared with the preset's own value)."""
    baseline = _printed(update_file)
    words, expected = _sample_value(name, baseline.get(name))
    extra: list[str] = []
    if name in ("generator", "generator_weights"):
        extra = ["--search", "z", "--generator", "g.safetensors"] if name != "generator" else [
            "--search", "z"]  # fmt: skip
    if name == "inverter":
        extra = ["--init", "git"]
    if name == "inverter_prior":
        extra = ["--inverter", "x.safetensors"]
    if name == "attack":
        baseline = _printed(update_file, "--attack", "dlg")
    printed = _printed(update_file, *extra, *words)
    assert printed[name] == expected
    changed = {k for k in set(printed) | set(baseline) if printed.get(k) != baseline.get(k)}
    allowed = {name} | {w[2:].replace("-", "_") for w in extra if w.startswith("--")}
    if name == "attack":  # another preset: many values change, all from the dlg preset
        assert printed["iterations"] == PRESETS["ig"].settings["iterations"]
    else:
        assert changed <= allowed, changed


def test_every_problem_of_the_command_line_at_once(update_file: Path) -> None:
    result = invoke("invert", update_file, "--attack", "ig", "--iterations", "0", "--tv", "-1",
                    "--search", "q", "--out", "r.safetensors")  # fmt: skip
    assert result.exit_code == 2
    line = result.output.strip()
    assert line.count("\n") == 0 and "Traceback" not in result.output
    for part in ("--iterations", "--tv", "--search: Input should be 'x', 'z', 'w' or 'zw'"):
        assert part in line


def test_every_problem_of_a_file_at_once(update_file: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('command = "invert"\niterations = "50"\nlr = -1.0\nbogus = 3\n')
    result = invoke("invert", update_file, "--config", bad, "--out", tmp_path / "r.safetensors")
    assert result.exit_code == 65, result.output
    line = result.output.strip()
    assert line.count("\n") == 0
    for part in (f"{bad}: iterations", f"{bad}: lr", f"{bad}: bogus: unknown setting"):
        assert part in line
    assert not (tmp_path / "r.safetensors").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("schema_version = 2\n", "this gradinvert reads settings schema 1"),
        ('command = "capture"\n', "holds settings of 'capture', not of 'invert'"),
        ("iterations = \n", "not valid TOML"),
    ],
)
def test_a_file_of_another_version_command_or_syntax_is_refused(
    update_file: Path, tmp_path: Path, text: str, message: str
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    result = invoke("invert", update_file, "--config", bad, "--print-config")
    assert result.exit_code == 65 and message in result.output, result.output


def test_command_line_overrides_the_file(update_file: Path, tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text(invoke("invert", update_file, "--attack", "ig", "--print-config").stdout)
    printed = _printed(update_file, "--config", path, "--tv", "0.5", "--seeds", "3")
    assert printed["tv"] == 0.5 and printed["seeds"] == 3
    assert printed["iterations"] == PRESETS["ig"].settings["iterations"]


def test_toml_round_trip() -> None:
    config = InvertSettings.build({"attack": "gias", "labels": [2, 0], "generator": "g.st"})
    values = tomllib.loads(config.to_toml())
    assert values.pop("command") == "invert"
    again = InvertSettings.build(file=None, cli_values=values)
    assert again == config


def test_preset_files_validate_and_name_a_source_for_every_value() -> None:
    assert list(PRESETS) == ["dlg", "idlg", "ig", "gradinversion", "gias"]
    for preset in PRESETS.values():
        assert set(preset.settings) <= set(AttackConfig.model_fields), preset.name
        assert set(preset.value_sources) == set(preset.settings), preset.name
        assert preset.source and preset.title and preset.summary
        AttackConfig.build({**preset.settings, "attack": preset.name})


def test_recorded_settings_from_a_file_are_not_trusted() -> None:
    from gradinvert.runtime.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="iterations"):
        recorded_settings({"command": "invert", "iterations": -3}, "r.safetensors")
    with pytest.raises(InvalidInputError, match="unknown command"):
        recorded_settings({"command": "rm"}, "r.safetensors")


def test_replay_from_the_recorded_config_is_byte_identical(
    update_file: Path, tmp_path: Path
) -> None:
    first, second = tmp_path / "r.safetensors", tmp_path / "r2.safetensors"
    result = invoke("invert", update_file, "--attack", "gradinversion", "--iterations", 4,
                    "--seeds", 2, "--out", first, "--no-progress")  # fmt: skip
    assert result.exit_code == 0, result.output
    replay = tmp_path / "replay.toml"
    printed = invoke("inspect", first, "--print-config")
    assert printed.exit_code == 0, printed.output
    replay.write_text(printed.stdout)
    result = invoke("invert", update_file, "--config", replay, "--out", second, "--no-progress")
    assert result.exit_code == 0, result.output
    assert first.read_bytes() == second.read_bytes()
