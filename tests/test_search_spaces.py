"""Search spaces (GI-z, GI-w, GIAS's zw): gradients, independence of copies, resume, CLI."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from invert_support import make_update, one_thread, reference_seed_loss  # noqa: F401 (fixture)
from torch.func import functional_call
from typer.testing import CliRunner

from gradinvert.cli.main import app
from gradinvert.config import preset
from gradinvert.generators import load_generator
from gradinvert.invert import InterruptedRun, run_attack
from gradinvert.invert.attack import _prepare, resolve_labels
from gradinvert.invert.engine import Engine
from gradinvert.invert.priors import bn_reference
from gradinvert.invert.spaces import LatentSpace, PixelSpace, WeightSpace
from gradinvert.invert.stages import weight_latents
from gradinvert.io.files import LocalTraining, load_batch, save_update
from gradinvert.models import NORMALIZATIONS, InputSpec, trust_code
from gradinvert.runtime.errors import UsageError

CPU = torch.device("cpu")
TINY = "models_for_tests:tiny_generator"


@pytest.fixture(autouse=True)
def _trust_tiny() -> Iterator[None]:
    """The library calls here name the tests' own generator factory (the CLI trusts the
    --generator it is given by itself)."""
    with trust_code(TINY):
        yield


def _generator(device: torch.device = CPU):  # noqa: ANN202
    return load_generator(TINY, (3, 8, 8), device=device)


def _engine(update, labels, config, space_name, latents=None, device=CPU):  # noqa: ANN001, ANN202
    batch = len(labels)
    choice = resolve_labels(update, labels, config)
    victim, simulator, _ = _prepare(update, choice, config, device, batch)
    reference = bn_reference(update, victim.bn_names).to(device) if config.bn else None
    shape = (batch, *update.input.shape)
    generator = _generator(device)
    if space_name == "z":
        space = LatentSpace(shape, update.input, device, generator)
    else:
        space = WeightSpace(shape, update.input, device, generator, latents)
    engine = Engine(
        simulator,
        config,
        shape,
        update.input,
        update.model.num_classes,
        False,
        reference,
        device,
        space=space,
    )
    return engine, generator


def _to_model_space(update, generated: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
    return update.input.normalize((generated + 1) / 2)


def _config(seeds: int):  # noqa: ANN202
    return preset(
        "gradinversion",
        seeds=seeds,
        pick="best" if seeds == 1 else "consensus",
        tv=0.3,
        l2=0.05,
        bn=0.2,
        bn_first=5.0,
        gradient_weight=2.0,
        calibrate="none",
        langevin=0.0,
    )


@pytest.mark.parametrize("local", [None, LocalTraining(2, 0.5, 2)])
@pytest.mark.parametrize("seeds", [1, 3])
def test_latent_space_gradients_match_plain_autograd(
    seeds: int, local: LocalTraining | None, device: torch.device
) -> None:
    """Vmapped per-seed latent gradients equal separate runs of G(z) with plain autograd."""
    update, _, labels = make_update(count=3, mode="train", share_bn_stats=True, local=local)
    config = _config(seeds)
    engine, generator = _engine(update, labels.tolist(), config, "z", device=device)
    targets = torch.rand(seeds, 3, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    targets = targets.to(device)
    engine.targets = targets if seeds > 1 else None
    grads, _, total, _ = engine._gradients()
    for seed in range(seeds):
        z = engine.params["z"][seed].clone().requires_grad_()
        x = _to_model_space(update, generator.module(z))
        target = targets[seed] if seeds > 1 else torch.zeros_like(x)
        config_seed = config if seeds > 1 else config.model_copy(update=dict(group=0.0))
        expected = reference_seed_loss(update, labels, config_seed, x, target)
        (expected_grad,) = torch.autograd.grad(expected, z)
        assert float(total[seed]) == pytest.approx(expected.item(), rel=1e-5)
        scale = float(expected_grad.abs().max())
        torch.testing.assert_close(grads["z"][seed], expected_grad, rtol=1e-4, atol=1e-5 * scale)


@pytest.mark.parametrize("seeds", [1, 2])
def test_weight_space_gradients_match_separate_generator_copies(
    seeds: int, device: torch.device
) -> None:
    """Per seed and image, the stacked copies' gradients equal those of separate nn.Module
    copies of G run with plain autograd."""
    update, _, labels = make_update(count=2, mode="train", share_bn_stats=True)
    config = _config(seeds)
    latents = torch.randn(seeds, 2, 6, 1, 1, generator=torch.Generator().manual_seed(2))
    engine, generator = _engine(update, labels.tolist(), config, "w", latents, device)
    latents = latents.to(device)
    # move every copy away from G so that the copies differ
    noise = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for param in engine.params.values():
            param.add_(0.1 * torch.randn(param.shape, generator=noise).to(device))
    targets = torch.rand(seeds, 2, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    targets = targets.to(device)
    engine.targets = targets if seeds > 1 else None
    grads, _, total, _ = engine._gradients()
    for seed in range(seeds):
        copies, leaves = [], []
        for image in range(2):
            module = copy.deepcopy(generator.module)
            weights = {
                n: engine.params[n][seed, image].clone().requires_grad_() for n in engine.params
            }
            leaves.append(weights)
            out = functional_call(module, weights, (latents[seed, image : image + 1],))
            copies.append(out[0])
        x = _to_model_space(update, torch.stack(copies))
        target = targets[seed] if seeds > 1 else torch.zeros_like(x)
        config_seed = config if seeds > 1 else config.model_copy(update=dict(group=0.0))
        expected = reference_seed_loss(update, labels, config_seed, x, target)
        assert float(total[seed]) == pytest.approx(expected.item(), rel=1e-5)
        for image in range(2):
            names = list(leaves[image])
            found = torch.autograd.grad(
                expected, [leaves[image][n] for n in names], retain_graph=True
            )
            for name, value in zip(names, found, strict=True):
                scale = float(value.abs().max())
                torch.testing.assert_close(
                    grads[name][seed, image], value, rtol=1e-4, atol=1e-5 * scale
                )


def test_generator_copies_are_independent_per_image_and_seed(device: torch.device) -> None:
    update, _, labels = make_update(count=2)
    config = preset("gias", search="w", seeds=2, iterations=3, generator=TINY)
    latents = weight_latents(_generator(), 2, 2, config.seed)
    engine, generator = _engine(update, labels.tolist(), config, "w", latents, device)
    base = dict(generator.module.named_parameters())
    for _ in range(3):
        engine.step()
    weight = engine.params["main.0.weight"]
    flat = weight.flatten(2)
    for a in range(4):
        k, i = divmod(a, 2)
        assert not torch.equal(weight[k, i], base["main.0.weight"])  # every copy has moved
        for b in range(a + 1, 4):
            assert not torch.equal(flat[k, i], flat[divmod(b, 2)])  # and differently
    before = engine.candidates.clone()
    with torch.no_grad():
        for param in engine.params.values():
            param[1, 0].mul_(0.5)  # change seed 1's copy of image 0 only
    after = engine.candidates
    changed = (after - before).flatten(2).abs().amax(-1) > 0
    assert changed.tolist() == [[False, False], [True, False]]
    assert torch.equal(generator.module.main[0].weight, base["main.0.weight"])  # G untouched


def test_weight_space_starts_every_copy_from_g_and_uses_fixed_latents(
    device: torch.device,
) -> None:
    update, _, labels = make_update(count=2)
    config = preset("gias", search="w", seeds=2, generator=TINY)
    generator = _generator()
    latents = weight_latents(generator, 2, 2, config.seed)
    engine, generator = _engine(update, labels.tolist(), config, "w", latents, device)
    generated = generator.module(latents.flatten(0, 1).to(device))
    expected = _to_model_space(update, generated).view(2, 2, 3, 8, 8)
    torch.testing.assert_close(engine.candidates, expected, rtol=1e-5, atol=1e-6)


def test_grey_start_is_the_mean_colour_plus_seeded_pixel_noise() -> None:
    spec = InputSpec((3, 16, 16), *NORMALIZATIONS["imagenet"])
    space = PixelSpace((2, 3, 16, 16), spec, "cpu", init="grey", start_noise=0.05)
    start = space.fresh(3, torch.Generator().manual_seed(0))["x"]
    pixels = start * space.std + space.mean  # back to [0, 1] pixels
    expected = torch.tensor(spec.mean).view(3, 1, 1) + 0.05 * torch.randn(
        (3, 2, 3, 16, 16), generator=torch.Generator().manual_seed(0)
    )
    torch.testing.assert_close(pixels, expected, rtol=0, atol=1e-6)
    assert not torch.equal(pixels[0], pixels[1])  # every seed starts elsewhere
    silent = PixelSpace((2, 3, 16, 16), spec, "cpu", init="grey", start_noise=0.0)
    flat = silent.fresh(1, torch.Generator().manual_seed(0))["x"] * space.std + space.mean
    torch.testing.assert_close(flat, torch.tensor(spec.mean).view(3, 1, 1).expand_as(flat))


@pytest.mark.parametrize("search", ["z", "w", "zw"])
def test_each_search_runs_deterministically_and_records_itself(
    search: str, device: torch.device
) -> None:
    update, _, labels = make_update(count=2, mode="train", share_bn_stats=True)
    config = preset(
        "gias", search=search, generator=TINY, seeds=2, iterations=4, latent_iterations=3, bn=0.1
    )
    a = run_attack(update, labels.tolist(), config, device, progress=False)
    b = run_attack(update, labels.tolist(), config, device, progress=False)
    assert torch.equal(a.images, b.images) and a.metadata == b.metadata
    meta = a.metadata
    assert meta["search"]["search"] == search
    assert meta["search"]["generator"] == {"factory": TINY}
    assert [s["stage"] for s in meta["stages"]] == list(search)
    assert a.images.shape == (2, 3, 8, 8) and float(a.images.min()) >= 0
    if search == "zw":
        first = meta["stages"][0]
        assert first["iterations"] == 3 and first["seeds"] == 2
        distances = first["seed_distances"]
        assert first["chosen_seed"] == min(range(2), key=distances.__getitem__)
        assert meta["stages"][1] == {"stage": "w", "iterations": 4, "seeds": 1}
        assert len(meta["seed_distances"]) == 1
    other = config.model_copy(update=dict(seed=1))
    c = run_attack(update, labels.tolist(), other, device, progress=False)
    assert not torch.equal(a.images, c.images)


@pytest.mark.parametrize("stop_stage", ["z", "w"])
def test_zw_resume_across_the_stage_boundary_equals_an_uninterrupted_run(
    tmp_path: Path, stop_stage: str, device: torch.device
) -> None:
    update, _, labels = make_update(count=2, mode="train", share_bn_stats=True)
    config = preset(
        "gias",
        generator=TINY,
        seeds=2,
        latent_iterations=4,
        iterations=5,
        bn=0.1,
        langevin=0.1,
        jitter=1,
    )
    straight = run_attack(update, labels.tolist(), config, device, progress=False)
    checkpoint = tmp_path / "run.ckpt"

    def stop(engine: Engine, progress: object) -> None:
        if engine.stage == stop_stage and engine.iteration == 2:
            engine.request_stop()

    with pytest.raises(InterruptedRun, match="iteration 2/"):
        run_attack(
            update,
            labels.tolist(),
            config,
            device,
            progress=False,
            checkpoint=checkpoint,
            checkpoint_every=100,
            on_iteration=stop,
        )
    assert torch.load(checkpoint, weights_only=True)["stage"] == stop_stage
    resumed = run_attack(
        update, labels.tolist(), config, device, progress=False, checkpoint=checkpoint, resume=True
    )
    assert torch.equal(resumed.images, straight.images)
    assert resumed.metadata == straight.metadata


def test_learned_labels_carry_over_into_the_weight_stage(device: torch.device) -> None:
    update, _, labels = make_update(count=1, labels=[2])
    config = preset(
        "gias", generator=TINY, seeds=2, latent_iterations=3, iterations=3, learn_labels=True
    )
    result = run_attack(update, None, config, device, progress=False)
    assert result.metadata["labels"]["source"] == "learned"
    assert result.labels.shape == (1,)


def test_search_without_generator_is_a_usage_error() -> None:
    update, _, labels = make_update(count=2)
    with pytest.raises(UsageError, match="needs --generator"):
        run_attack(update, labels.tolist(), preset("ig", search="z"), progress=False)
    with pytest.raises(UsageError, match="not by --search x"):
        preset("ig", generator="dcgan")


runner = CliRunner()


@pytest.fixture
def update_file(tmp_path: Path) -> Path:
    update, _, _ = make_update(count=2, labels=[1, 3])
    path = tmp_path / "u.safetensors"
    save_update(update, path)
    return path


def test_cli_gias_with_a_user_generator(update_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.safetensors"
    result = runner.invoke(
        app,
        [
            "invert",
            str(update_file),
            "--attack",
            "gias",
            "--generator",
            TINY,
            "--labels",
            "1,3",
            "--latent-iterations",
            "3",
            "--iterations",
            "3",
            "--seeds",
            "2",
            "--no-progress",
            "--out",
            str(out),
        ],  # fmt: skip
    )
    assert result.exit_code == 0, result.output
    assert "refined in generator weights" in result.output
    batch = load_batch(out)
    assert batch.metadata["search"]["search"] == "zw"
    assert batch.metadata["config"]["generator"] == TINY


@pytest.mark.parametrize(
    ("extra", "code", "message"),
    [
        (["--search", "z"], 2, "needs --generator"),
        (["--search", "x", "--generator", "dcgan"], 2, "not by --search x"),
        (["--search", "zw", "--generator", "dcgan"], 65, "32 or 64 px"),
        (["--search", "w", "--generator", "models_for_tests:tiny_generator_16px"], 65, "16, 16"),
        (["--search", "z", "--generator", "models_for_tests:tiny_generator_grey"], 65, "(1, 8"),
        (["--search", "w", "--generator", "missing.safetensors"], 66, "no such generator"),
        (["--search", "q"], 2, "--search: Input should be 'x', 'z', 'w', 'zw' or 'f' (got 'q')"),
    ],
)
def test_cli_bad_generators(
    update_file: Path, tmp_path: Path, extra: list[str], code: int, message: str
) -> None:
    out = tmp_path / "r.safetensors"
    result = runner.invoke(
        app,
        [
            "invert",
            str(update_file),
            "--attack",
            "ig",
            "--labels",
            "1,3",
            "--iterations",
            "2",
            "--no-progress",
            "--out",
            str(out),
            *extra,
        ],  # fmt: skip
    )
    assert result.exit_code == code, result.output
    assert message in result.output
    assert not out.exists()


@pytest.mark.parametrize("scale", ["relative", "absolute"])
def test_generator_lr_is_relative_to_each_weight_tensor(scale: str) -> None:
    """Adam's first step moves every entry by lr (absolute) or lr × its tensor's RMS
    (relative; 1-dim tensors keep the lr as is)."""
    update, _, labels = make_update(count=2)
    config = preset(
        "gias", search="w", seeds=1, iterations=1, generator=TINY, generator_lr_scale=scale
    )
    latents = weight_latents(_generator(), 1, 2, config.seed)
    choice = resolve_labels(update, labels.tolist(), config)
    _, simulator, _ = _prepare(update, choice, config, CPU, 2)
    shape = (2, *update.input.shape)
    generator = _generator()
    space = WeightSpace(
        shape, update.input, CPU, generator, latents, relative_lr=scale == "relative"
    )
    stage_config = config.model_copy(update=dict(lr=config.generator_lr, scheduler="none"))
    engine = Engine(simulator, stage_config, shape, update.input, 4, False, None, CPU, space=space)
    before = {n: p.clone() for n, p in engine.params.items()}
    engine.step()
    for name, value in generator.module.named_parameters():
        moved = (engine.params[name] - before[name]).abs()
        expected = config.generator_lr
        if scale == "relative" and value.dim() >= 2:
            expected *= float(value.detach().double().square().mean().sqrt())
        # Adam's first step is lr·g/(|g| + eps): the full lr wherever |g| >> eps
        assert float(moved.max()) == pytest.approx(expected, rel=1e-3)
        assert float(moved.max()) <= expected * (1 + 1e-3)


def test_a_given_generator_runs_on_the_attack_device(device: torch.device) -> None:
    """``run_attack(generator=...)`` with a generator held on the CPU runs a copy of it on the
    attack's device (the caller's stays where it is), exactly as loading it there by name."""
    update, _, labels = make_update(count=2)
    config = preset("gias", generator=TINY, seeds=2, latent_iterations=2, iterations=2)
    given = _generator()
    passed = run_attack(update, labels.tolist(), config, device, progress=False, generator=given)
    loaded = run_attack(update, labels.tolist(), config, device, progress=False)
    assert torch.equal(passed.images, loaded.images)
    assert passed.metadata == loaded.metadata
    assert {p.device.type for p in given.module.parameters()} == {"cpu"}
