"""Audit plans: every problem at once (exit 65), the grid's axes and zip, and job ids that are
stable and change with every setting and every input byte."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from audit_support import make_images, write_plan
from typer.testing import CliRunner

from gradinvert.audit.grid import expand, job_id
from gradinvert.audit.plan import load_plan
from gradinvert.cli.main import app
from gradinvert.runtime.errors import InvalidInputError

BAD = """
schema_version = 1
bogus = 1
[victim]
model = ["convnet", "evil.module:factory"]
mode = "trian"
[data]
images = "imgs"
batch_size = [4, 0]
[defense]
nosie = 0.1
prune = 1.5
[[attack]]
preset = "nonesuch"
iterations = -3
"""


def test_every_problem_of_a_plan_at_once(tmp_path: Path) -> None:
    make_images(tmp_path)
    plan = tmp_path / "bad.toml"
    plan.write_text(BAD)
    result = CliRunner().invoke(app, ["audit", str(plan), "--out", str(tmp_path / "o")])
    assert result.exit_code == 65, result.output
    assert result.output.count("\n") == 1 and "Traceback" not in result.output
    for where in (
        "bogus: unknown setting",
        "victim.model: 'evil.module:factory'",
        "victim.mode:",
        "data.batch_size[1]:",
        "defense.nosie: unknown setting",
        "defense.prune:",
    ):
        assert where in result.output, where


def test_attack_and_cell_problems_at_once(tmp_path: Path) -> None:
    path = write_plan(tmp_path, iterations="[2, -1]", batches=3, extra="")
    text = path.read_text().replace('preset = "ig"', 'preset = "ig"\nlabls = 3')
    path.write_text(text + '\n[[attack]]\npreset = "nonesuch"\n')
    with pytest.raises(InvalidInputError) as caught:
        expand(load_plan(path))
    message = caught.value.message
    assert "attack[0]: unknown or not settable here: labls" in message
    assert "attack[1].preset: 'nonesuch'" in message


def test_cells_are_checked_as_the_commands_check_them(tmp_path: Path) -> None:
    path = write_plan(tmp_path, batches=9, extra="")
    text = path.read_text().replace("noise = [0.0, 0.01]", "dp_noise_multiplier = 1.0")
    path.write_text(text)
    with pytest.raises(InvalidInputError) as caught:
        expand(load_plan(path))
    assert "--dp-noise-multiplier needs --dp-clip" in caught.value.message


def test_batches_beyond_the_folder_are_refused(tmp_path: Path) -> None:
    path = write_plan(tmp_path, batches=3, batch_size=2)
    with pytest.raises(InvalidInputError, match="3 batches of 2 from image 0 need 6 images"):
        expand(load_plan(path))


@pytest.mark.parametrize("version", [0, 2])
def test_an_unknown_schema_version_is_refused(tmp_path: Path, version: int) -> None:
    path = write_plan(tmp_path)
    path.write_text(path.read_text().replace("schema_version = 1", f"schema_version = {version}"))
    with pytest.raises(InvalidInputError, match="reads audit plans of schema 1"):
        load_plan(path)


def test_the_grid_is_the_product_of_every_list(tmp_path: Path) -> None:
    path = write_plan(tmp_path, batch_size="[1, 2]", batches=2, iterations="[2, 3, 4]")
    grid = expand(load_plan(path))
    assert grid.axes == {
        "data.batch_size": [1, 2],
        "defense.noise": [0.0, 0.01],
        "attack.iterations": [2, 3, 4],
        "batch": [0, 1],
    }
    assert len(grid.jobs) == 2 * 2 * 3 * 2
    cells = {
        (
            j["cell"]["data.batch_size"],
            j["cell"]["defense.noise"],
            j["invert"]["iterations"],
            j["batch"],
        )
        for j in grid.jobs
    }
    assert len(cells) == 24
    # batches are consecutive slices of the sorted folder, each with its labels
    two = [j for j in grid.jobs if j["capture"]["batch_size"] == 2]
    names = {tuple(n for n, _ in j["inputs"]["images"]) for j in two}
    assert names == {
        ("00_astronaut_face.png", "01_cat_face.png"),
        ("02_cup_and_saucer.png", "03_rocket_on_pad.png"),
    }
    assert {tuple(j["capture_labels"]) for j in two} == {(0, 1), (2, 3)}


def test_zip_ties_axes_together(tmp_path: Path) -> None:
    path = write_plan(
        tmp_path,
        batch_size="[1, 2]",
        iterations="[2, 5]",
        extra='zip = [["batch_size", "iterations"]]',
    )
    text = path.read_text()
    path.write_text(
        'zip = [["batch_size", "iterations"]]\n'
        + text.replace('zip = [["batch_size", "iterations"]]', "")
    )
    grid = expand(load_plan(path))
    pairs = {(j["capture"]["batch_size"], j["invert"]["iterations"]) for j in grid.jobs}
    assert pairs == {(1, 2), (2, 5)}
    assert len(grid.jobs) == 2 * 2  # zipped pair × noise


def test_zip_of_unequal_or_unknown_axes_is_refused(tmp_path: Path) -> None:
    path = write_plan(tmp_path, batch_size="[1, 2]", iterations="[2, 3, 4]")
    path.write_text('zip = [["batch_size", "iterations"], ["nonesuch"]]\n' + path.read_text())
    with pytest.raises(InvalidInputError) as caught:
        expand(load_plan(path))
    assert "the lists differ in length" in caught.value.message
    assert "'nonesuch' is not a swept setting" in caught.value.message


def test_job_ids_are_stable_and_cover_every_setting_and_input_byte(tmp_path: Path) -> None:
    path = write_plan(tmp_path)
    first = expand(load_plan(path))
    again = expand(load_plan(path))
    assert [j["id"] for j in first.jobs] == [j["id"] for j in again.jobs]
    assert len({j["id"] for j in first.jobs}) == len(first.jobs)
    job = first.jobs[0]
    assert job_id(job) == job["id"]
    # every hashed setting changes the id
    for section in ("capture", "invert", "labels", "evaluate"):
        for key, value in job[section].items():
            edited = copy.deepcopy(job)
            edited[section][key] = [value] if not isinstance(value, list) else value + [1]
            assert job_id(edited) != job["id"], (section, key)
    for key in ("threads", "device", "kind", "capture_labels"):
        edited = copy.deepcopy(job)
        edited[key] = "other"
        assert job_id(edited) != job["id"], key
    # what only labels the cell does not
    edited = copy.deepcopy(job)
    edited["attack_name"], edited["batch"] = "renamed", 7
    assert job_id(edited) == job["id"]
    # one input byte changes every job reading that file, and only those
    image = tmp_path / "imgs" / "00_astronaut_face.png"
    data = bytearray(image.read_bytes())
    data[-20] ^= 1
    image.write_bytes(bytes(data))
    changed = expand(load_plan(path))
    reads = [any(n == image.name for n, _ in j["inputs"]["images"]) for j in first.jobs]
    for before, after, read in zip(first.jobs, changed.jobs, reads, strict=True):
        assert (before["id"] != after["id"]) == read


def test_dry_run_prints_the_grid(tmp_path: Path) -> None:
    path = write_plan(tmp_path, batch_size="[1, 2]")
    result = CliRunner().invoke(
        app, ["audit", str(path), "--out", str(tmp_path / "o"), "--dry-run"]
    )
    assert result.exit_code == 0, result.output
    assert "4 jobs" in result.stdout
    assert "data.batch_size (2): 1, 2" in result.stdout
    assert "defense.noise (2): 0.0, 0.01" in result.stdout
    assert "memory per job: about" in result.stdout
    assert not (tmp_path / "o").exists()


def test_an_axis_plot_has_one_line_per_value_of_the_other_axes() -> None:
    from gradinvert.report.axis_plot import axis_series

    rows = [
        {"data.batch_size": b, "defense.noise": n, "batch": k, "psnr": 10.0 * b + n + k}
        for b in (1, 2)
        for n in (0.0, 0.5)
        for k in (0, 1)
    ]
    series = axis_series(rows, "defense.noise", ["data.batch_size"], "psnr")
    assert set(series) == {"batch_size=1", "batch_size=2"}
    # each batch's figure at its point (the plot draws their mean)
    assert series["batch_size=1"] == {"0.0": [10.0, 11.0], "0.5": [10.5, 11.5]}


def test_tick_labels_are_short_and_keep_every_value_apart() -> None:
    from gradinvert.report.axis_plot import tick_labels

    paths = [f"victims/convnet-digits32-epoch{e}.safetensors" for e in (0, 1, 10)]
    assert tick_labels(paths) == ["epoch0", "epoch1", "epoch10"]
    assert tick_labels(["ig", "gradinversion"]) == ["ig", "gradinversion"]
    assert tick_labels(["a-x", "a-y"]) == ["x", "y"]
    assert tick_labels(["run-1", "run-1b"]) == ["1", "1b"]  # never cut a label to nothing
    assert tick_labels([0.0, 0.01]) == ["0", "0.01"]
    assert tick_labels(["only/one.toml"]) == ["only/one.toml"]
