"""GIFD (--search f): the ℓ1-ball projection, the generator's layer split, the layer stages,
the pick over stages, resume across a layer boundary, every objective and prior."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from invert_support import make_update, one_thread  # noqa: F401 (fixture)

from gradinvert.config import preset
from gradinvert.generators import DCGANGenerator, dcgan_init_, load_generator
from gradinvert.generators.layers import run_layers, split_layers
from gradinvert.invert import InterruptedRun, run_attack
from gradinvert.invert.attack import _prepare, resolve_labels
from gradinvert.invert.engine import Engine
from gradinvert.invert.l1ball import project_l1_ball
from gradinvert.invert.spaces import FeatureSpace
from gradinvert.models import trust_code
from gradinvert.runtime.errors import UsageError

CPU = torch.device("cpu")
TINY = "models_for_tests:tiny_generator"
TWO_LAYERS = "models_for_tests:tiny_generator_16px"  # 16 px: two feature layers


@pytest.fixture(autouse=True)
def _trust_tiny() -> Iterator[None]:
    with trust_code(TINY), trust_code(TWO_LAYERS):
        yield


# ---------------------------------------------------------------- ℓ1-ball projection


def _bisection_projection(v: torch.Tensor, radius: float) -> torch.Tensor:
    """Reference: the projection is sign(v)·max(|v| − θ, 0) with Σ max(|v| − θ, 0) = r; find θ
    by bisection on [0, max|v|] (no sorting), in float64."""
    v = v.double()
    if radius <= 0 or v.abs().sum() <= radius:
        return v
    low, high = 0.0, float(v.abs().max())
    for _ in range(200):
        theta = (low + high) / 2
        if float((v.abs() - theta).clamp_min(0).sum()) > radius:
            low = theta
        else:
            high = theta
    return torch.sign(v) * (v.abs() - (low + high) / 2).clamp_min(0)


def test_l1_projection_matches_a_bisection_on_the_threshold() -> None:
    rng = torch.Generator().manual_seed(0)
    rows = torch.randn(40, 57, generator=rng, dtype=torch.float64) * torch.rand(40, 1).double() * 3
    radii = torch.rand(40, generator=rng, dtype=torch.float64) * 40
    radii[:5] = 1e6  # inside the ball: unchanged
    radii[5:8] = 0.0  # no ball
    projected = project_l1_ball(rows, radii)
    for row, radius, got in zip(rows, radii, projected, strict=True):
        expected = _bisection_projection(row, float(radius))
        torch.testing.assert_close(got, expected, atol=1e-9, rtol=1e-9)
        if 0 < radius < row.abs().sum():
            assert abs(float(got.abs().sum()) - float(radius)) < 1e-8  # on the sphere
    assert torch.equal(projected[:8], rows[:8])


def test_l1_projection_is_the_closest_point_of_the_ball() -> None:
    rng = torch.Generator().manual_seed(1)
    v = torch.randn(1, 30, generator=rng, dtype=torch.float64)
    p = project_l1_ball(v, 2.0)
    for _ in range(200):  # random points of the ball are never closer
        q = torch.randn(1, 30, generator=rng, dtype=torch.float64)
        q = q * (2.0 * float(torch.rand(1, generator=rng)) / q.abs().sum())
        assert float((v - p).norm()) <= float((v - q).norm()) + 1e-12


def test_l1_projection_with_one_radius_and_any_row_shape() -> None:
    rows = torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(2))
    projected = project_l1_ball(rows, 1.5)
    assert projected.shape == rows.shape
    assert torch.allclose(projected.flatten(1).abs().sum(1), torch.full((3,), 1.5))


# ---------------------------------------------------------------- the layer split


@pytest.mark.parametrize(("size", "upsample"), [(32, "transpose"), (64, "nearest")])
def test_dcgan_layer_split_reproduces_g_exactly(size: int, upsample: str) -> None:
    module = dcgan_init_(DCGANGenerator(size=size, upsample=upsample), torch.Generator())
    module.eval()
    layers = split_layers(module)
    assert len(layers) == (5 if size == 32 else 6)  # four (five) up-blocks, then the output
    z = torch.randn(3, 100, 1, 1, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(run_layers(layers, z), module(z))
        middle = run_layers(layers, z, 0, 2)  # f_2, then the rest
        assert middle.shape == (3, 256, 8, 8)
        assert torch.equal(run_layers(layers, middle, 2), module(z))


def test_feature_space_with_nothing_optimized_is_g_itself() -> None:
    update, _, _ = make_update(count=2, size=16)
    generator = load_generator(TWO_LAYERS, (3, 16, 16))
    layers = split_layers(generator.module)
    assert len(layers) == 3
    z = torch.randn(2, 2, 6, 1, 1, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = update.input.normalize((generator.module(z.flatten(0, 1)) + 1) / 2)
        start = run_layers(layers, z.flatten(0, 1), 0, 2).unflatten(0, (2, 2))
    space = FeatureSpace((2, 3, 16, 16), update.input, CPU, generator, layers, 2, start, 0.1)
    params = space.fresh(2, torch.Generator())
    assert torch.equal(space.all_images(params).flatten(0, 1), expected)


def test_generators_that_cannot_be_split_are_refused() -> None:
    class Opaque(torch.nn.Module):
        latent_shape = (4,)

        def forward(self, z: torch.Tensor) -> torch.Tensor:
            return z

    with pytest.raises(UsageError, match="splits the generator"):
        split_layers(Opaque())


# ---------------------------------------------------------------- the stages


def _engine_in_feature_space(radius: float, lr: float) -> tuple[Engine, FeatureSpace]:
    update, _, labels = make_update(count=2)
    config = preset("gifd", generator=TINY, seeds=2, iterations=6, lr=lr)
    choice = resolve_labels(update, labels.tolist(), config)
    _, simulator, _ = _prepare(update, choice, config, CPU, 2)
    generator = load_generator(TINY, (3, 8, 8))
    layers = split_layers(generator.module)
    z = torch.randn(4, 6, 1, 1, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        start = layers[0](z).unflatten(0, (2, 2))
    space = FeatureSpace((2, 3, 8, 8), update.input, CPU, generator, layers, 1, start, radius)
    engine = Engine(simulator, config, (2, 3, 8, 8), update.input, 4, False, None, CPU, space=space)
    return engine, space


def test_feature_maps_stay_inside_their_l1_balls() -> None:
    engine, space = _engine_in_feature_space(radius=0.05, lr=1.0)
    engine.run()
    start = space.fixed["start"]
    moved = (engine.params["f"] - start).flatten(2).abs().sum(-1)
    allowed = 0.05 * start.flatten(2).abs().sum(-1)
    assert bool((moved <= allowed * (1 + 1e-5)).all())
    assert float(moved.min()) > 0.9 * float(allowed.min())  # the ball binds at this lr


def _gifd(**overrides: object):  # noqa: ANN202
    settings = dict(generator=TWO_LAYERS, seeds=2, latent_iterations=4, iterations=3)
    return preset("gifd", **{**settings, **overrides})


def test_gifd_walks_every_layer_and_returns_the_lowest_distance_over_stages() -> None:
    update, _, labels = make_update(count=2, size=16)
    config = _gifd()
    a = run_attack(update, labels.tolist(), config, CPU, progress=False)
    b = run_attack(update, labels.tolist(), config, CPU, progress=False)
    assert torch.equal(a.images, b.images) and a.metadata == b.metadata
    meta = a.metadata
    stages = meta["stages"]
    assert [s["stage"] for s in stages] == ["z", "f1", "f2"]
    assert [s["iterations"] for s in stages] == [4, 3, 3]
    assert [s.get("radius") for s in stages] == [None, 0.1, 0.2]
    best = min(stages, key=lambda s: s["distance"])
    assert meta["chosen_stage"] == best["stage"]
    assert meta["chosen_seed"] == best["chosen_seed"]
    assert meta["candidates"][0]["gradient_distance"] == best["distance"]
    for record in stages:
        assert record["distance"] == min(record["seed_distances"])
    # the kept output is what the simulator scores at that distance (attacker-computable)
    pixels = a.images.unsqueeze(0)
    normalized = update.input.normalize(pixels)
    choice = resolve_labels(update, labels.tolist(), config)
    _, simulator, _ = _prepare(update, choice, config, CPU, 2)
    distance = float(simulator.evaluate(normalized, None)[0][0])
    assert distance == pytest.approx(best["distance"], rel=1e-4, abs=1e-6)
    one = run_attack(update, labels.tolist(), _gifd(feature_layers=1), CPU, progress=False)
    assert [s["stage"] for s in one.metadata["stages"]] == ["z", "f1"]


@pytest.mark.parametrize(
    "overrides",
    [
        dict(objective="l2"),
        dict(objective="sql2"),
        dict(objective="layer-cosine", layer_weights="relative"),
        dict(bn=0.1, l2=1e-3, group=0.01, group_start=0.0),
        dict(learn_labels=True),
        dict(jitter=1, flip=True, langevin=0.01, scheduler="step"),
    ],
)
def test_gifd_runs_with_every_objective_and_prior(overrides: dict) -> None:
    update, _, labels = make_update(count=2, size=16, mode="train", share_bn_stats=True)
    given = None if overrides.get("learn_labels") else labels.tolist()
    result = run_attack(update, given, _gifd(**overrides), CPU, progress=False)
    assert result.images.shape == (2, 3, 16, 16)
    assert torch.isfinite(result.images).all()
    assert result.metadata["chosen_stage"] in ("z", "f1", "f2")


@pytest.mark.parametrize(("stop_stage", "at"), [("z", 2), ("f1", 2), ("f2", 1)])
def test_gifd_resume_across_a_layer_boundary_equals_an_uninterrupted_run(
    tmp_path: Path, stop_stage: str, at: int
) -> None:
    update, _, labels = make_update(count=2, size=16)
    config = _gifd(langevin=0.05, jitter=1)
    straight = run_attack(update, labels.tolist(), config, CPU, progress=False)
    checkpoint = tmp_path / "run.ckpt"

    def stop(engine: Engine, progress: object) -> None:
        if engine.stage == stop_stage and engine.iteration == at:
            engine.request_stop()

    with pytest.raises(InterruptedRun):
        run_attack(
            update,
            labels.tolist(),
            config,
            CPU,
            progress=False,
            checkpoint=checkpoint,
            on_iteration=stop,
        )
    assert torch.load(checkpoint, weights_only=True)["stage"] == stop_stage
    resumed = run_attack(
        update, labels.tolist(), config, CPU, progress=False, checkpoint=checkpoint, resume=True
    )
    assert torch.equal(resumed.images, straight.images)
    assert resumed.metadata == straight.metadata


class _Crash(Exception):
    pass


def test_gifd_resumes_from_a_checkpoint_written_at_the_end_of_a_layer_stage(
    tmp_path: Path,
) -> None:
    """The process dies early in f2; the last checkpoint is f1's last iteration."""
    update, _, labels = make_update(count=2, size=16)
    config = _gifd(langevin=0.05)
    straight = run_attack(update, labels.tolist(), config, CPU, progress=False)
    checkpoint = tmp_path / "run.ckpt"

    def crash(engine: Engine, progress: object) -> None:
        if engine.stage == "f2" and engine.iteration == 1:
            raise _Crash

    with pytest.raises(_Crash):
        run_attack(
            update,
            labels.tolist(),
            config,
            CPU,
            progress=False,
            checkpoint=checkpoint,
            checkpoint_every=3,
            on_iteration=crash,
        )
    saved = torch.load(checkpoint, weights_only=True)
    assert (saved["stage"], saved["iteration"]) == ("f1", 3)
    resumed = run_attack(
        update, labels.tolist(), config, CPU, progress=False, checkpoint=checkpoint, resume=True
    )
    assert torch.equal(resumed.images, straight.images)
    assert resumed.metadata == straight.metadata


def test_gifd_refuses_a_consensus_output() -> None:
    with pytest.raises(UsageError, match="lowest gradient distance"):
        _gifd(pick="consensus")
