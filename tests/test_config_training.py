"""Typed settings of the training commands (train-prior, learn-prior, train-inverter): each
option reaches its field, every problem is reported at once (exit 2 on the command line, 65 in
a file), TOML round trips, and a run replayed from the settings its output records gives the
same tensors."""

from __future__ import annotations

import sys
import typing
from pathlib import Path
from typing import Any

import pytest
from invert_support import one_thread  # noqa: F401 (fixture)
from long_run_support import same_tensors, training_inputs
from typer.testing import CliRunner

from gradinvert.cli.main import app
from gradinvert.config.base import Settings
from gradinvert.config.learn_prior import LearnPriorSettings
from gradinvert.config.train_inverter import TrainInverterSettings
from gradinvert.config.train_prior import TrainPriorSettings

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

runner = CliRunner()
TINY_GENERATOR = "models_for_tests:tiny_generator"
# Values other than the defaults for the fields whose type alone does not give one.
SAMPLES: dict[str, tuple[str, Any]] = {
    "generator": ("g.safetensors", "g.safetensors"),
    "generator_weights": ("w.pt", "w.pt"),
    "device": ("cpu", "cpu"),
    "max_memory": ("8GB", "8GB"),
    "augment": ("noise:0.1,prune:0.5", "noise:0.1,prune:0.5"),
    "betas": ("0.25,0.75", [0.25, 0.75]),
}
COMMANDS: dict[str, tuple[type[Settings], list[str]]] = {
    "train-prior": (TrainPriorSettings, ["train-prior", "--images", "imgs"]),
    "learn-prior": (LearnPriorSettings, ["learn-prior"]),
    "train-inverter": (TrainInverterSettings, ["train-inverter", "t.safetensors"]),
}


def invoke(*args: object):  # noqa: ANN201
    return runner.invoke(app, [str(a) for a in args])


def _sample(settings: type[Settings], name: str, default: Any) -> tuple[list[str], Any]:
    """Command-line words that set ``name`` to a value other than its default."""
    flag = "--" + name.replace("_", "-")
    if name in SAMPLES:
        text, value = SAMPLES[name]
        return [flag, text], value
    annotation = settings.model_fields[name].annotation
    if typing.get_origin(annotation) is typing.Literal:
        other = next(c for c in typing.get_args(annotation) if c != default)
        return [flag, str(other)], other
    if annotation is bool:
        return ([f"--no-{flag[2:]}"], False) if default else ([flag], True)
    kinds = {a for a in typing.get_args(annotation) if a is not type(None)} or {annotation}
    if int in kinds:
        value = (default or 20) + 2
        return [flag, str(value)], value
    if float in kinds:
        value = 0.375 if default != 0.375 else 0.25
        return [flag, str(value)], value
    raise AssertionError(f"no sample for {name}")


def _printed(words: list[str], *args: object) -> dict[str, Any]:
    result = invoke(*words, *args, "--print-config")
    assert result.exit_code == 0, result.output
    return tomllib.loads(result.stdout)


CASES = [
    (command, name)
    for command, (settings, _) in COMMANDS.items()
    for name in settings.model_fields
    if name != "schema_version"
]


@pytest.mark.parametrize(("command", "name"), CASES)
def test_every_option_reaches_its_field(command: str, name: str) -> None:
    settings, words = COMMANDS[command]
    baseline = _printed(words)
    assert baseline["command"] == command
    flag_words, expected = _sample(settings, name, baseline.get(name))
    printed = _printed(words, *flag_words)
    assert printed[name] == expected
    changed = {k for k in set(printed) | set(baseline) if printed.get(k) != baseline.get(k)}
    assert changed == {name}


@pytest.mark.parametrize(
    ("words", "problems"),
    [
        (["train-prior", "--images", "x", "--size", "48", "--lr", "-1", "--betas", "0.5,1.5,0.2"],
         ["--size: Input should be 32 or 64", "--lr", "--betas"]),
        (["learn-prior", "--tasks", "0", "--meta-lr", "-1", "--generator-lr-scale", "rms"],
         ["--tasks", "--meta-lr", "--generator-lr-scale: Input should be 'absolute'"]),
        (["train-inverter", "t.st", "--pairs", "0", "--val-fraction", "1.5", "--arch", "cnn",
          "--augment", "blur:3"],
         ["--pairs", "--val-fraction", "--arch: Input should be 'git' or 'mlp'", "KIND:VALUE"]),
    ],
)  # fmt: skip
def test_every_problem_of_the_command_line_at_once(
    tmp_path: Path, words: list[str], problems: list[str]
) -> None:
    out = tmp_path / "o.safetensors"
    result = invoke(*words, "--out", out)
    assert result.exit_code == 2, result.output
    line = result.output.strip()
    assert line.count("\n") == 0 and line.startswith("error: invalid settings")
    assert all(problem in line for problem in problems), line
    assert not out.exists()


@pytest.mark.parametrize("command", COMMANDS)
def test_every_problem_of_a_file_at_once(tmp_path: Path, command: str) -> None:
    _, words = COMMANDS[command]
    bad = tmp_path / "bad.toml"
    bad.write_text(f'command = "{command}"\nseed = "3"\nepochs = 0\nbogus = 1\n')
    result = invoke(*words, "--config", bad, "--print-config")
    assert result.exit_code == 65, result.output
    line = result.output.strip()
    assert line.count("\n") == 0
    for part in (f"{bad}: seed", f"{bad}: epochs", f"{bad}: bogus: unknown setting"):
        assert part in line  # (learn-prior has no epochs: an unknown setting there)
    bad.write_text('command = "invert"\n')
    result = invoke(*words, "--config", bad, "--print-config")
    assert result.exit_code == 65 and "not of" in result.output


@pytest.mark.parametrize("command", COMMANDS)
def test_toml_round_trip_and_the_command_line_over_the_file(tmp_path: Path, command: str) -> None:
    settings, words = COMMANDS[command]
    values = {"seed": 7, "device": "cpu", "max_memory": "1GB"}
    config = settings.build(values)
    path = tmp_path / "run.toml"
    path.write_text(config.to_toml())
    assert settings.build(file=path) == config
    printed = _printed(words, "--config", path, "--seed", 9)
    assert printed["seed"] == 9 and printed["max_memory"] == "1GB"


# ---------------------------------------------------------------------- replays


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return training_inputs(tmp_path_factory.mktemp("work"))


REPLAYS = {
    "train-prior": lambda w: ["train-prior", "--images", w / "imgs", "--epochs", 1,
                              "--batch-size", 4, "--ngf", 8, "--upsample", "nearest", "--half",
                              "--betas", "0.4,0.9", "--seed", 3],
    "learn-prior": lambda w: ["learn-prior", w / "u.safetensors", w / "v.safetensors",
                              "--generator", TINY_GENERATOR, "--tasks", 2,
                              "--latent-iterations", 2, "--iterations", 2, "--meta-lr", 0.05,
                              "--generator-lr-scale", "relative", "--seed", 3],
    "train-inverter": lambda w: ["train-inverter", w / "u.safetensors", "--images", w / "imgs",
                                 "--size", 8, "--pairs", 8, "--epochs", 2, "--batch", 4,
                                 "--width", 4, "--val-fraction", 0.25, "--augment", "noise:0.01",
                                 "--seed", 3],
}  # fmt: skip
INPUTS = {
    "train-prior": lambda w: ["train-prior", "--images", w / "imgs"],
    "learn-prior": lambda w: ["learn-prior", w / "u.safetensors", w / "v.safetensors",
                              "--generator", TINY_GENERATOR],
    "train-inverter": lambda w: ["train-inverter", w / "u.safetensors", "--images", w / "imgs"],
}  # fmt: skip


@pytest.mark.parametrize("command", REPLAYS)
def test_a_replay_from_the_recorded_settings_gives_the_same_tensors(
    work: Path, tmp_path: Path, command: str
) -> None:
    first, second = tmp_path / "first.safetensors", tmp_path / "second.safetensors"
    result = invoke(*REPLAYS[command](work), "--device", "cpu", "--no-progress", "--out", first)
    assert result.exit_code == 0, result.output
    printed = invoke("inspect", first, "--print-config")
    assert printed.exit_code == 0, printed.output
    recorded = tomllib.loads(printed.stdout)
    assert recorded["command"] == command and recorded["seed"] == 3
    replay = tmp_path / "replay.toml"
    replay.write_text(printed.stdout)
    result = invoke(*INPUTS[command](work), "--config", replay, "--no-progress", "--out", second)
    assert result.exit_code == 0, result.output
    assert same_tensors(second, first)
    again = invoke("inspect", second, "--print-config")
    assert again.stdout == printed.stdout


def test_the_settings_name_what_the_generator_builds() -> None:
    from gradinvert.generators.dcgan import DEFAULT_UPSAMPLE, SIZES, UPSAMPLES

    fields = TrainPriorSettings.model_fields
    assert typing.get_args(fields["size"].annotation) == SIZES
    assert typing.get_args(fields["upsample"].annotation) == UPSAMPLES
    assert fields["upsample"].default == DEFAULT_UPSAMPLE
