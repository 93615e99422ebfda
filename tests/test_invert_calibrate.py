"""--calibrate start: the gradient and BN weights relative to the terms' pull at the start."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from invert_support import (  # noqa: F401 (fixture)
    make_engine,
    make_update,
    one_thread,
    reference_seed_loss,
)

from gradinvert.config import AttackConfig, preset
from gradinvert.invert import run_attack
from gradinvert.invert.calibrate import StartPull, calibrated_weights


def test_calibrated_weights_rule() -> None:
    """α_G/‖∇D₀‖, bn/‖∇R_rest₀‖, and the first layer's factor so that bn·bn_first/‖∇R₁₀‖
    ends up on R₁."""
    config = preset("gradinversion", calibrate="start", gradient_weight=2.0, bn=0.5, bn_first=3.0)
    gradient, bn, bn_first = calibrated_weights(config, StartPull(8.0, 0.25, 4.0))
    assert gradient == pytest.approx(2.0 / 8.0)
    assert bn == pytest.approx(0.5 / 4.0)
    assert bn * bn_first == pytest.approx(0.5 * 3.0 / 0.25)
    # a term that is zero at the start keeps its weight as given
    assert calibrated_weights(config, StartPull(0.0, 0.0, 0.0)) == (2.0, 0.5, 3.0)


def test_engine_calibration_matches_a_hand_computation() -> None:
    """The engine's start pulls equal the gradient norms of the terms written out with plain
    autograd on the real model at its start candidates; at the start each term then pulls the
    pixels with exactly its weight."""
    update, _, labels = make_update(count=3, mode="train", share_bn_stats=True)
    config = preset(
        "gradinversion",
        seeds=3,
        calibrate="start",
        gradient_weight=2.0,
        bn=0.2,
        bn_first=5.0,
        tv=0.0,
        l2=0.0,
        group=0.0,
        langevin=0.0,
    )
    engine = make_engine(update, labels.tolist(), config, 3)

    def pull(x: torch.Tensor, config: AttackConfig, **weights: float) -> torch.Tensor:
        """∇ₓ of the loss with the given weights (plain autograd on the real model)."""
        x = x.clone().requires_grad_()
        plain = config.model_copy(update=dict(**weights))
        loss = reference_seed_loss(update, labels, plain, x, torch.zeros_like(x))
        return torch.autograd.grad(loss, x)[0]

    starts = [engine.candidates[k] for k in range(3)]
    distance = [pull(x, config, gradient_weight=1.0, bn=0.0) for x in starts]
    rest = [pull(x, config, gradient_weight=0.0, bn=1.0, bn_first=0.0) for x in starts]
    first = [
        pull(x, config, gradient_weight=0.0, bn=1.0, bn_first=1.0) - r
        for x, r in zip(starts, rest, strict=True)
    ]

    def mean_norm(grads: list[torch.Tensor]) -> float:
        return sum(float(g.norm()) for g in grads) / len(grads)

    assert engine.start is not None
    assert engine.start.gradient == pytest.approx(mean_norm(distance), rel=1e-4)
    assert engine.start.bn_first == pytest.approx(mean_norm(first), rel=1e-4)
    assert engine.start.bn_rest == pytest.approx(mean_norm(rest), rel=1e-4)
    gradient, bn, bn_first = engine.weights
    assert gradient == pytest.approx(2.0 / mean_norm(distance), rel=1e-4)
    assert bn == pytest.approx(0.2 / mean_norm(rest), rel=1e-4)
    assert bn * bn_first == pytest.approx(0.2 * 5.0 / mean_norm(first), rel=1e-4)
    # the whole loss's pull at the start, with those weights, is the weighted sum of the pulls
    absolute = config.model_copy(update=dict(gradient_weight=gradient, bn=bn, bn_first=bn_first))
    expected = pull(starts[0], absolute)
    grads, _, _, _ = engine._gradients()
    torch.testing.assert_close(grads["x"][0], expected, rtol=1e-4, atol=1e-7)


def test_calibration_is_scale_free() -> None:
    """The same update in other units (the summed loss: every gradient ×N) gives the same run
    with calibration, and another one without it."""
    update, _, labels = make_update(count=2, mode="train", share_bn_stats=True)
    summed = dataclasses.replace(
        update,
        update={k: 2.0 * v for k, v in update.update.items()},
        loss={**update.loss, "reduction": "sum"},
    )
    images = {}
    for calibrate in ("start", "none"):
        config = preset("gradinversion", iterations=20, seeds=2, calibrate=calibrate)
        config = config.model_copy(update=dict(gradient_weight=1.0, bn=1.0, bn_first=10.0))
        for name, u in (("mean", update), ("sum", summed)):
            result = run_attack(u, labels.tolist(), config, progress=False)
            images[calibrate, name] = result.images
            if calibrate == "start":
                gradient = result.metadata["calibration"]["gradient"]  # ‖∇D₀‖
                images["distance", name] = gradient
    assert images["distance", "sum"] == pytest.approx(2.0 * images["distance", "mean"], rel=1e-4)
    torch.testing.assert_close(images["start", "sum"], images["start", "mean"], atol=1e-3, rtol=0)
    assert (images["none", "sum"] - images["none", "mean"]).abs().max() > 0.05


def test_calibration_is_recorded_and_reproducible() -> None:
    update, _, labels = make_update(count=2, mode="train", share_bn_stats=True)
    config = preset("gradinversion", iterations=3, seeds=2, calibrate="start")
    first = run_attack(update, labels.tolist(), config, progress=False)
    second = run_attack(update, labels.tolist(), config, progress=False)
    record = first.metadata["calibration"]
    assert set(record) == {"gradient", "bn_first", "bn_rest", "weights"}
    assert record["weights"]["gradient_weight"] == pytest.approx(
        config.gradient_weight / record["gradient"]
    )
    assert torch.equal(first.images, second.images)
    off = run_attack(update, labels.tolist(), config.model_copy(update=dict(calibrate="none")))
    assert off.metadata["calibration"] is None
