"""Strings from files print and plot as plain text: no markup, no control characters, no
mathtext, and no message can change an exit code."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
import typer
from hostile_corpus import read_raw, write_raw
from invert_support import make_update, one_thread  # noqa: F401 (fixture)
from PIL import Image
from rich.table import Table
from typer.testing import CliRunner

from gradinvert.cli import common
from gradinvert.cli.main import app
from gradinvert.io.files import save_update
from gradinvert.report.console import InertConsole, inert
from gradinvert.report.plot import sweep_plot_png
from gradinvert.report.runs import SETTINGS, Run
from gradinvert.runtime.runstate import stderr_progress

runner = CliRunner()
HOSTILE = "a[/nope][bold]b\x1b]0;pwned\x07c\x1b[2J\x9b31md\u202eevil\x00"
PLAIN = "é 日本 ✓ [/nope][bold]"  # printable unicode and markup-looking text stay as they are
SGR = re.compile(r"\x1b\[[0-9;]*m")  # the colour codes rich itself writes to a terminal
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def test_inert_drops_controls_and_keeps_printable_text() -> None:
    assert inert(HOSTILE) == "a[/nope][bold]b]0;pwnedc[2J31mdevil"
    assert inert(PLAIN + "\ttab\nline") == PLAIN + "\ttab\nline"


def test_console_renders_strings_tables_and_styles_inertly() -> None:
    buffer = io.StringIO()
    console = InertConsole(file=buffer, force_terminal=True, width=200, color_system="standard")
    table = Table(title=HOSTILE)
    table.add_column(HOSTILE)
    table.add_row(HOSTILE)
    console.print(HOSTILE, soft_wrap=True)
    console.print(table)
    console.print(common.labelled("error:", "bold red", PLAIN), soft_wrap=True)
    text = buffer.getvalue()
    assert SGR.search(text)  # our own styles still reach a terminal ...
    plain = SGR.sub("", text)
    assert not CONTROL.search(plain.replace("\n", ""))  # ... and nothing else does
    assert plain.count("a[/nope][bold]b]0;pwnedc[2J31mdevil") == 4
    assert "error: " + PLAIN in plain


def test_progress_bar_descriptions_are_inert(capsys: pytest.CaptureFixture[str]) -> None:
    bar = stderr_progress("{task.description}", "loss {task.fields[loss]}")
    task = bar.add_task(HOSTILE, total=2, loss=HOSTILE)
    bar.start()
    bar.update(task, advance=2)
    bar.stop()
    err = capsys.readouterr().err
    assert err.count("a[/nope][bold]b]0;pwnedc[2J31mdevil") == 2
    assert not CONTROL.search(err.replace("\n", ""))


def test_fail_prints_one_line_and_keeps_its_exit_code(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(typer.Exit) as exit_info:
        common.fail("first\nerror: forged second line " + HOSTILE, 65)
    assert exit_info.value.exit_code == 65
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: first error: forged")

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the terminal went away")

    monkeypatch.setattr(common.console, "print", broken)
    with pytest.raises(typer.Exit) as exit_info:
        common.fail("anything", 66)
    assert exit_info.value.exit_code == 66


@pytest.fixture(scope="module")
def update_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    update, _, _ = make_update(count=2, labels=[1, 3])
    path = tmp_path_factory.mktemp("inert") / "u.safetensors"
    save_update(update, path)
    return path


def _variant(update_file: Path, folder: Path, **changes: str) -> Path:
    tensors, metadata = read_raw(update_file)
    path = folder / "hostile.safetensors"
    path.write_bytes(write_raw(tensors, {**metadata, **changes}))
    return path


def _clean(stderr: str) -> None:
    assert "Traceback" not in stderr
    assert not CONTROL.search(stderr.replace("\n", ""))


def test_markup_in_a_model_name_is_an_invalid_input_not_a_crash(
    update_file: Path, tmp_path: Path
) -> None:
    model = json.loads(read_raw(update_file)[1]["model"])
    path = _variant(update_file, tmp_path, model=json.dumps({**model, "arch": "x[/nope]"}))
    for command in (["labels", path], ["invert", path, "--out", tmp_path / "r.safetensors"]):
        result = runner.invoke(app, [str(a) for a in command])
        assert result.exit_code == 65, result.output
        _clean(result.stderr)
        assert result.stderr.count("\n") == 1 and "x[/nope]" in result.stderr
    assert not (tmp_path / "r.safetensors").exists()
    result = runner.invoke(app, ["inspect", str(path)])
    assert result.exit_code == 0 and "x[/nope]" in result.stderr
    _clean(result.stderr)


def test_control_characters_in_metadata_never_reach_the_terminal(
    update_file: Path, tmp_path: Path
) -> None:
    path = _variant(update_file, tmp_path, created=HOSTILE, torch=HOSTILE)
    result = runner.invoke(app, ["inspect", str(path)])
    assert result.exit_code == 0, result.output
    _clean(result.stderr)
    assert "a[/nope][bold]b]0;pwnedc[2J" in result.stderr
    result = runner.invoke(app, ["inspect", str(path), "--json"])  # data keeps its bytes
    assert json.loads(result.stdout)["created"] == HOSTILE


def _run(value: str) -> Run:
    settings = {key: None for key in SETTINGS}
    settings["model"] = value
    summary = {"psnr": {"mean": 12.0}, "ssim": {"mean": 0.3}, "label_acc": 1.0}
    return Run(value, {"summary": summary}, settings)


def test_plot_draws_mathtext_and_controls_as_text() -> None:
    png = sweep_plot_png([_run("$\\foo$"), _run(HOSTILE), _run("$x^2$")], "model", [])
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.width > 600
