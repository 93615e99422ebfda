"""The zw weight stage that keeps the prior: proximity and trust region against hand
computations, every restart refined independently, and the lr-scale probe (no truth read)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from invert_support import make_update, one_thread  # noqa: F401 (fixture)
from typer.testing import CliRunner

from gradinvert.cli.main import app
from gradinvert.config import preset
from gradinvert.generators import load_generator
from gradinvert.invert import run_attack
from gradinvert.invert.attack import _prepare, resolve_labels
from gradinvert.invert.engine import Engine
from gradinvert.invert.spaces import WeightSpace
from gradinvert.io.files import BatchFile, load_batch, save_batch, save_update
from gradinvert.models import trust_code

CPU = torch.device("cpu")
TINY = "models_for_tests:tiny_generator"


@pytest.fixture(autouse=True)
def _trust_tiny() -> Iterator[None]:
    with trust_code(TINY):
        yield


def _space(relative: bool, proximity: float = 0.0, trust: float = 0.0) -> WeightSpace:
    update, _, _ = make_update(count=2)
    generator = load_generator(TINY, (3, 8, 8))
    latents = torch.randn(3, 2, 6, 1, 1, generator=torch.Generator().manual_seed(0))
    return WeightSpace(
        (2, 3, 8, 8), update.input, CPU, generator, latents, relative, proximity, trust
    )


def _moved(space: WeightSpace, seeds: int = 3) -> dict[str, torch.Tensor]:
    params = space.fresh(seeds, torch.Generator())
    rng = torch.Generator().manual_seed(1)
    return {n: v + 0.05 * torch.randn(v.shape, generator=rng) for n, v in params.items()}


def _hand_units(space: WeightSpace, relative: bool) -> dict[str, float]:
    """The unit of each tensor, computed here: the RMS of a weight (2+ dims) when relative."""
    units = {}
    for name, value in space.base.items():
        units[name] = (
            float(value.double().pow(2).mean().sqrt()) if relative and value.dim() >= 2 else 1.0
        )
    return units


@pytest.mark.parametrize("relative", [True, False])
def test_proximity_term_matches_a_hand_computation(relative: bool) -> None:
    space = _space(relative, proximity=0.7)
    params = _moved(space)
    units = _hand_units(space, relative)
    entries = sum(v.numel() for v in space.base.values())
    expected = []
    for seed in range(3):
        value = 0.0
        for image in range(2):
            square = 0.0
            for name, base in space.base.items():
                d = (params[name][seed, image].double() - base.double()) / units[name]
                square += float((d * d).sum())
            value += 0.7 * square / entries
        expected.append(value)
    values = space.proximity_values(params)
    assert values.tolist() == pytest.approx(expected, rel=1e-5)
    # its closed-form gradient is autograd's gradient of the same value
    leaves = {n: v.clone().requires_grad_(True) for n, v in params.items()}
    autograd = torch.autograd.grad(space.proximity_values(leaves).sum(), list(leaves.values()))
    grads = {n: torch.zeros_like(v) for n, v in params.items()}
    added = space.add_penalty_(params, grads)
    assert added is not None and torch.allclose(added, values)
    for (name, _), expected_grad in zip(leaves.items(), autograd, strict=True):
        torch.testing.assert_close(grads[name], expected_grad, rtol=1e-4, atol=1e-12)
    assert _space(relative).add_penalty_(params, grads) is None


@pytest.mark.parametrize("relative", [True, False])
def test_trust_region_matches_a_hand_computation(relative: bool) -> None:
    space = _space(relative, trust=0.02)
    params = _moved(space)
    params["main.0.weight"][1, 0] = space.base["main.0.weight"]  # one copy barely moved
    for name in params:
        params[name][1, 0] = space.base[name] + 1e-4 * (params[name][1, 0] - space.base[name])
    before = {n: v.clone() for n, v in params.items()}
    units = _hand_units(space, relative)
    entries = sum(v.numel() for v in space.base.values())
    space.project_(params)
    for seed in range(3):
        for image in range(2):
            square = sum(
                float((((before[n][seed, image] - b) / units[n]).double() ** 2).sum())
                for n, b in space.base.items()
            )
            rms = (square / entries) ** 0.5
            factor = min(1.0, 0.02 / rms)
            for name, base in space.base.items():
                expected = base + (before[name][seed, image] - base) * factor
                torch.testing.assert_close(params[name][seed, image], expected)
    assert all(torch.equal(params[n][1, 0], before[n][1, 0]) for n in params)  # inside


def _weight_engine(latents: torch.Tensor, config) -> Engine:  # noqa: ANN001
    update, _, labels = make_update(count=2)
    choice = resolve_labels(update, labels.tolist(), config)
    _, simulator, _ = _prepare(update, choice, config, CPU, 2)
    generator = load_generator(TINY, (3, 8, 8))
    space = WeightSpace(
        (2, 3, 8, 8), update.input, CPU, generator, latents, True, proximity=0.5, trust=0.05
    )
    return Engine(simulator, config, (2, 3, 8, 8), update.input, 4, False, None, CPU, space=space)


def test_restarts_in_the_weight_stage_are_separate_runs_vmapped() -> None:
    latents = torch.randn(3, 2, 6, 1, 1, generator=torch.Generator().manual_seed(4))
    config = preset("gias", generator=TINY, seeds=3, iterations=5, lr=1e-2, tv=1e-3)
    together = _weight_engine(latents, config)
    together.run()
    for seed in range(3):
        alone = _weight_engine(latents[seed : seed + 1], config.model_copy(update={"seeds": 1}))
        alone.run()
        for name, value in alone.params.items():
            torch.testing.assert_close(together.params[name][seed], value[0], rtol=1e-5, atol=1e-6)


def _prior(**overrides: object):  # noqa: ANN202
    settings = dict(
        generator=TINY,
        seeds=2,
        latent_iterations=3,
        iterations=4,
        weight_stage="prior",
        generator_proximity=1.0,
        generator_trust=0.05,
    )
    return preset("gias", **{**settings, **overrides})


def test_prior_weight_stage_refines_every_restart_and_picks_by_distance() -> None:
    update, _, labels = make_update(count=2)
    result = run_attack(update, labels.tolist(), _prior(), CPU, progress=False)
    meta = result.metadata
    assert [s["stage"] for s in meta["stages"]] == ["z", "w"]
    assert meta["stages"][1]["seeds"] == 2 and len(meta["seed_distances"]) == 2
    assert meta["chosen_seed"] == min(range(2), key=meta["seed_distances"].__getitem__)
    assert meta["search"]["proximity"] == 1.0 and meta["search"]["trust"] == 0.05
    consensus = run_attack(
        update, labels.tolist(), _prior(pick="consensus", group=0.01), CPU, progress=False
    )
    assert consensus.metadata["pick"] == "consensus"


def test_free_weight_stage_is_the_first_version() -> None:
    """The default (free) stage: one seed from the best restart, no proximity or trust."""
    update, _, labels = make_update(count=2)
    config = preset("gias", generator=TINY, seeds=2, latent_iterations=3, iterations=4)
    free = run_attack(update, labels.tolist(), config, CPU, progress=False)
    assert free.metadata["stages"][1] == {"stage": "w", "iterations": 4, "seeds": 1}
    assert "proximity" not in free.metadata["search"]
    ignored = config.model_copy(update=dict(generator_proximity=5.0, generator_trust=0.01))
    again = run_attack(update, labels.tolist(), ignored, CPU, progress=False)
    assert torch.equal(again.images, free.images)


def test_lr_scale_probe_picks_the_lower_distance_and_reads_no_truth(tmp_path: Path) -> None:
    update, images, labels = make_update(count=2, labels=[1, 3])
    update_path, truth = tmp_path / "u.safetensors", tmp_path / "truth.safetensors"
    save_update(update, update_path)
    save_batch(BatchFile(images, labels, {}), truth)
    opened: list[str] = []
    active = {"on": False}

    def audit(event: str, args: tuple) -> None:
        if active["on"] and event == "open" and args and isinstance(args[0], (str, Path)):
            opened.append(str(args[0]))

    sys.addaudithook(audit)
    out = tmp_path / "r.safetensors"
    active["on"] = True
    try:
        result = CliRunner().invoke(
            app,
            [
                "invert",
                str(update_path),
                "--attack",
                "gias",
                "--generator",
                TINY,
                "--labels",
                "1,3",
                "--latent-iterations",
                "3",
                "--iterations",
                "4",
                "--seeds",
                "2",
                "--weight-stage",
                "prior",
                "--generator-lr-scale",
                "auto",
                "--probe-iterations",
                "3",
                "--generator-proximity",
                "1",
                "--no-progress",
                "--out",
                str(out),
            ],  # fmt: skip
        )
    finally:
        active["on"] = False
    assert result.exit_code == 0, result.output
    assert str(update_path) in opened  # the hook sees the files the run reads
    assert not [path for path in opened if Path(path).name == truth.name]
    meta = load_batch(out).metadata
    probe = next(s for s in meta["stages"] if s["stage"] == "probe")
    assert set(probe["distances"]) == {"relative", "absolute"}
    assert probe["chosen"] == min(probe["distances"], key=probe["distances"].__getitem__)
    assert meta["search"]["generator_lr"] == probe["chosen"]
    assert "generator lr scale" in result.output
    json.dumps(meta)


def test_probe_result_survives_a_resume_in_the_weight_stage(tmp_path: Path) -> None:
    from gradinvert.invert import InterruptedRun

    update, _, labels = make_update(count=2)
    config = _prior(generator_lr_scale="auto", probe_iterations=2)
    straight = run_attack(update, labels.tolist(), config, CPU, progress=False)
    checkpoint = tmp_path / "run.ckpt"

    def stop(engine: Engine, progress: object) -> None:
        if engine.stage == "w" and engine.iteration == 2:
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
    resumed = run_attack(
        update, labels.tolist(), config, CPU, progress=False, checkpoint=checkpoint, resume=True
    )
    assert torch.equal(resumed.images, straight.images)
    assert resumed.metadata == straight.metadata


def test_memory_estimate_counts_every_restarts_copies() -> None:
    from gradinvert.models.footprint import update_footprint
    from gradinvert.runtime.memory import GENERATOR_COPIES, estimate_invert

    update, _, _ = make_update(count=2)
    footprint = update_footprint(update)
    one = estimate_invert(update, footprint, 2, 3, "zw", 1000).bytes
    every = estimate_invert(update, footprint, 2, 3, "zw", 1000, every_restart=True).bytes
    assert every - one == 4 * 2 * 2 * 1000 * GENERATOR_COPIES  # two more seeds' 2 copies each
