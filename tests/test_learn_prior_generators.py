"""`learn-prior` and generators: a factory-started prior loads back (in `invert` too), and
the shared copy's generator lr is absolute (official GIML) or relative (invert's default)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from invert_support import make_update, one_thread  # noqa: F401 (fixture)
from typer.testing import CliRunner

from gradinvert.cli.main import app
from gradinvert.generators import load_generator, load_generator_file, save_generator
from gradinvert.invert.spaces import SharedWeightSpace, weight_lr_scales
from gradinvert.io.files import load_batch, save_update
from gradinvert.models import UntrustedCodeError, trust_code
from gradinvert.priors.learn import LearnPriorSettings, learn_prior, run_task
from gradinvert.runtime.errors import InvalidInputError

runner = CliRunner()
TINY = "models_for_tests:tiny_generator"
CPU = torch.device("cpu")


def invoke(*args: object):  # noqa: ANN201
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def stream(tmp_path: Path) -> Path:
    folder = tmp_path / "stream"
    folder.mkdir()
    for i in range(2):
        update, _, _ = make_update(count=2, seed=i, labels=[i, i + 1])
        save_update(update, folder / f"u{i}.safetensors")
    return folder


def test_a_factory_started_prior_loads_back_and_inverts(stream: Path, tmp_path: Path) -> None:
    out = tmp_path / "G.safetensors"
    result = invoke("learn-prior", stream / "u*.safetensors", "--generator", TINY, "--tasks", 2,
                    "--latent-iterations", 2, "--iterations", 2, "--out", out, "--device", "cpu",
                    "--no-progress")  # fmt: skip
    assert result.exit_code == 0, result.output
    stored = load_generator_file(out)
    assert stored.arch == {"name": "factory", "factory": TINY}
    # the file names code: it loads only where the factory is trusted
    with pytest.raises(UntrustedCodeError, match=f"names code \\({TINY}\\)"):
        load_generator(str(out), (3, 8, 8))
    with trust_code(TINY):
        loaded = load_generator(str(out), (3, 8, 8))
        start = load_generator(TINY, (3, 8, 8)).module.state_dict()
        named = load_generator(TINY, (3, 8, 8), weights=out)  # the factory named, file's weights
    state = loaded.module.state_dict()
    assert state.keys() == stored.state.keys()
    assert all(torch.equal(state[k], stored.state[k]) for k in state)
    assert all(torch.equal(named.module.state_dict()[k], stored.state[k]) for k in state)
    assert not torch.equal(state["main.0.weight"], start["main.0.weight"])  # learned weights
    assert loaded.source["factory"] == TINY and loaded.source["file"] == str(out)
    # continuing from the file records the factory again (not the file's path)
    one = LearnPriorSettings(generator=str(out), tasks=1, latent_iterations=2, iterations=2)
    with trust_code(TINY):
        again = learn_prior([stream / "u*.safetensors"], one)
    assert again.arch == {"name": "factory", "factory": TINY}
    invert = ["invert", stream / "u0.safetensors", "--attack", "gias", "--latent-iterations", 2,
              "--iterations", 2, "--seeds", 1, "--device", "cpu"]  # fmt: skip
    refused = invoke(*invert, "--generator", out, "--out", tmp_path / "no.safetensors")
    assert refused.exit_code == 65 and "Traceback" not in refused.output
    assert refused.stderr.strip().splitlines() == [
        f"error: {out}: names code ({TINY}); pass --trust-code to run it, or --generator {TINY} "
        f"--generator-weights {out} if it is your own"
    ]
    assert not (tmp_path / "no.safetensors").exists()
    for accept in (
        ["--generator", out, "--trust-code"],
        ["--generator", TINY, "--generator-weights", out],
    ):
        recon = tmp_path / f"r{len(accept)}.safetensors"
        result = invoke(*invert, *accept, "--out", recon)
        assert result.exit_code == 0, result.output
        assert recon.exists()
    # both ways start from the file's weights: the same reconstruction
    first, second = (load_batch(tmp_path / f"r{n}.safetensors").images for n in (3, 4))
    assert torch.equal(first, second)


@pytest.mark.parametrize(
    ("factory", "message"),
    [("no_such_module_here:make", "does not load here"), ("no-colon", "needs 'factory'")],
)
def test_a_factory_record_that_cannot_load_names_the_file(
    tmp_path: Path, factory: str, message: str
) -> None:
    path = tmp_path / "G.safetensors"
    with trust_code(TINY):
        module = load_generator(TINY, (3, 8, 8)).module
    save_generator(path, module, {"name": "factory", "factory": factory}, {})
    with trust_code(everything=True), pytest.raises(InvalidInputError, match=message) as caught:
        load_generator(str(path), (3, 8, 8))
    assert str(path) in caught.value.message


def test_shared_copy_lr_scale_absolute_by_default_relative_by_rms() -> None:
    with trust_code(TINY):
        generator = load_generator(TINY, (3, 8, 8))
    update, _, _ = make_update(count=2, labels=[0, 1])
    base = {n: p.detach().clone() for n, p in generator.module.named_parameters()}
    moves = {}
    for scale in ("absolute", "relative"):
        config = LearnPriorSettings(  # one Adam step, large enough to stand out of float32
            latent_iterations=2, iterations=1, generator_lr=10.0, generator_lr_scale=scale
        )
        adapted = run_task(generator, update, [0, 1], config, 0, CPU).adapted
        moves[scale] = {n: float((adapted[n] - base[n]).abs().max()) for n in base}
    assert LearnPriorSettings().generator_lr_scale == "absolute"
    rms = weight_lr_scales(base)
    assert rms  # the tiny generator has weight tensors of 2+ dims (and 1-dim BN parameters)
    for name in base:
        # Adam's first step moves each entry by about the lr: max |Δ| scales by exactly the RMS
        expected = rms.get(name, 1.0)
        assert moves["relative"][name] / moves["absolute"][name] == pytest.approx(expected, 1e-3)
    assert any(base[n].dim() == 1 for n in base)
    shape = (2, 3, 8, 8)
    latents = torch.zeros(1, 2, 6, 1, 1)
    assert SharedWeightSpace(shape, update.input, CPU, generator, latents).lr_scales() == {}
    relative = SharedWeightSpace(shape, update.input, CPU, generator, latents, relative_lr=True)
    assert relative.lr_scales() == rms
    assert relative.describe()["generator_lr"] == "relative"


def test_cli_generator_lr_scale_is_recorded_and_checked(stream: Path, tmp_path: Path) -> None:
    out = tmp_path / "G.safetensors"
    args = ["learn-prior", stream / "u*.safetensors", "--generator", TINY, "--tasks", 1,
            "--latent-iterations", 2, "--iterations", 2, "--out", out, "--device", "cpu",
            "--no-progress"]  # fmt: skip
    result = invoke(*args, "--generator-lr-scale", "relative")
    assert result.exit_code == 0, result.output
    assert load_generator_file(out).training["generator_lr_scale"] == "relative"
    result = invoke(*args, "--generator-lr-scale", "rms")
    assert (
        result.exit_code == 2
        and "--generator-lr-scale: Input should be 'absolute'" in result.output
    )
    assert load_generator_file(out).training["generator_lr_scale"] == "relative"  # untouched
