"""The DCGAN generator's ``upsample`` option (resize-then-convolve) and its train-prior flags."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from invert_support import one_thread  # noqa: F401 (autouse fixture)
from PIL import Image
from torch import nn
from typer.testing import CliRunner

from gradinvert.cli.main import app
from gradinvert.config import TrainPriorSettings
from gradinvert.generators import (
    DCGANGenerator,
    dcgan_init_,
    load_generator,
    load_generator_file,
    save_generator,
)
from gradinvert.priors import train_prior
from gradinvert.runtime.errors import InvalidInputError, UsageError

runner = CliRunner()


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("upsample", ["nearest", "bilinear"])
@pytest.mark.parametrize("size", [32, 64])
def test_resize_convolve_layers_and_shape(upsample: str, size: int) -> None:
    ngf = 8
    generator = DCGANGenerator(size=size, ngf=ngf, upsample=upsample).eval()
    resizes = [m for m in generator.modules() if isinstance(m, nn.Upsample)]
    assert len(resizes) == (3 if size == 32 else 4)
    assert all(m.mode == upsample and m.scale_factor == 2 for m in resizes)
    convs = [tuple(m.weight.shape) for m in generator.modules() if isinstance(m, nn.Conv2d)]
    widths = [8 * ngf, 4 * ngf, 2 * ngf, ngf] + ([ngf] if size == 64 else [])
    assert convs == [(o, i, 3, 3) for i, o in zip(widths, widths[1:], strict=False)]
    transposed = [m for m in generator.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [m.stride for m in transposed] == [(1, 1), (1, 1)]  # 1 → 4 px and the 1×1 output
    weights = 100 * 8 * ngf * 16 + sum(i * o * 9 for i, o in zip(widths, widths[1:], strict=False))
    assert _count(generator) == weights + ngf * 3 + 2 * sum(widths)  # + output, BN
    with torch.no_grad():
        out = generator(torch.randn(3, 100, 1, 1))
    assert out.shape == (3, 3, size, size) and float(out.abs().max()) <= 1.0
    assert generator.arch() == {"name": "dcgan", "size": size, "channels": 3, "latent": 100,
                                "ngf": ngf, "upsample": upsample}  # fmt: skip


def test_transpose_stays_the_default_and_its_record_is_unchanged() -> None:
    default = DCGANGenerator(ngf=8)
    assert default.upsample == "transpose" and "upsample" not in default.arch()
    explicit = DCGANGenerator(ngf=8, upsample="transpose")
    assert [n for n, _ in default.named_parameters()] == [n for n, _ in explicit.named_parameters()]


def _interior_spread(stage: nn.Module, channels: int) -> float:
    """Largest spread over the interior of every output channel, for a constant input map."""
    with torch.no_grad():
        out = stage(torch.full((1, channels, 8, 8), 0.7))
    interior = out[0, :, 2:-2, 2:-2]
    return float((interior.amax(dim=(1, 2)) - interior.amin(dim=(1, 2))).max())


def test_resize_convolve_maps_a_flat_map_to_a_flat_one_transpose_stamps_a_pattern() -> None:
    """Odena et al.: a stride-2 transposed convolution adds a period-2 pattern to a constant
    input unless its kernel happens to be balanced; resizing first, then convolving, cannot."""
    torch.manual_seed(0)
    resize = dcgan_init_(DCGANGenerator(ngf=8, upsample="nearest")).main
    transpose = dcgan_init_(DCGANGenerator(ngf=8)).main
    assert isinstance(resize[3], nn.Upsample) and isinstance(transpose[3], nn.ConvTranspose2d)
    assert _interior_spread(resize[3:5], 64) < 1e-6
    pattern = transpose[3](torch.full((1, 64, 8, 8), 0.7)).detach()[0, :, 2:-2, 2:-2]
    assert _interior_spread(transpose[3:4], 64) > 1e-3
    # the pattern is periodic with period 2: equal to itself shifted by two pixels
    torch.testing.assert_close(pattern[:, 2:, :], pattern[:, :-2, :])
    torch.testing.assert_close(pattern[:, :, 2:], pattern[:, :, :-2])


def test_a_resize_convolve_generator_file_loads_back(tmp_path: Path) -> None:
    module = dcgan_init_(DCGANGenerator(64, ngf=8, upsample="bilinear"), torch.Generator())
    path = tmp_path / "G.safetensors"
    save_generator(path, module, module.arch(), {"method": "test"}, half=False)
    assert load_generator_file(path).arch["upsample"] == "bilinear"
    loaded = load_generator(str(path), (3, 64, 64))
    assert isinstance(loaded.module, DCGANGenerator) and loaded.module.upsample == "bilinear"
    z = torch.randn(2, 100, 1, 1)
    torch.testing.assert_close(loaded.module(z), module.eval()(z), rtol=0, atol=0)


@pytest.mark.parametrize("bad", ["pixelshuffle", "os:system", 3, None, ["nearest"]])
def test_unknown_upsample_names_are_refused(tmp_path: Path, bad: object) -> None:
    with pytest.raises(ValueError, match="upsample"):
        DCGANGenerator(upsample=bad)  # type: ignore[arg-type]
    module = DCGANGenerator(ngf=8, upsample="nearest")
    path = tmp_path / "G.safetensors"
    save_generator(path, module, {**module.arch(), "upsample": bad}, {})
    with pytest.raises(InvalidInputError, match="generator.dcgan.upsample"):  # the schema
        load_generator(str(path), (3, 32, 32))


def test_weights_of_one_upsample_do_not_load_as_another(tmp_path: Path) -> None:
    module = DCGANGenerator(ngf=8, upsample="nearest")
    path = tmp_path / "G.safetensors"
    save_generator(path, module, {**module.arch(), "upsample": "transpose"}, {})
    with pytest.raises(InvalidInputError):
        load_generator(str(path), (3, 32, 32))


def test_config_refuses_bad_settings_at_once() -> None:
    with pytest.raises(UsageError) as caught:
        TrainPriorSettings.build({"size": 48, "upsample": "cubic", "ngf": 0})
    message = caught.value.message
    assert "--size: Input should be 32 or 64 (got 48)" in message
    assert "--upsample: Input should be 'transpose', 'nearest' or 'bilinear'" in message
    assert "--ngf: Input should be greater than or equal to 1 (got 0)" in message


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    path = tmp_path / "images"
    path.mkdir()
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path / f"{i}.png")
    return path


def _cli(folder: Path, out: Path, *extra: object) -> list[str]:
    args = ["train-prior", "--images", folder, "--size", 32, "--epochs", 1, "--batch-size", 4,
            "--out", out, "--device", "cpu", "--no-progress", *extra]  # fmt: skip
    return [str(a) for a in args]


def test_cli_trains_a_resize_convolve_prior_that_loads_back(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "G.safetensors"
    result = runner.invoke(app, _cli(folder, out, "--upsample", "nearest", "--ngf", 8))
    assert result.exit_code == 0, result.output
    stored = load_generator_file(out)
    assert stored.arch == {"name": "dcgan", "size": 32, "channels": 3, "latent": 100, "ngf": 8,
                           "upsample": "nearest"}  # fmt: skip
    generator = load_generator(str(out), (3, 32, 32))
    assert generator.module(torch.randn(2, 100, 1, 1)).shape == (2, 3, 32, 32)


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (("--upsample", "cubic"), "--upsample: Input should be 'transpose'"),
        (("--ngf", 0), "--ngf: Input should be greater than or equal to 1"),
    ],
)
def test_cli_refuses_bad_architecture_flags(
    folder: Path, tmp_path: Path, extra: tuple, needle: str
) -> None:
    out = tmp_path / "G.safetensors"
    result = runner.invoke(app, _cli(folder, out, *extra))
    assert result.exit_code == 2 and needle in result.output
    assert "Traceback" not in result.output and not out.exists()


def test_a_checkpoint_does_not_resume_another_upsample(folder: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "run.ckpt"
    tiny = {"size": 32, "epochs": 1, "batch_size": 4, "ngf": 8}
    train_prior([folder], TrainPriorSettings(**tiny, upsample="nearest"), checkpoint=ckpt)
    with pytest.raises(UsageError, match="belongs to another run"):
        train_prior([folder], TrainPriorSettings(**tiny), checkpoint=ckpt, resume=True)
    assert "upsample" not in TrainPriorSettings(**tiny).fingerprint_fields()
