"""`gradinvert import`: updates from state dicts, checked against the model before writing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from typer.testing import CliRunner

from gradinvert.cli.main import app
from gradinvert.client.capture import CaptureConfig, capture_update
from gradinvert.io.files import LocalTraining, load_update
from gradinvert.models import InputSpec, build_model, model_spec

runner = CliRunner()
SPEC = model_spec("convnet", 10, (3, 32, 32))
INPUT = InputSpec((3, 32, 32))
LABELS = torch.tensor([0, 1, 2, 3])


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def _batch() -> torch.Tensor:
    return torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(3))


def _model_args(*extra: object) -> list[object]:
    return ["--model", "convnet", "--num-classes", "10", "--input-shape", "3,32,32", *extra]


def _client_training(model: torch.nn.Module, images: torch.Tensor) -> None:
    """A client as a Flower or PyTorch user writes it: torch's SGD, minibatches 0,1 | 2,3 | 0,1."""
    model.eval()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    inputs = INPUT.normalize(images)
    for start in (0, 2, 0):
        optimizer.zero_grad()
        F.cross_entropy(model(inputs[start : start + 2]), LABELS[start : start + 2]).backward()
        optimizer.step()


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_delta_from_state_dicts_equals_captures_delta(tmp_path: Path, suffix: str):
    model = build_model(SPEC, init_seed=0)
    images = _batch()
    local = LocalTraining(steps=3, lr=0.1, batch_size=2)
    expected = capture_update(model, SPEC, INPUT, images, LABELS, CaptureConfig(local=local))

    def save(state: dict[str, torch.Tensor], name: str) -> Path:
        path = tmp_path / (name + suffix)
        state = {k: v.detach().clone().contiguous() for k, v in state.items()}
        torch.save(state, path) if suffix == ".pt" else save_file(state, str(path))
        return path

    before = save(model.state_dict(), "global")
    _client_training(model, images)
    after = save(model.state_dict(), "client")
    out = tmp_path / "d.safetensors"
    result = invoke(
        "import", "--before", before, "--after", after, *_model_args(),
        "--local-steps", 3, "--local-lr", 0.1, "--local-batch-size", 2, "--batch-size", 4,
        "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    imported = load_update(out)
    assert imported.kind == "delta" and imported.batch_size == 4
    assert imported.local == LocalTraining(steps=3, lr=0.1, batch_size=2)
    assert sorted(imported.update) == sorted(expected.update)
    for name, value in expected.update.items():
        torch.testing.assert_close(imported.update[name], value, rtol=1e-5, atol=1e-7)
    for name, value in expected.params.items():
        assert torch.equal(imported.params[name], value), name
    for name, value in expected.buffers.items():
        assert torch.equal(imported.buffers[name], value), name
    assert imported.source["tool"] == "import" and imported.source["local"] == "given"


def test_gradient_state_dict_round_trips(tmp_path: Path):
    model = build_model(SPEC, init_seed=5)
    captured = capture_update(model, SPEC, INPUT, _batch(), LABELS, CaptureConfig())
    torch.save(model.state_dict(), tmp_path / "global.pt")
    save_file(captured.update, str(tmp_path / "grads.safetensors"))
    out = tmp_path / "g.safetensors"
    result = invoke(
        "import", "--gradient", tmp_path / "grads.safetensors", "--before",
        tmp_path / "global.pt", *_model_args(), "--batch-size", 4, "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    imported = load_update(out)
    assert imported.kind == "gradient" and imported.local is None
    for group in ("update", "params", "buffers"):
        mine, theirs = getattr(imported, group), getattr(captured, group)
        assert sorted(mine) == sorted(theirs)
        assert all(torch.equal(mine[k], theirs[k]) for k in theirs), group

    summary = json.loads(invoke("inspect", out, "--json").stdout)
    assert summary["source"]["tool"] == "import"
    assert summary["source"]["files"]["gradient"].endswith("grads.safetensors")
    assert len(summary["source"]["sha256"]["before"]) == 64


def _spoil(state: dict[str, torch.Tensor], kind: str) -> str:
    """Break ``state`` in one way; return what the error message must name."""
    if kind == "missing":
        del state["features.0.weight"]
        return "1 missing (features.0.weight)"
    if kind == "extra":
        state["head.weight"] = torch.zeros(3)
        return "1 not in the model (head.weight)"
    if kind == "shape":
        state["fc.weight"] = state["fc.weight"][:5].clone()
        return "fc.weight (5, 4096) vs (10, 4096)"
    if kind == "dtype":
        state["fc.bias"] = state["fc.bias"].double()
        return "fc.bias float64 vs float32"
    state["features.3.weight"][0, 0, 0, 0] = float("nan")
    return "NaN or infinite values (features.3.weight)"


KINDS = ["missing", "extra", "shape", "dtype", "nan"]


@pytest.mark.parametrize("kind", KINDS)
def test_each_mismatch_is_exit_65_and_writes_nothing(tmp_path: Path, kind: str):
    model = build_model(SPEC, init_seed=0)
    torch.save(model.state_dict(), tmp_path / "global.pt")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    expected = _spoil(state, kind)
    torch.save(state, tmp_path / "client.pt")
    out = tmp_path / "d.safetensors"
    result = invoke(
        "import", "--before", tmp_path / "global.pt", "--after", tmp_path / "client.pt",
        *_model_args(), "--out", out,
    )  # fmt: skip
    assert result.exit_code == 65, result.output
    assert expected in result.output and "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["client.pt", "global.pt"]


def test_all_mismatches_of_all_inputs_in_one_message(tmp_path: Path):
    model = build_model(SPEC, init_seed=0)
    grads = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    wanted = [_spoil(grads, kind) for kind in KINDS]
    wanted.append(_spoil(before, "extra"))
    torch.save(grads, tmp_path / "grads.pt")
    torch.save(before, tmp_path / "global.pt")
    out = tmp_path / "g.safetensors"
    result = invoke(
        "import", "--gradient", tmp_path / "grads.pt", "--before", tmp_path / "global.pt",
        *_model_args(), "--out", out,
    )  # fmt: skip
    assert result.exit_code == 65
    text = " ".join(result.output.split())
    assert all(w in text for w in wanted), text
    assert "grads.pt: tensors do not fit" in text and "global.pt: tensors do not fit" in text
    assert not out.exists()


def test_unknown_local_training_is_recorded_and_invert_says_what_it_assumes(tmp_path: Path):
    model = build_model(SPEC, init_seed=0)
    torch.save(model.state_dict(), tmp_path / "global.pt")
    _client_training(model, _batch())
    torch.save(model.state_dict(), tmp_path / "client.pt")
    out = tmp_path / "d.safetensors"
    result = invoke(
        "import", "--before", tmp_path / "global.pt", "--after", tmp_path / "client.pt",
        *_model_args(), "--batch-size", 4, "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    update = load_update(out)
    assert update.local is None and update.threat["local_known"] is False
    assert update.source["local"] == "unknown"

    labels = invoke("labels", out)
    assert labels.exit_code == 0 and json.loads(labels.stdout)["labels"] == [0, 1, 2, 3]
    recon = tmp_path / "r.safetensors"
    result = invoke(
        "invert", out, "--attack", "ig", "--iterations", 2, "--seeds", 1, "--device", "cpu",
        "--no-progress", "--out", recon,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "local training is unknown: assuming one SGD step" in " ".join(result.output.split())
    assert recon.exists()


@pytest.mark.parametrize(
    "extra",
    [
        ["--local-steps", "3"],  # without --local-lr
        ["--local-steps", "3", "--local-lr", "0.1"],  # no batch size at all
        ["--local-steps", "0", "--local-lr", "0.1", "--batch-size", "4"],
        ["--input-shape", "3,32"],
    ],
)
def test_inconsistent_flags_are_usage_errors(tmp_path: Path, extra: list[str]):
    model = build_model(SPEC, init_seed=0)
    torch.save(model.state_dict(), tmp_path / "global.pt")
    result = invoke(
        "import", "--before", tmp_path / "global.pt", "--after", tmp_path / "global.pt",
        *_model_args(), *extra, "--out", tmp_path / "d.safetensors",
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert not (tmp_path / "d.safetensors").exists()


def test_missing_inputs(tmp_path: Path):
    out = tmp_path / "d.safetensors"
    assert invoke("import", *_model_args(), "--out", out).exit_code == 2
    result = invoke(
        "import", "--before", tmp_path / "no.pt", "--after", tmp_path / "no.pt",
        *_model_args(), "--out", out,
    )  # fmt: skip
    assert result.exit_code == 66 and not out.exists()
