"""capture and inspect through the CLI: the contract flags, bad input and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from gradinvert.cli.main import app
from gradinvert.io.files import load_batch, load_update
from gradinvert.models import build_model, model_spec

SAMPLES = "samples/images32"
runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def capture_args(tmp: Path, *extra: str) -> list[str]:
    return [
        "capture",
        "--model",
        "lenet",
        "--images",
        SAMPLES,
        "--batch-size",
        "4",
        "--labels",
        "0,1,2,3",
        "--out",
        str(tmp / "u.safetensors"),
        "--truth",
        str(tmp / "t.safetensors"),
        *extra,
    ]


def test_capture_and_inspect_json(tmp_path):
    result = invoke(*capture_args(tmp_path, "--seed", "7"))
    assert result.exit_code == 0, result.output
    update = load_update(tmp_path / "u.safetensors")
    assert update.kind == "gradient" and update.batch_size == 4 and update.seed == 7
    truth = load_batch(tmp_path / "t.safetensors")
    assert truth.labels.tolist() == [0, 1, 2, 3] and truth.images.shape == (4, 3, 32, 32)

    result = invoke("inspect", tmp_path / "u.safetensors", "--json")
    assert result.exit_code == 0
    summary = json.loads(result.stdout)
    assert summary["file"] == "update" and summary["kind"] == "gradient"
    assert summary["model"]["arch"] == "lenet" and summary["input"]["shape"] == [3, 32, 32]
    expected_params = sum(p.numel() for p in build_model(update.model).parameters())
    assert summary["parameters"] == expected_params

    result = invoke("inspect", tmp_path / "t.safetensors")
    assert result.exit_code == 0 and "batch" in result.output


def test_capture_delta_from_batch_file(tmp_path):
    assert invoke(*capture_args(tmp_path)).exit_code == 0
    delta = tmp_path / "d.safetensors"
    result = invoke(
        "capture",
        "--model",
        "lenet",
        "--images",
        tmp_path / "t.safetensors",
        "--local-steps",
        "3",
        "--local-lr",
        "0.1",
        "--local-batch-size",
        "2",
        "--out",
        delta,
    )
    assert result.exit_code == 0, result.output
    update = load_update(delta)
    assert update.kind == "delta" and update.local.steps == 3 and update.local.batch_size == 2


def test_capture_records_defenses(tmp_path):
    result = invoke(*capture_args(tmp_path, "--clip", "1", "--noise", "0.01", "--prune", "0.5"))
    assert result.exit_code == 0, result.output
    names = [d["name"] for d in load_update(tmp_path / "u.safetensors").defense]
    assert names == ["prune", "clip", "noise"]


def test_weights_files_load_and_mismatch_is_an_error(tmp_path):
    spec = model_spec("lenet", 10, (3, 32, 32))
    model = build_model(spec, init_seed=5)
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()}, tmp_path / "w.safetensors"
    )
    torch.save(model.state_dict(), tmp_path / "w.pt")
    for weights in ("w.safetensors", "w.pt"):
        result = invoke(*capture_args(tmp_path, "--weights", str(tmp_path / weights)))
        assert result.exit_code == 0, result.output
        update = load_update(tmp_path / "u.safetensors")
        torch.testing.assert_close(update.params["fc.weight"], model.fc.weight.detach())

    other = build_model(model_spec("lenet", 5, (3, 32, 32)))
    torch.save(other.state_dict(), tmp_path / "bad.pt")
    (tmp_path / "u.safetensors").unlink()
    result = invoke(*capture_args(tmp_path, "--weights", str(tmp_path / "bad.pt")))
    assert result.exit_code == 65
    assert "do not fit" in result.output
    assert not (tmp_path / "u.safetensors").exists()


def _no_outputs(tmp: Path) -> bool:
    return not (tmp / "u.safetensors").exists() and not (tmp / "t.safetensors").exists()


@pytest.mark.parametrize(
    ("extra", "code", "message"),
    [
        (["--labels", "0,1,2"], 2, "3 labels given for a batch of 4"),
        (["--labels", "0,1,2,12"], 2, "outside 0..9"),
        (["--labels", "a,b"], 2, "comma-separated"),
        (["--model", "no-such-net"], 2, "unknown model"),
        (["--model", "no_such_pkg.mod:factory"], 2, "cannot import"),
        (["--model", "torchvision.models:no_factory"], 2, "no callable"),
        (["--mode", "sideways"], 2, "'train' or 'eval'"),
        (["--device", "tpu"], 2, "--device"),
    ],
)
def test_bad_arguments(tmp_path, extra, code, message):
    result = invoke(*capture_args(tmp_path, *extra))
    assert result.exit_code == code, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert _no_outputs(tmp_path)


def test_import_path_model_works(tmp_path):
    result = invoke(*capture_args(tmp_path, "--model", "torchvision.models:resnet18"))
    assert result.exit_code == 0, result.output
    assert load_update(tmp_path / "u.safetensors").model.arch == "torchvision.models:resnet18"


def test_bad_input_files(tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    result = invoke(
        *capture_args(tmp_path)[:4], broken, "--labels", "0", "--out", tmp_path / "u.safetensors"
    )
    assert result.exit_code == 65 and "cannot decode image" in result.output
    assert _no_outputs(tmp_path)

    result = invoke("capture", "--images", tmp_path / "missing", "--labels", "0", "--out", "x")
    assert result.exit_code == 66

    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    assert invoke("inspect", corrupt).exit_code == 65

    truncated = tmp_path / "truncated.safetensors"
    assert invoke(*capture_args(tmp_path)).exit_code == 0
    data = (tmp_path / "u.safetensors").read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    result = invoke("inspect", truncated)
    assert result.exit_code == 65 and "safetensors" in result.output

    foreign = tmp_path / "foreign.safetensors"
    save_file({"x": torch.zeros(2)}, foreign)
    result = invoke("inspect", foreign)
    assert result.exit_code == 65 and "not a gradinvert file" in result.output


def test_module_entry_point_and_help():
    result = subprocess.run(
        [sys.executable, "-m", "gradinvert", "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and "capture" in result.stdout
    for command in ("capture", "inspect"):
        result = invoke(command, "--help")
        assert result.exit_code == 0 and "Usage" in result.output
