"""Learned inverters (`train-inverter`, `invert --attack git`, `--init git`): pairs equal
capture's updates, the exact linear relation, shapes, determinism, resume, CLI errors."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from invert_support import make_update, one_thread, photos  # noqa: F401 (fixture)
from PIL import Image
from typer.testing import CliRunner

from gradinvert.cli.main import app
from gradinvert.client.capture import CaptureConfig, capture_update
from gradinvert.client.defenses import DefenseConfig
from gradinvert.config import TrainInverterSettings, preset
from gradinvert.invert import run_attack
from gradinvert.invert.engine import InterruptedRun
from gradinvert.invert.spaces import PixelSpace
from gradinvert.inverter import (
    PairMaker,
    build_inverter,
    load_inverter,
    save_inverter,
    train_inverter,
)
from gradinvert.inverter.git import GitInverter
from gradinvert.inverter.mlp import MlpInverter
from gradinvert.inverter.train import matched_mse, parse_augment
from gradinvert.io.files import BatchFile, load_batch, save_batch, save_update
from gradinvert.models import build_model, model_spec
from gradinvert.models.spec import NORMALIZATIONS, InputSpec

runner = CliRunner()
TINY = TrainInverterSettings(pairs=24, epochs=3, batch=8, val_fraction=0.25, width=8)


def invoke(*args: object):  # noqa: ANN201
    return runner.invoke(app, [str(a) for a in args])


def _capture(
    arch: str, images: torch.Tensor, labels: list[int], seed: int = 0, init: int = 0, **kw
):  # noqa: ANN003, ANN202
    """The update of ``arch`` (weights seeded ``init``) on ``images``, capture seed ``seed``."""
    mean, std = NORMALIZATIONS["imagenet"]
    spec_in = InputSpec(tuple(images.shape[1:]), mean, std)
    spec = model_spec(arch, 4, spec_in.shape, **({"width": 4} if arch == "convnet" else {}))
    model = build_model(spec, init_seed=init)
    return capture_update(
        model, spec, spec_in, images, torch.tensor(labels), CaptureConfig(seed=seed, **kw)
    )


def _images(count: int = 24, size: int = 16) -> torch.Tensor:
    return photos(min(count, 30), size).repeat(2, 1, 1, 1)[:count]


# ---------------------------------------------------------------- pairs


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("defense", [DefenseConfig(), DefenseConfig(noise=0.01, prune=0.5)])
def test_fast_pairs_equal_capture_tensor_by_tensor(mode: str, defense: DefenseConfig) -> None:
    images = _images(4)
    template = _capture("convnet", images[:1], [0], mode=mode, defense=defense)
    maker = PairMaker(template)
    assert maker.fast
    labels = torch.tensor([1, 0, 3, 2])
    pairs = maker.make(images, labels, first_seed=7)
    for j, pair in enumerate(pairs):
        direct = _capture(
            "convnet", images[j : j + 1], [int(labels[j])], mode=mode, defense=defense, seed=7 + j
        )
        assert pair.update.keys() == direct.update.keys()
        for name, value in direct.update.items():
            scale = float(value.abs().max())  # vmapped vs. plain autograd: float rounding only
            torch.testing.assert_close(pair.update[name], value, rtol=1e-4, atol=1e-5 * scale)


def test_pairs_of_batches_and_deltas_are_capture_itself() -> None:
    from gradinvert.io.files import LocalTraining

    images = _images(4)
    template = _capture("lenet", images[:2], [0, 1], local=LocalTraining(2, 0.1, 1))
    maker = PairMaker(template)
    assert not maker.fast and maker.batch_size == 2
    pairs = maker.make(images, torch.tensor([0, 1, 2, 3]), first_seed=3)
    second = _capture("lenet", images[2:], [2, 3], local=LocalTraining(2, 0.1, 1), seed=3 + 1)
    for name, value in second.update.items():
        assert torch.equal(pairs[1].update[name], value)


# ---------------------------------------------------------------- the architecture


def test_top_linear_adjoint_is_the_layer_input_for_one_sample() -> None:
    images = _images(1)
    template = _capture("lenet", images, [2])
    model = build_model(template.model, init_seed=0)
    seen = {}
    model.fc.register_forward_hook(lambda m, i, o: seen.setdefault("x", i[0].detach()))
    model(template.input.normalize(images))
    inverter = GitInverter(model.eval(), (3, 16, 16), 1)
    grad_w, grad_b = template.update["fc.weight"], template.update["fc.bias"]
    v = inverter.top_layer.adjoint(grad_b.view(1, 1, -1), grad_w.view(1, *grad_w.shape))
    recovered = v[0, 0] / grad_b.pow(2).sum()
    torch.testing.assert_close(recovered, seen["x"][0], rtol=1e-4, atol=1e-6)
    # the same relation row by row: ∇W_c / ∇b_c for every class c
    for c in range(grad_b.numel()):
        torch.testing.assert_close(grad_w[c] / grad_b[c], seen["x"][0], rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize(
    ("arch", "size", "batch"), [("lenet", 16, 1), ("convnet", 16, 2), ("resnet18", 32, 2)]
)
def test_inverter_shapes(arch: str, size: int, batch: int) -> None:
    images = _images(batch, size)
    template = _capture(arch, images, list(range(batch)))
    for kind in ("git", "mlp"):
        settings = {"width": 8} if kind == "git" else {"hidden": 16, "max_inputs": 4096}
        inverter = build_inverter(kind, template, settings)
        encoded = inverter.encode(template.update)
        stacked = {k: torch.stack([v, v, v]) for k, v in encoded.items()}
        out = inverter(stacked)
        assert out.shape == (3, batch, 3, size, size)
        assert float(out.detach().min()) >= 0.0 and float(out.detach().max()) <= 1.0


def test_git_projects_large_layers_and_keeps_small_ones() -> None:
    template = _capture("resnet18", _images(1, 32), [0])
    inverter = build_inverter("git", template, {"max_channels": 8})
    encoded = inverter.encode(template.update)
    assert encoded["layer4.1.conv2"].shape == (8, 512, 3, 3)  # 512 output channels → 8
    assert encoded["fc"].shape == (4, 512)  # the top layer is read whole
    assert sum(v.numel() for v in encoded.values()) < 400_000  # of 11 M gradient entries


def test_mlp_count_sketch_matches_a_direct_computation() -> None:
    template = _capture("lenet", _images(1), [0])
    shapes = {n: tuple(t.shape) for n, t in template.update.items()}
    inverter = MlpInverter(shapes, (3, 16, 16), 1, hidden=8, max_inputs=64)
    assert inverter.sketched
    flat = np.concatenate([template.update[n].numpy().ravel() for n in sorted(shapes)])
    sketch = np.zeros(64)
    np.add.at(sketch, inverter.bucket.numpy(), flat * inverter.sign.numpy())
    sketch /= np.sqrt((sketch**2).mean())
    np.testing.assert_allclose(inverter.encode(template.update)["flat"].numpy(), sketch, rtol=1e-4)


def test_matched_mse_is_the_best_assignment() -> None:
    rng = torch.Generator().manual_seed(0)
    estimates, images = (
        torch.rand(2, 3, 1, 4, 4, generator=rng),
        torch.rand(2, 3, 1, 4, 4, generator=rng),
    )
    found = matched_mse(estimates, images)
    for p in range(2):
        best = min(
            np.mean(
                [float((estimates[p, i] - images[p, j]).pow(2).mean()) for i, j in enumerate(perm)]
            )
            for perm in itertools.permutations(range(3))
        )
        assert float(found[p]) == pytest.approx(best, rel=1e-5)


# ---------------------------------------------------------------- training


def test_training_is_seeded_and_its_validation_loss_falls() -> None:
    images = _images(24)
    template = _capture("lenet", images[:1], [0])
    config = TrainInverterSettings(pairs=48, epochs=6, batch=8, val_fraction=0.25, width=8, lr=3e-3)
    first = train_inverter(template, images, None, config, progress=False)
    second = train_inverter(template, images, None, config, progress=False)
    a, b = first.inverter.state_dict(), second.inverter.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    history = [h["val_mse"] for h in first.summary["history"]]
    assert min(history[1:]) < history[0]
    assert first.summary["best_val_mse"] == min(history)


def test_resume_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    images = _images(24)
    template = _capture("lenet", images[:1], [0])
    whole = train_inverter(template, images, None, TINY, progress=False)
    checkpoint = tmp_path / "run.pt"

    def stop_early(trainer, info) -> None:  # noqa: ANN001
        if trainer.epoch == 1 and trainer.step == 1:
            trainer.request_stop()

    with pytest.raises(InterruptedRun):
        train_inverter(
            template, images, None, TINY, checkpoint=checkpoint, progress=False, on_step=stop_early
        )
    resumed = train_inverter(
        template, images, None, TINY, checkpoint=checkpoint, resume=True, progress=False
    )
    a, b = whole.inverter.state_dict(), resumed.inverter.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert whole.summary["history"] == resumed.summary["history"]


def test_pairs_cache_gives_the_same_training(tmp_path: Path) -> None:
    images = _images(24)
    template = _capture("lenet", images[:1], [0])
    first = train_inverter(template, images, None, TINY, pairs_cache=tmp_path, progress=False)
    assert len(list(tmp_path.glob("pairs-*.safetensors"))) == 1
    messages: list[str] = []
    again = train_inverter(
        template, images, None, TINY, pairs_cache=tmp_path, progress=False, log=messages.append
    )
    assert any("from the cache" in m for m in messages)
    a, b = first.inverter.state_dict(), again.inverter.state_dict()
    assert all(torch.allclose(a[k], b[k]) for k in a)


def test_augment_parsing() -> None:
    assert parse_augment("noise:0.1,prune:0.99") == DefenseConfig(noise=0.1, prune=0.99)
    with pytest.raises(Exception, match="KIND:VALUE"):
        parse_augment("blur:3")


# ---------------------------------------------------------------- using an inverter


@pytest.fixture
def trained(tmp_path: Path) -> tuple[Path, object]:
    images = _images(24)
    template = _capture("lenet", images[:1], [0])
    result = train_inverter(template, images, None, TINY, progress=False)
    path = tmp_path / "inv.safetensors"
    save_inverter(path, result.inverter, template, result.summary)
    return path, template


def test_saved_inverter_gives_the_same_estimate(trained) -> None:  # noqa: ANN001
    path, template = trained
    loaded = load_inverter(path)
    encoded = {k: v.unsqueeze(0) for k, v in loaded.inverter.encode(template.update).items()}
    again = load_inverter(path)
    e2 = {k: v.unsqueeze(0) for k, v in again.inverter.encode(template.update).items()}
    assert torch.equal(loaded.inverter(encoded), again.inverter(e2))


def test_init_git_starts_every_seed_at_the_estimate(trained) -> None:  # noqa: ANN001
    path, template = trained
    from gradinvert.inverter import estimate

    x_git, _ = estimate(load_inverter(path), template)
    space = PixelSpace((1, 3, 16, 16), template.input, "cpu", init="git", reference=x_git)
    start = space.fresh(3, torch.Generator().manual_seed(0))["x"]
    pixels = start * space.std + space.mean
    torch.testing.assert_close(pixels, x_git.expand(3, -1, -1, -1, -1), rtol=0, atol=1e-6)
    # through run_attack: a near-zero learning rate leaves the estimate where it started
    config = preset(
        "ig", iterations=1, lr=1e-9, init="git", inverter=str(path), init_noise=0.0, seeds=2
    )
    result = run_attack(template, [0], config, progress=False)
    torch.testing.assert_close(result.images, x_git, rtol=0, atol=1e-4)
    assert result.metadata["inverter"]["arch"] == "git"


def test_inverter_prior_is_the_mean_squared_distance_to_the_estimate() -> None:
    reference = torch.rand(2, 3, 4, 4)
    spec = InputSpec((3, 4, 4), *NORMALIZATIONS["imagenet"])
    space = PixelSpace((2, 3, 4, 4), spec, "cpu", reference=reference, anchor=0.5)
    x = torch.rand(2, 3, 4, 4)
    normalized = spec.normalize(x)
    expected = 0.5 * float(((x - reference) ** 2).mean())
    assert float(space.penalty({"x": normalized})) == pytest.approx(expected, rel=1e-5)


# ---------------------------------------------------------------- the CLI


def _folder(tmp_path: Path, count: int, size: int = 16) -> Path:
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, image in enumerate(_images(count, size)):
        array = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(array).save(folder / f"{i:03d}.png")
    return folder


def test_cli_train_then_invert_with_and_from_the_inverter(tmp_path: Path) -> None:
    folder = _folder(tmp_path, 20)
    template = tmp_path / "t.safetensors"
    assert invoke("capture", "--model", "lenet", "--num-classes", 4, "--images", folder,
                  "--batch-size", 1, "--labels", 0, "--out", template).exit_code == 0  # fmt: skip
    inv = tmp_path / "inv.safetensors"
    result = invoke("train-inverter", template, "--images", folder, "--pairs", 16, "--epochs", 2,
                    "--batch", 8, "--width", 8, "--out", inv, "--no-progress")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "drawn uniformly" in result.output
    out = tmp_path / "r.safetensors"
    result = invoke("invert", template, "--attack", "git", "--inverter", inv, "--out", out)
    assert result.exit_code == 0, result.output
    batch = load_batch(out)
    assert batch.images.shape == (1, 3, 16, 16)
    assert batch.metadata["inverter"]["sha256"] == load_inverter(inv).sha256
    out2 = tmp_path / "r2.safetensors"
    result = invoke("invert", template, "--attack", "ig", "--init", "git", "--inverter", inv,
                    "--iterations", 3, "--inverter-prior", 0.1, "--out", out2,
                    "--no-progress")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "inverter's estimate" in result.output


def test_cli_refuses_an_inverter_of_another_model_input_or_batch(tmp_path: Path, trained) -> None:  # noqa: ANN001
    path, _ = trained
    cases = {
        "architecture": _capture("convnet", _images(1), [0]),
        "input size": _capture("lenet", _images(1, 8), [0]),
        "batch size": _capture("lenet", _images(2), [0, 1]),
    }
    for word, update in cases.items():
        file = tmp_path / f"{word.replace(' ', '_')}.safetensors"
        save_update(update, file)
        out = tmp_path / "never.safetensors"
        result = invoke("invert", file, "--attack", "git", "--inverter", path, "--out", out)
        assert result.exit_code == 65, result.output
        assert word in result.output and not out.exists()


def test_cli_warns_on_parameter_discrepancy(tmp_path: Path, trained) -> None:  # noqa: ANN001
    path, _ = trained
    drifted = _capture("lenet", _images(1), [0], init=1)  # other initial weights
    file = tmp_path / "drift.safetensors"
    save_update(drifted, file)
    result = invoke("invert", file, "--attack", "git", "--inverter", path, "--labels", "0",
                    "--out", tmp_path / "r.safetensors")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "relative distance" in result.output


def test_cli_bad_templates_and_too_few_images(tmp_path: Path) -> None:
    folder = _folder(tmp_path, 3)
    batch = tmp_path / "batch.safetensors"
    save_batch(BatchFile(_images(2), torch.tensor([0, 1])), batch)
    result = invoke("train-inverter", batch, "--images", folder, "--out", tmp_path / "i.st")
    assert result.exit_code == 65 and "update" in result.output
    template = tmp_path / "t.safetensors"
    save_update(_capture("lenet", _images(2), [0, 1]), template)
    out = tmp_path / "i.safetensors"
    result = invoke("train-inverter", template, "--images", folder, "--out", out)
    assert result.exit_code == 2 and "at least 4" in result.output
    assert not out.exists()
    result = invoke("invert", template, "--attack", "git", "--out", out)
    assert result.exit_code == 2 and "--inverter" in result.output


def test_cli_git_refuses_search_settings_and_init_git_refuses_gias(tmp_path: Path, trained) -> None:  # noqa: ANN001
    path, template = trained
    file = tmp_path / "t.safetensors"
    save_update(template, file)
    out = tmp_path / "r.safetensors"
    result = invoke("invert", file, "--attack", "git", "--inverter", path, "--iterations", 5,
                    "--out", out)  # fmt: skip
    assert result.exit_code == 2 and "--iterations" in result.output and not out.exists()
    result = invoke("invert", file, "--attack", "gias", "--generator", "dcgan", "--init", "git",
                    "--inverter", path, "--out", out)  # fmt: skip
    assert result.exit_code == 2 and "--search x" in result.output and not out.exists()


def test_git_refuses_models_it_cannot_mirror() -> None:
    from torch import nn

    from gradinvert.inverter.trace import trace_model
    from gradinvert.runtime.errors import UsageError

    grouped = nn.Sequential(nn.Conv2d(4, 4, 3, groups=2), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    with pytest.raises(UsageError, match="--arch mlp"):
        trace_model(grouped, (4, 8, 8))
    no_linear_end = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    with pytest.raises(UsageError, match="linear layer"):
        trace_model(no_linear_end, (3, 8, 8))
    units = trace_model(build_model(model_spec("resnet18", 4, (3, 32, 32))), (3, 32, 32)).units
    blocks = [u for u in units if hasattr(u, "main")]
    assert len(units) == 10 and len(blocks) == 8  # stem, 8 residual blocks, fc
    assert sum(b.shortcut is not None for b in blocks) == 3  # layer2-4 downsample
