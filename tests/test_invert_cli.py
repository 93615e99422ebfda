"""`gradinvert invert` through the CLI: outputs, reproducibility, Ctrl-C/resume, bad input."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest
import torch
from invert_support import make_update, one_thread  # noqa: F401 (fixture)
from typer.testing import CliRunner

from gradinvert.cli.main import app
from gradinvert.invert.engine import Engine
from gradinvert.io.files import LocalTraining, load_batch, save_update

runner = CliRunner()


def invoke(*args: object):  # noqa: ANN201
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def update_file(tmp_path: Path) -> Path:
    update, _, _ = make_update(count=2, labels=[1, 3], mode="train", share_bn_stats=True)
    path = tmp_path / "u.safetensors"
    save_update(update, path)
    return path


def _ig(update: Path, out: Path, *extra: object) -> list[object]:
    return ["invert", update, "--attack", "ig", "--iterations", 3, "--seeds", 2, "--out", out,
            "--no-progress", *extra]  # fmt: skip


def test_invert_writes_batch_pngs_and_metadata(update_file: Path, tmp_path: Path) -> None:
    out, pngs, ckpt = tmp_path / "r.safetensors", tmp_path / "recon", tmp_path / "run.ckpt"
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"labels": [1, 3]}))
    result = invoke(*_ig(update_file, out, "--labels", labels, "--png-dir", pngs,
                         "--checkpoint", ckpt, "--tv", "0.01"))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout == ""  # everything human goes to stderr
    batch = load_batch(out)
    assert batch.images.shape == (2, 3, 8, 8) and batch.labels.tolist() == [1, 3]
    meta = batch.metadata
    assert meta["attack"] == "ig" and meta["config"]["tv"] == 0.01
    assert meta["config"]["iterations"] == 3 and meta["seed"] == 0
    assert meta["labels"]["source"] == "given"
    assert len(meta["candidates"]) == 2 and len(meta["seed_distances"]) == 2
    assert "created" not in meta
    assert sorted(p.name for p in pngs.iterdir()) == ["000_label1.png", "001_label3.png"]
    assert torch.load(ckpt, weights_only=True)["iteration"] == 3


def test_same_seed_gives_a_byte_identical_file(update_file: Path, tmp_path: Path) -> None:
    paths = [tmp_path / f"r{i}.safetensors" for i in range(3)]
    for path, seed in zip(paths, (4, 4, 5), strict=True):
        result = invoke(*_ig(update_file, path, "--labels", "1,3", "--seed", seed))
        assert result.exit_code == 0, result.output
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert paths[0].read_bytes() != paths[2].read_bytes()
    assert load_batch(paths[2]).metadata["seed"] == 5


def test_gradinversion_with_group_and_bn_prior(update_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.safetensors"
    result = invoke("invert", update_file, "--attack", "gradinversion", "--seeds", 2,
                    "--iterations", 4, "--labels", "1,3", "--out", out, "--group-start", 0,
                    "--registration-start", 0.5, "--group-every", 2, "--init", "rand",
                    "--registration", "translate-flip")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "BN prior reference: shared batch statistics" in result.output
    meta = load_batch(out).metadata
    assert meta["bn_reference"] == "shared batch statistics"
    config = meta["config"]
    assert config["group"] == 0.01 and config["seeds"] == 2 and config["group_start"] == 0
    assert (config["init"], config["registration"]) == ("rand", "translate-flip")
    assert meta["pick"] == "consensus"


def test_fedavg_delta_update(tmp_path: Path) -> None:
    update, _, _ = make_update(count=3, labels=[0, 1, 1], local=LocalTraining(2, 0.1, 2))
    path, out = tmp_path / "d.safetensors", tmp_path / "rd.safetensors"
    save_update(update, path)
    result = invoke(*_ig(path, out, "--labels", "0,1,1"))
    assert result.exit_code == 0, result.output
    assert load_batch(out).metadata["update_kind"] == "delta"


def test_ctrl_c_saves_a_checkpoint_and_resume_matches(
    update_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    straight = tmp_path / "straight.safetensors"
    assert invoke(*_ig(update_file, straight, "--labels", "1,3", "--iterations", 6)).exit_code == 0

    original = Engine.step

    def step_then_sigint(self: Engine) -> None:
        original(self)
        if self.iteration == 2:
            os.kill(os.getpid(), signal.SIGINT)  # handled: stop after this iteration

    out, ckpt = tmp_path / "r.safetensors", tmp_path / "run.ckpt"
    args = _ig(update_file, out, "--labels", "1,3", "--iterations", 6, "--checkpoint", ckpt)
    with monkeypatch.context() as patch:
        patch.setattr(Engine, "step", step_then_sigint)
        result = invoke(*args)
    assert result.exit_code == 130, result.output
    assert "--resume" in result.output and not out.exists()
    assert torch.load(ckpt, weights_only=True)["iteration"] == 2
    result = invoke(*args, "--resume")
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == straight.read_bytes()


def test_labels_of_the_wrong_length(update_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.safetensors"
    result = invoke(*_ig(update_file, out, "--labels", "1,2,3"))
    assert result.exit_code == 2 and "3 labels given for a batch of 2" in result.output
    assert not out.exists()
    result = invoke(*_ig(update_file, out, "--labels", "1,9"))
    assert result.exit_code == 2 and "outside" in result.output


def test_no_labels_and_no_restoration(
    update_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "gradinvert.labels", None)  # import fails
    out = tmp_path / "r.safetensors"
    result = invoke(*_ig(update_file, out))
    assert result.exit_code == 69 and "--labels" in result.output
    assert not out.exists()


def test_labels_are_restored_when_not_given(update_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.safetensors"
    result = invoke(*_ig(update_file, out))
    assert result.exit_code == 0, result.output
    record = load_batch(out).metadata["labels"]
    assert record["source"] == "restored" and record["method"]
    assert sorted(record["labels"]) == [1, 3]  # what restoration found, recorded as used
    assert "labels restored" in result.output


def test_no_labels_and_no_batch_size_to_restore_them(tmp_path: Path) -> None:
    update, _, _ = make_update(count=2, labels=[1, 3])
    update.batch_size = None
    path, out = tmp_path / "u.safetensors", tmp_path / "r.safetensors"
    save_update(update, path)
    result = invoke(*_ig(path, out))
    assert result.exit_code == 2 and "batch size" in result.output
    assert not out.exists()


def test_learned_labels_need_the_batch_size(tmp_path: Path) -> None:
    update, _, _ = make_update("lenet", count=1, size=8, labels=[2], num_classes=4)
    update.batch_size = None
    path, out = tmp_path / "u.safetensors", tmp_path / "r.safetensors"
    save_update(update, path)
    result = invoke("invert", path, "--attack", "dlg", "--iterations", 1, "--out", out)
    assert result.exit_code == 2 and "batch size" in result.output
    assert not out.exists()


def test_update_of_another_model_is_invalid(tmp_path: Path) -> None:
    update, _, _ = make_update(count=2)
    update.model.kwargs["width"] = 6  # the stored parameters belong to width 4
    path, out = tmp_path / "u.safetensors", tmp_path / "r.safetensors"
    save_update(update, path)
    result = invoke(*_ig(path, out, "--labels", "0,1"))
    assert result.exit_code == 65 and "do not fit" in result.output
    assert not out.exists()


def test_update_tensor_of_the_wrong_shape_is_invalid(tmp_path: Path) -> None:
    update, _, _ = make_update(count=2)
    name = next(iter(update.update))
    update.update[name] = torch.zeros(3)
    path, out = tmp_path / "u.safetensors", tmp_path / "r.safetensors"
    save_update(update, path)
    result = invoke(*_ig(path, out, "--labels", "0,1"))
    assert result.exit_code == 65 and name in result.output
    assert not out.exists()


def test_non_finite_update_is_invalid(tmp_path: Path) -> None:
    update, _, _ = make_update(count=2)
    name = next(iter(update.update))
    update.update[name] = update.update[name].clone().fill_(float("nan"))
    path, out = tmp_path / "u.safetensors", tmp_path / "r.safetensors"
    save_update(update, path)
    result = invoke(*_ig(path, out, "--labels", "0,1"))
    assert result.exit_code == 65 and "non-finite" in result.output


def test_missing_inputs_and_bad_options(update_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.safetensors"
    result = invoke(*_ig(tmp_path / "absent.safetensors", out, "--labels", "1,3"))
    assert result.exit_code == 66
    result = invoke(*_ig(update_file, out, "--labels", "1,3", "--resume"))
    assert result.exit_code == 2 and "--checkpoint" in result.output
    ckpt = tmp_path / "none.ckpt"
    result = invoke(*_ig(update_file, out, "--labels", "1,3", "--checkpoint", ckpt, "--resume"))
    assert result.exit_code == 66
    result = invoke(*_ig(update_file, out, "--labels", "1,3", "--optimizer", "sgd"))
    assert result.exit_code == 2 and "--optimizer" in result.output
    result = invoke(*_ig(update_file, out, "--labels", "1,3", "--layers", "some"))
    assert result.exit_code == 2 and "--layers" in result.output
    result = invoke(*_ig(update_file, out, "--labels", "1,3", "--pick", "consensus",
                         "--seeds", 1))  # fmt: skip
    assert result.exit_code == 2
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint")
    result = invoke(*_ig(update_file, out, "--labels", "1,3", "--checkpoint", garbage,
                         "--resume"))  # fmt: skip
    assert result.exit_code == 65
    assert not out.exists()


def test_help_lists_the_presets() -> None:
    result = invoke("invert", "--help")
    assert result.exit_code == 0
    for name in ("dlg", "idlg", "ig", "gradinversion"):
        assert f"{name}:" in result.output


def test_one_seed_on_a_consensus_preset_picks_that_seed_with_a_note(
    update_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "r.safetensors"
    result = invoke("invert", update_file, "--attack", "gradinversion", "--seeds", 1,
                    "--iterations", 2, "--out", out, "--no-progress")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "--pick best" in result.output
    assert load_batch(out).metadata["pick"] == "best"
    # an explicit --pick consensus with one seed is still the user's contradiction
    result = invoke("invert", update_file, "--attack", "gradinversion", "--seeds", 1,
                    "--pick", "consensus", "--out", out, "--no-progress")  # fmt: skip
    assert result.exit_code == 2 and "--pick consensus needs --seeds 2" in result.output
