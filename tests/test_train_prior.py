"""`train-prior`: the DCGAN recipe, determinism, checkpoint/resume, samples, CLI errors."""

from __future__ import annotations

import hashlib
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors import safe_open
from typer.testing import CliRunner

from gradinvert.cli.main import app
from gradinvert.config import TrainPriorSettings
from gradinvert.generators import (
    DCGANDiscriminator,
    DCGANGenerator,
    dcgan_init_,
    load_generator,
    load_generator_file,
)
from gradinvert.priors import (
    PriorTrainer,
    discriminator_loss,
    generator_loss,
    images_hash,
    train_prior,
)
from gradinvert.runtime.errors import UsageError

runner = CliRunner()
TINY = {"size": 32, "epochs": 2, "batch_size": 4, "ngf": 8}


def invoke(*args: object):  # noqa: ANN201
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models run fastest (and steadiest on a shared machine) on one thread."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Eight random 32 px RGB PNGs."""
    rng = np.random.default_rng(0)
    path = tmp_path / "images"
    path.mkdir()
    for i in range(8):
        pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(path / f"{i:02d}.png")
    return path


def _cli(folder: Path, out: Path, *extra: object) -> list[object]:
    return ["train-prior", "--images", folder, "--size", 32, "--epochs", 2, "--batch-size", 4,
            "--out", out, "--device", "cpu", "--no-progress", *extra]  # fmt: skip


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open API)


def _same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------------- the recipe


def test_discriminator_loss_matches_a_hand_computation() -> None:
    torch.manual_seed(0)
    d = dcgan_init_(DCGANDiscriminator(32, 3, ndf=8), torch.Generator().manual_seed(1))
    real, fake = torch.rand(4, 3, 32, 32) * 2 - 1, torch.rand(4, 3, 32, 32) * 2 - 1
    loss = discriminator_loss(d, real, fake)
    p_real, p_fake = torch.sigmoid(d(real)), torch.sigmoid(d(fake))  # train-mode BN: per batch
    by_hand = F.binary_cross_entropy(p_real, torch.ones(4)) + F.binary_cross_entropy(
        p_fake, torch.zeros(4)
    )
    manual = -(torch.log(p_real).mean() + torch.log(1 - p_fake).mean())
    torch.testing.assert_close(loss, by_hand, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(loss, manual, rtol=1e-5, atol=1e-6)
    g_loss = generator_loss(d, fake)
    torch.testing.assert_close(g_loss, -torch.log(p_fake).mean(), rtol=1e-5, atol=1e-6)


def test_losses_move_and_the_generator_learns(folder: Path) -> None:
    seen: list[tuple[float, float]] = []
    config = TrainPriorSettings(**TINY)
    result = train_prior([folder], config, on_step=lambda _t, info: seen.append(
        (info.loss_d, info.loss_g)))  # fmt: skip
    assert len(seen) == 4 and len(result.losses) == 2  # 8 images / batch 4, 2 epochs
    assert all(np.isfinite(seen).flatten())
    assert any(abs(d - seen[0][0]) > 1e-4 for d, _ in seen[1:])
    untrained = dcgan_init_(DCGANGenerator(32, 3, ngf=8), torch.Generator().manual_seed(0))
    moved = [
        not torch.equal(p, q)
        for p, q in zip(untrained.parameters(), result.generator.parameters(), strict=True)
    ]
    assert all(moved)
    assert not result.generator.training  # eval-ready
    bn = result.generator.main[1]
    assert int(bn.num_batches_tracked) == 4 and not torch.equal(bn.running_mean, torch.zeros(64))
    assert result.training["losses"] == {"d": result.losses[-1][0], "g": result.losses[-1][1]}


def test_same_seed_same_weights_other_seed_others(folder: Path) -> None:
    runs = [train_prior([folder], TrainPriorSettings(**TINY, seed=s)) for s in (3, 3, 4)]
    states = [r.generator.state_dict() for r in runs]
    assert _same_state(states[0], states[1])
    assert not _same_state(states[0], states[2])
    assert runs[0].losses == runs[1].losses


def test_image_order_and_duplicates_do_not_matter(folder: Path) -> None:
    files = sorted(folder.iterdir())
    config = TrainPriorSettings(**{**TINY, "epochs": 1})
    a = train_prior([folder], config)
    b = train_prior([*reversed(files), files[0]], config)
    assert a.training["images_hash"] == b.training["images_hash"]
    assert _same_state(a.generator.state_dict(), b.generator.state_dict())
    assert a.training["images"] == b.training["images"] == 8


def test_images_hash_is_names_and_bytes(folder: Path, tmp_path: Path) -> None:
    files = sorted(folder.iterdir())
    digest = hashlib.sha256()
    for path in files:
        data = path.read_bytes()
        digest.update(path.name.encode() + b"\0" + len(data).to_bytes(8, "little") + data)
    assert images_hash(files) == digest.hexdigest()
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    for path in files:
        (moved / path.name).write_bytes(path.read_bytes())
    assert images_hash(sorted(moved.iterdir())) == digest.hexdigest()  # location-independent
    (moved / files[0].name).write_bytes(files[1].read_bytes())
    assert images_hash(sorted(moved.iterdir())) != digest.hexdigest()


def test_resume_after_epoch_one_equals_the_straight_run(folder: Path, tmp_path: Path) -> None:
    config = TrainPriorSettings(**TINY)
    straight = train_prior([folder], config)
    ckpt = tmp_path / "run.ckpt"
    first = TrainPriorSettings(**{**TINY, "epochs": 1})
    train_prior([folder], first, checkpoint=ckpt)
    assert torch.load(ckpt, weights_only=True)["epoch"] == 1
    resumed = train_prior([folder], config, checkpoint=ckpt, resume=True)
    assert _same_state(straight.generator.state_dict(), resumed.generator.state_dict())
    assert straight.losses == resumed.losses
    state = torch.load(ckpt, weights_only=True)
    assert state["epoch"] == 2 and state["step"] == 4


def test_resume_mid_epoch_equals_the_straight_run(folder: Path, tmp_path: Path) -> None:
    config = TrainPriorSettings(**TINY)
    straight = train_prior([folder], config)
    ckpt = tmp_path / "run.ckpt"

    def stop_after_three(trainer: PriorTrainer, info: object) -> None:
        if trainer.step_count == 3:
            trainer.request_stop()

    with pytest.raises(Exception, match="--resume") as caught:
        train_prior([folder], config, checkpoint=ckpt, on_step=stop_after_three)
    assert caught.value.exit_code == 130
    state = torch.load(ckpt, weights_only=True)
    assert (state["epoch"], state["epoch_step"], state["step"]) == (1, 1, 3)
    one_epoch = TrainPriorSettings(**{**TINY, "epochs": 1})  # the checkpoint is past its end
    with pytest.raises(UsageError, match="give --epochs 2 or more"):
        train_prior([folder], one_epoch, checkpoint=ckpt, resume=True)
    resumed = train_prior([folder], config, checkpoint=ckpt, resume=True)
    assert _same_state(straight.generator.state_dict(), resumed.generator.state_dict())
    assert straight.losses == resumed.losses


# ---------------------------------------------------------------------- the command


def test_cli_writes_a_loadable_half_precision_prior(folder: Path, tmp_path: Path) -> None:
    out, grid = tmp_path / "G.safetensors", tmp_path / "g.png"
    result = invoke(*_cli(folder, out, "--half", "--samples", grid, "--seed", 5))
    assert result.exit_code == 0, result.output
    assert result.stdout == ""  # everything human goes to stderr
    assert "epoch 2/2" in result.output and str(out) in result.output
    assert all(t.dtype in (torch.float16, torch.int64) for t in _tensors(out).values())
    generator = load_generator(str(out), (3, 32, 32))
    assert generator.latent_shape == (100, 1, 1)
    images = generator.module(torch.randn(2, 100, 1, 1))
    assert images.shape == (2, 3, 32, 32) and float(images.abs().max()) <= 1
    stored = load_generator_file(out)
    assert stored.arch == {"name": "dcgan", "size": 32, "channels": 3, "latent": 100, "ngf": 64}
    training = stored.training
    assert training["method"] == "train-prior" and training["recipe"].startswith("DCGAN")
    assert training["images"] == 8
    assert training["images_hash"] == images_hash(sorted(folder.iterdir()))
    assert (training["epochs"], training["batch_size"], training["seed"]) == (2, 4, 5)
    assert training["lr"] == 2e-4 and training["dtype"] == "float16"
    assert set(training["losses"]) == {"d", "g"} and training["seconds"] >= 0
    assert training["torch"] == torch.__version__
    with Image.open(grid) as png:  # 8×8 tiles of 32 px shown at 64 px, 2 px gaps
        assert png.size == (8 * 66 + 2, 8 * 66 + 2)


def test_cli_same_seed_same_tensors(folder: Path, tmp_path: Path) -> None:
    outs = [tmp_path / f"G{i}.safetensors" for i in range(2)]
    for out in outs:
        assert invoke(*_cli(folder, out, "--epochs", 1)).exit_code == 0
    assert _same_state(_tensors(outs[0]), _tensors(outs[1]))
    trainings = [load_generator_file(o).training for o in outs]
    for training in trainings:
        del training["seconds"]
    assert trainings[0] == trainings[1]


def test_cli_globbed_files_after_images(folder: Path, tmp_path: Path) -> None:
    files = sorted(folder.iterdir())
    out = tmp_path / "G.safetensors"
    result = invoke("train-prior", "--images", files[0], *files[1:6], "--images", files[6],
                    "--out", out, "--epochs", 1, "--batch-size", 64, "--no-progress")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "one batch of all 7" in result.output
    training = load_generator_file(out).training
    assert training["images"] == 7 and training["batch_size"] == 7
    assert training["images_hash"] == images_hash(files[:7])


def test_cli_ctrl_c_saves_a_checkpoint_and_resume_matches(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    straight = tmp_path / "straight.safetensors"
    assert invoke(*_cli(folder, straight)).exit_code == 0
    original = PriorTrainer.step

    def step_then_sigint(self: PriorTrainer) -> tuple[float, float]:
        values = original(self)
        if self.step_count == 1:
            os.kill(os.getpid(), signal.SIGINT)  # handled: stop after this step
        return values

    out, ckpt = tmp_path / "G.safetensors", tmp_path / "run.ckpt"
    args = _cli(folder, out, "--checkpoint", ckpt)
    with monkeypatch.context() as patch:
        patch.setattr(PriorTrainer, "step", step_then_sigint)
        result = invoke(*args)
    assert result.exit_code == 130, result.output
    assert "--resume" in result.output and not out.exists()
    assert torch.load(ckpt, weights_only=True)["step"] == 1
    result = invoke(*args, "--resume")
    assert result.exit_code == 0, result.output
    assert "resuming from" in result.output
    assert _same_state(_tensors(out), _tensors(straight))


def test_cli_resume_refuses_another_runs_checkpoint(folder: Path, tmp_path: Path) -> None:
    out, ckpt = tmp_path / "G.safetensors", tmp_path / "run.ckpt"
    assert invoke(*_cli(folder, out, "--epochs", 1, "--checkpoint", ckpt)).exit_code == 0
    out.unlink()
    result = invoke(*_cli(folder, out, "--seed", 1, "--checkpoint", ckpt, "--resume"))
    assert result.exit_code == 2 and "another run" in result.output
    assert not out.exists()
    result = invoke(*_cli(folder, out, "--checkpoint", tmp_path / "none.ckpt", "--resume"))
    assert result.exit_code == 66 and not out.exists()
    (tmp_path / "bad.ckpt").write_bytes(b"not a checkpoint")
    result = invoke(*_cli(folder, out, "--checkpoint", tmp_path / "bad.ckpt", "--resume"))
    assert result.exit_code == 65 and not out.exists()


@pytest.mark.parametrize(
    ("case", "code", "message"),
    [
        ("empty", 65, "no image files"),
        ("missing", 66, "no such file or folder"),
        ("size", 2, "--size: Input should be 32 or 64"),
        ("epochs", 2, "--epochs: Input should be greater than or equal to 1"),
        ("corrupt", 65, "cannot decode"),
        ("none", 2, "--images"),
    ],
)
def test_cli_bad_input(folder: Path, tmp_path: Path, case: str, code: int, message: str) -> None:
    out, grid = tmp_path / "G.safetensors", tmp_path / "g.png"
    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / "broken.png").write_bytes(b"\x89PNG garbage")
    args = {
        "empty": _cli(empty, out),
        "missing": _cli(tmp_path / "nowhere", out),
        "size": _cli(folder, out, "--size", 48),
        "epochs": _cli(folder, out, "--epochs", 0),
        "corrupt": _cli(folder, out, tmp_path / "broken.png"),
        "none": ["train-prior", "--out", out],
    }[case]
    result = invoke(*args, "--samples", grid)
    assert result.exit_code == code, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0]
    assert not out.exists() and not grid.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_checkpoint_records_the_run(folder: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "run.ckpt"
    train_prior([folder], TrainPriorSettings(**{**TINY, "epochs": 1}), checkpoint=ckpt)
    state = torch.load(ckpt, weights_only=True)
    assert {"generator", "discriminator", "opt_g", "opt_d", "data_rng", "noise_rng"} <= set(state)
    assert json.dumps(state["history"])  # plain numbers
