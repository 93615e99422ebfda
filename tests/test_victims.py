"""Trained victims (gradinvert.models.victims, samples/train_victims.py): training helps, the
files load through ``capture --weights``, runs are byte-identical, reserved digits stay unread."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
from typer.testing import CliRunner

from gradinvert.cli.main import app
from gradinvert.io.files import load_update
from gradinvert.io.images import load_images
from gradinvert.models import build_model, load_state, model_spec, read_state_dict
from gradinvert.models.spec import NORMALIZATIONS
from gradinvert.models.victims import VictimRecipe, read_victim_info, train_victim

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
SHIPPED = SAMPLES / "victims"


def load_script() -> ModuleType:
    """``samples/train_victims.py`` imported from its path (it is not part of the package)."""
    spec = importlib.util.spec_from_file_location("train_victims", SAMPLES / "train_victims.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


def digits(first: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Digits ``first … first+count-1`` and their labels, read here independently of the
    script."""
    names = [f"{i:04d}.png" for i in range(first, first + count)]
    known = json.loads((SAMPLES / "digits32" / "labels.json").read_text())
    images, _ = load_images([SAMPLES / "digits32" / n for n in names])
    return images, torch.tensor([known[n] for n in names])


def accuracy(path: Path, arch: str, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Validation accuracy of a weights file, computed the way capture builds the model."""
    model = build_model(model_spec(arch, 10, (3, 32, 32)), init_seed=None)
    load_state(model, read_state_dict(path), str(path))
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in NORMALIZATIONS["imagenet"])
    with torch.no_grad():
        predicted = model.eval()((images - mean) / std).argmax(1)
    return float((predicted == labels).float().mean())


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, list]:
    """convnet trained on 320 tuning digits for 2 epochs, checkpoints after 0, 1, 2."""
    out = tmp_path_factory.mktemp("victims")
    recipe = VictimRecipe(arch="convnet", epochs=(0, 1, 2), batch_size=16, threads=1)
    checkpoints = train_victim(recipe, digits(0, 320), out, digits(1400, 100), "digits32")
    return out, checkpoints


def test_training_lowers_the_loss_and_beats_chance_on_validation_digits(tiny):
    out, checkpoints = tiny
    assert [c.epoch for c in checkpoints] == [0, 1, 2]
    assert [c.steps for c in checkpoints] == [0, 20, 40]
    losses = [c.train_loss for c in checkpoints]
    assert losses[0] > 2.0 and losses[2] < 0.5  # ln 10 = 2.30 at chance
    val_images, val_labels = digits(1400, 100)
    measured = [accuracy(c.path, "convnet", val_images, val_labels) for c in checkpoints]
    assert measured == pytest.approx([c.val_accuracy for c in checkpoints])
    assert measured[0] < 0.3 and measured[2] > 0.6  # chance is 0.1


def test_epoch0_is_the_init_capture_builds_and_metadata_describes_the_file(tiny):
    out, checkpoints = tiny
    state = read_state_dict(checkpoints[0].path)
    init = build_model(model_spec("convnet", 10, (3, 32, 32)), init_seed=0).state_dict()
    assert state.keys() == init.keys()
    assert all(torch.equal(state[k], init[k]) for k in init)
    trained = read_state_dict(checkpoints[2].path)
    assert not torch.equal(trained["fc.weight"], init["fc.weight"])
    assert trained["features.1.running_var"].std() > 0  # BN statistics were learnt
    info = read_victim_info(checkpoints[2].path)
    assert info is not None
    assert info["epoch"] == 2 and info["model"]["arch"] == "convnet"
    assert info["normalize"] == "imagenet" and info["train_images"] == 320


def test_a_checkpoint_loads_through_capture_weights(tiny, tmp_path):
    _, checkpoints = tiny
    path = checkpoints[2].path
    result = CliRunner().invoke(
        app,
        [
            "capture",
            "--model",
            "convnet",
            "--weights",
            str(path),
            "--images",
            str(SAMPLES / "digits32"),
            "--start",
            "1400",
            "--batch-size",
            "4",
            "--device",
            "cpu",
            "--out",
            str(tmp_path / "u.safetensors"),
        ],
    )
    assert result.exit_code == 0, result.output
    update = load_update(tmp_path / "u.safetensors")
    state = read_state_dict(path)
    for name, value in {**update.params, **update.buffers}.items():
        assert torch.equal(value, state[name]), name


def test_later_epochs_do_not_change_earlier_checkpoints(tiny, tmp_path):
    out, _ = tiny
    recipe = VictimRecipe(arch="convnet", epochs=(1,), batch_size=16, threads=1)
    (short,) = train_victim(recipe, digits(0, 320), tmp_path, None, "digits32")
    assert short.path.read_bytes() != (out / short.path.name).read_bytes()  # metadata differs
    a, b = read_state_dict(short.path), read_state_dict(out / short.path.name)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_script_twice_gives_byte_identical_files(tmp_path):
    script = load_script()
    args = ["--models", "convnet", "--epochs", "0,1", "--train-limit", "64", "--val-limit", "8"]
    for run in ("a", "b"):
        assert script.main([*args, "--threads", "1", "--out", str(tmp_path / run)]) == 0
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == ["convnet-digits32-epoch0.safetensors", "convnet-digits32-epoch1.safetensors"]
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_the_script_reads_only_tuning_and_validation_digits(tmp_path, monkeypatch):
    script = load_script()
    assert [p.name for p in script.digit_files("prior_training")] == [
        f"{i:04d}.png" for i in range(1400)
    ]
    assert [p.name for p in script.digit_files("validation")] == [
        f"{i:04d}.png" for i in range(1400, 1500)
    ]
    read: list[Path] = []
    real = script.load_images

    def spy(paths, *a, **k):
        read.extend(Path(p) for p in paths)
        return real(paths, *a, **k)

    monkeypatch.setattr(script, "load_images", spy)
    args = ["--models", "convnet", "--epochs", "0", "--train-limit", "16", "--val-limit", "4"]
    assert script.main([*args, "--out", str(tmp_path)]) == 0
    indices = [int(p.stem) for p in read]
    assert indices == [*range(16), *range(1400, 1404)]
    assert all(p.parent == SAMPLES / "digits32" for p in read)


def test_a_split_reaching_reserved_digits_is_refused(tmp_path, monkeypatch):
    script = load_script()
    (tmp_path / "splits.json").write_text(json.dumps({"digits": {"validation": "1400-1599"}}))
    monkeypatch.setattr(script, "SAMPLES", tmp_path)
    with pytest.raises(SystemExit, match="reserved"):
        script.digit_files("validation")


@pytest.mark.parametrize(
    "bad", [{"epochs": ()}, {"epochs": (1, 0)}, {"normalize": "x"}, {"batch_size": 0}]
)
def test_bad_recipes_are_refused(bad):
    with pytest.raises(ValueError):
        VictimRecipe(**bad)


@pytest.mark.parametrize("epoch", [0, 1, 5])
def test_shipped_convnet_checkpoints_score_what_they_say(epoch):
    path = SHIPPED / f"convnet-digits32-epoch{epoch}.safetensors"
    info = read_victim_info(path)
    assert info is not None and info["epoch"] == epoch and info["train_images"] == 1400
    measured = accuracy(path, "convnet", *digits(1400, 100))
    assert measured == pytest.approx(info["val_accuracy"])
    assert (measured > 0.8) if epoch > 0 else (measured < 0.3)
