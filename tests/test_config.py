"""Typed settings: the command line and settings files reach the same fields, every problem is
reported at once with the right exit code, TOML round trips, presets validate, replays are exact."""

from __future__ import annotations

import json
import sys
import typing
from pathlib import Path

import pytest
import torch
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
    if name == "feature_radii":  # a repeatable option: one value per generator layer
        return [flag, "0.5", flag, "0.25"], [0.5, 0.25]
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
    for part in ("--iterations", "--tv", "--search: Input should be 'x', 'z', 'w', 'zw' or 'f'"):
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
    assert list(PRESETS) == ["dlg", "idlg", "ig", "gradinversion", "gias", "gifd"]
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


# ---------------------------------------------------------------- every other command

from gradinvert.config.base import settings_classes  # noqa: E402

COMMANDS = {  # command words before the options (inputs are not read by --print-config)
    "capture": ["capture", "--images", "x.png", "--out", "u.safetensors"],
    "aggregate": ["aggregate", "a.safetensors", "b.safetensors", "--out", "agg.safetensors"],
    "labels": ["labels", "u.safetensors"],
    "evaluate": ["evaluate", "r.safetensors", "--truth", "t.safetensors"],
    "import": ["import", "--out", "u.safetensors", "--model", "convnet", "--input-shape", "3,8,8"],
    "demo": ["demo"],
    "report": ["report", "scores.json"],
    "audit": ["audit", "plan.toml", "--out", "audit-out"],
}
SAMPLES = {  # values that pass each field's own rule
    "input_shape": "1,16,16",
    "fail_above": ["psnr=18"],
    "lpips": "vgg",
    "labels": "0,1",
    "model": "lenet",
}


def _words(name: str, annotation: object, default: object) -> tuple[list[str], object]:
    flag = "--" + name.replace("_", "-")
    if name in SAMPLES:
        value = SAMPLES[name]
        words = [w for v in value for w in (flag, v)] if isinstance(value, list) else [flag, value]
        return words, value
    choices = [a for a in typing.get_args(annotation) if isinstance(a, str)]
    for inner in typing.get_args(annotation):  # Optional[Literal[...]]
        choices += [a for a in typing.get_args(inner) if isinstance(a, str)]
    if choices:
        other = next(c for c in choices if c != default)
        return [flag, other], other
    if isinstance(default, bool):
        return ([f"--no-{name.replace('_', '-')}"], False) if default else ([flag], True)
    types = {t for t in (annotation, *typing.get_args(annotation)) if isinstance(t, type)}
    if int in types and float not in types:
        value = (default or 0) + 3
        return [flag, str(value)], value
    if float in types:
        return [flag, "0.375"], 0.375
    return [flag, "x.bin"], "x.bin"


def _print(words: list[str]) -> dict:
    result = invoke(*words, "--print-config")
    assert result.exit_code == 0, result.output
    return tomllib.loads(result.stdout)


@pytest.mark.parametrize(
    ("command", "name"),
    [
        (command, name)
        for command in COMMANDS
        for name in settings_classes()[command].model_fields
        if name != "schema_version"
    ],
)
def test_every_option_of_every_command_reaches_its_field(command: str, name: str) -> None:
    cls = settings_classes()[command]
    base = COMMANDS[command]
    if command == "import" and name in ("model", "input_shape"):
        base = ["import", "--out", "u.safetensors", "--model", "convnet", "--input-shape", "3,8,8"]
    if command == "capture" and name in ("dp_noise_multiplier", "dataset_size", "rounds"):
        base = [*base, "--dp-clip", "1"]  # DP-SGD's settings go with its clip
    if command == "import" and (name.startswith("local_") or name == "shuffle"):  # a pair
        base = [*base, "--local-steps", "2", "--local-lr", "0.5", "--batch-size", "4"]
    baseline = _print(base)
    field = cls.model_fields[name]
    words, expected = _words(name, field.annotation, baseline.get(name))
    printed = _print([*base, *words])
    assert printed["command"] == command
    assert printed[name] == expected
    changed = {k for k in set(printed) | set(baseline) if printed.get(k) != baseline.get(k)}
    assert changed == {name}, changed


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_problem_of_a_settings_file_at_once(command: str, tmp_path: Path) -> None:
    cls = settings_classes()[command]
    numeric = [n for n, f in cls.model_fields.items() if f.annotation in (int, float)]
    bad = tmp_path / "bad.toml"
    lines = [f'command = "{command}"', "bogus = 1"]
    lines += [f'{name} = "7"' for name in numeric[:2]]
    bad.write_text("\n".join(lines) + "\n")
    result = invoke(*COMMANDS[command], "--config", bad, "--print-config")
    assert result.exit_code == 65, result.output
    assert result.output.count("\n") == 1 and "Traceback" not in result.output
    for name in ["bogus", *numeric[:2]]:
        assert f"{bad}: {name}" in result.output


def test_capture_labels_evaluate_record_their_settings_and_replay(tmp_path: Path) -> None:
    """Each output records its settings; replaying them gives the same tensors and scores."""
    from gradinvert.io.files import load_batch, load_update

    samples = Path(__file__).resolve().parents[1] / "samples" / "images32"
    u, t, u2, t2 = (tmp_path / n for n in ("u.st", "t.st", "u2.st", "t2.st"))
    capture = ["capture", "--images", samples, "--batch-size", 2, "--labels", "0,1",
               "--model", "lenet", "--size", 16, "--noise", 0.01, "--seed", 3]  # fmt: skip
    assert invoke(*capture, "--out", u, "--truth", t).exit_code == 0
    (tmp_path / "c.toml").write_text(invoke("inspect", u, "--print-config").stdout)
    result = invoke("capture", "--images", samples, "--config", tmp_path / "c.toml",
                    "--out", u2, "--truth", t2)  # fmt: skip
    assert result.exit_code == 0, result.output
    for name, value in load_update(u).update.items():
        assert torch.equal(value, load_update(u2).update[name])
    assert torch.equal(load_batch(t).images, load_batch(t2).images)

    labels = tmp_path / "labels.json"
    assert invoke("labels", u, "--method", "yin", "--out", labels).exit_code == 0
    (tmp_path / "l.toml").write_text(invoke("inspect", labels, "--print-config").stdout)
    replay = invoke("labels", u, "--config", tmp_path / "l.toml")
    assert json.loads(replay.stdout) == json.loads(labels.read_text())

    scores = tmp_path / "scores.json"
    result = invoke("evaluate", t2, "--truth", t, "--json", scores, "--lpips", "off")
    assert result.exit_code == 0, result.output
    (tmp_path / "e.toml").write_text(invoke("inspect", scores, "--print-config").stdout)
    again = invoke("evaluate", t2, "--truth", t, "--config", tmp_path / "e.toml", "--json", "-")
    assert json.loads(again.stdout)["summary"] == json.loads(scores.read_text())["summary"]
