"""Generators: the DCGAN architecture, generator files, and ``--generator`` resolution."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from gradinvert.generators import (
    DCGANDiscriminator,
    DCGANGenerator,
    dcgan_init_,
    load_generator,
    load_generator_file,
    save_generator,
)
from gradinvert.models import UntrustedCodeError, trust_code
from gradinvert.runtime.errors import InvalidInputError, MissingInputError, UsageError


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_dcgan_generator_has_the_official_layers() -> None:
    generator = DCGANGenerator(size=32)
    convs = [m for m in generator.modules() if isinstance(m, nn.ConvTranspose2d)]
    shapes = [tuple(c.weight.shape) for c in convs]
    assert shapes == [(100, 512, 4, 4), (512, 256, 4, 4), (256, 128, 4, 4), (128, 64, 4, 4),
                      (64, 3, 1, 1)]  # fmt: skip
    assert all(c.bias is None for c in convs)
    weights = 100 * 512 * 16 + 512 * 256 * 16 + 256 * 128 * 16 + 128 * 64 * 16 + 64 * 3
    assert _count(generator) == weights + 2 * (512 + 256 + 128 + 64)  # + BN scales and shifts
    out = generator.eval()(torch.randn(5, 100, 1, 1))
    assert out.shape == (5, 3, 32, 32) and out.abs().max() <= 1.0


def test_dcgan_64_px_adds_one_up_stage() -> None:
    generator = DCGANGenerator(size=64, channels=1)
    assert _count(generator) - _count(DCGANGenerator(size=32, channels=1)) == 64 * 64 * 16 + 128
    assert generator(torch.randn(2, 100, 1, 1)).shape == (2, 1, 64, 64)
    assert DCGANDiscriminator(64)(torch.randn(3, 3, 64, 64)).shape == (3,)
    with pytest.raises(ValueError, match="32, 64"):
        DCGANGenerator(size=48)


def test_dcgan_init_follows_the_recipe() -> None:
    generator = dcgan_init_(DCGANGenerator(), torch.Generator().manual_seed(0))
    weights = torch.cat([m.weight.flatten() for m in generator.modules()
                         if isinstance(m, nn.ConvTranspose2d)]).detach()  # fmt: skip
    assert abs(float(weights.std()) - 0.02) < 1e-3 and abs(float(weights.mean())) < 1e-4
    bn = generator.main[1]
    assert isinstance(bn, nn.BatchNorm2d)
    assert abs(float(bn.weight.detach().mean()) - 1.0) < 0.01
    assert float(bn.bias.detach().abs().max()) == 0.0


@pytest.mark.parametrize("half", [False, True])
def test_generator_file_round_trip(tmp_path: Path, half: bool) -> None:
    module = dcgan_init_(DCGANGenerator(), torch.Generator().manual_seed(3))
    module.main[1].running_mean.normal_()
    path = tmp_path / "g.safetensors"
    save_generator(path, module, module.arch(), {"method": "test"}, half=half)
    stored = load_generator_file(path)
    assert stored.arch == module.arch() and stored.training == {"method": "test"}
    loaded = load_generator(str(path), (3, 32, 32))
    assert loaded.source["training"] == {"method": "test"}
    for name, value in module.state_dict().items():
        expected = value.half().float() if half and value.is_floating_point() else value
        assert torch.equal(loaded.module.state_dict()[name], expected)
    assert not loaded.module.training
    assert not any(p.requires_grad for p in loaded.module.parameters())


def test_named_dcgan_is_seeded_and_sized_from_the_input() -> None:
    a = load_generator("dcgan", (3, 64, 64), seed=1)
    b = load_generator("dcgan", (3, 64, 64), seed=1)
    c = load_generator("dcgan", (3, 64, 64), seed=2)
    assert a.output_shape() == (3, 64, 64) and a.latent_shape == (100, 1, 1)
    sa, sb, sc = (g.module.state_dict() for g in (a, b, c))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_user_factory_and_weights(tmp_path: Path) -> None:
    from models_for_tests import tiny_generator

    with pytest.raises(UntrustedCodeError, match="nobody vouched for"):
        load_generator("models_for_tests:tiny_generator", (3, 8, 8))
    with trust_code("models_for_tests:tiny_generator"):
        loaded = load_generator("models_for_tests:tiny_generator", (3, 8, 8))
    assert loaded.latent_shape == (6, 1, 1) and loaded.output_shape() == (3, 8, 8)
    other = tiny_generator()
    with torch.no_grad():
        for param in other.parameters():
            param.mul_(-1.0)
    weights = tmp_path / "w.pt"
    torch.save(other.state_dict(), weights)
    with trust_code("models_for_tests:tiny_generator"):
        reloaded = load_generator("models_for_tests:tiny_generator", (3, 8, 8), weights=weights)
    z = torch.randn(2, 6, 1, 1)
    assert torch.allclose(reloaded.module(z), other.eval()(z))


@pytest.mark.parametrize(
    ("spec", "shape", "error", "match"),
    [
        ("dcgan", (3, 48, 48), InvalidInputError, "32 or 64"),
        ("models_for_tests:tiny_generator_16px", (3, 8, 8), InvalidInputError, r"\(3, 16, 16\)"),
        ("models_for_tests:tiny_generator_grey", (3, 8, 8), InvalidInputError, r"\(1, 8, 8\)"),
        ("models_for_tests:no_latent_shape", (3, 8, 8), UsageError, "latent_shape"),
        ("models_for_tests:missing", (3, 8, 8), UsageError, "no callable"),
        ("no_such_module_xyz:factory", (3, 8, 8), UsageError, "cannot import"),
        ("stylegan", (3, 8, 8), UsageError, "use dcgan"),
        ("nowhere/g.safetensors", (3, 32, 32), MissingInputError, "no such generator"),
    ],
)
def test_bad_generators_are_refused(spec: str, shape: tuple, error: type, match: str) -> None:
    with trust_code(spec), pytest.raises(error, match=match):
        load_generator(spec, shape)


def test_generator_file_of_another_architecture_is_refused(tmp_path: Path) -> None:
    module = DCGANGenerator()
    path = tmp_path / "g.safetensors"
    save_generator(path, module, {**module.arch(), "name": "stylegan"}, {})
    with pytest.raises(
        InvalidInputError, match="invalid generator metadata: generator: .*'stylegan'"
    ):
        load_generator(str(path), (3, 32, 32))
    save_generator(path, module, {**module.arch(), "ngf": 32}, {})  # weights of ngf 64
    with pytest.raises(InvalidInputError, match="do not fit"):
        load_generator(str(path), (3, 32, 32))
    big = DCGANGenerator(size=64)
    save_generator(path, big, big.arch(), {})
    with pytest.raises(InvalidInputError, match=r"\(3, 64, 64\)"):
        load_generator(str(path), (3, 32, 32))


def test_inspect_shows_a_generator_file(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from gradinvert.cli.main import app

    module = DCGANGenerator()
    path = tmp_path / "g.safetensors"
    save_generator(path, module, module.arch(), {"method": "test", "images": 7})
    result = CliRunner().invoke(app, ["inspect", str(path), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["file"] == "generator" and summary["generator"] == module.arch()
    assert summary["parameters"] == _count(module)
    assert summary["training"] == {"method": "test", "images": 7}
