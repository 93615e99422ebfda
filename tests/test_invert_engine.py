"""The inversion engine: vmapped seeds, FedAvg simulation, resume, non-finite losses, DLG."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from invert_support import make_engine as _engine
from invert_support import (  # noqa: F401 (fixture)
    make_update,
    one_thread,
    photos,
    reference_seed_loss,
)

from gradinvert.client.capture import local_sgd_delta, minibatch_schedule
from gradinvert.config import preset
from gradinvert.invert import DivergedError, InterruptedRun, run_attack
from gradinvert.invert.attack import _prepare, resolve_labels
from gradinvert.invert.engine import MAX_RESETS, Engine
from gradinvert.io.files import LocalTraining
from gradinvert.models.restore import model_from_update


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / (a - b).square().mean()))


@pytest.mark.parametrize("local", [None, LocalTraining(2, 0.5, 2)])
def test_vmapped_seeds_match_separate_plain_autograd(
    local: LocalTraining | None, device: torch.device
) -> None:
    """Per-seed loss gradients of the vmapped engine equal separate, plain-autograd runs.

    Train-mode BN (per-candidate batch statistics), every prior and the group term included.
    """
    update, _, labels = make_update(count=3, mode="train", share_bn_stats=True, local=local)
    config = preset(
        "gradinversion", seeds=3, tv=0.3, l2=0.05, bn=0.2, bn_first=5.0, gradient_weight=2.0
    )
    config.calibrate = "none"  # the absolute weights reference_seed_loss uses
    engine = _engine(update, labels.tolist(), config, 3, device)
    generator = torch.Generator().manual_seed(5)
    engine.params = {"x": torch.randn(3, 3, 3, 8, 8, generator=generator).to(device)}
    engine.targets = torch.rand(3, 3, 3, 8, 8, generator=generator).to(device)
    grads, _, total, _ = engine._gradients()
    grad_x = grads["x"]
    for seed in range(3):
        x = engine.candidates[seed].clone().requires_grad_()
        expected = reference_seed_loss(update, labels, config, x, engine.targets[seed])
        (expected_grad,) = torch.autograd.grad(expected, x)
        assert float(total[seed]) == pytest.approx(expected.item(), rel=1e-5)
        torch.testing.assert_close(grad_x[seed], expected_grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_one_seed_autograd_path_matches_plain_autograd_and_vmap(
    mode: str, device: torch.device
) -> None:
    """One seed takes a regular-autograd path: same loss and gradient as the reference and as
    the vmapped torch.func path."""
    update, _, labels = make_update(count=3, mode=mode, share_bn_stats=mode == "train")
    config = preset(
        "gradinversion",
        seeds=1,
        pick="best",
        group=0.0,
        tv=0.3,
        l2=0.05,
        bn=0.2 if mode == "train" else 0.0,
        bn_first=5.0,
        gradient_weight=2.0,
        calibrate="none",
    )
    engine = _engine(update, labels.tolist(), config, 3, device)
    start = torch.randn(1, 3, 3, 8, 8, generator=torch.Generator().manual_seed(7))
    engine.params = {"x": start.to(device)}
    grads, _, total, _ = engine._gradients()
    grad_x = grads["x"]
    vmapped, (vmapped_total, _) = engine._grad_fns[False](engine.params, {}, None, None)
    vmapped_grad = vmapped["x"]
    x = engine.candidates[0].clone().requires_grad_()
    expected = reference_seed_loss(update, labels, config, x, torch.zeros_like(x))
    (expected_grad,) = torch.autograd.grad(expected, x)
    assert float(total[0]) == pytest.approx(expected.item(), rel=1e-5)
    assert float(vmapped_total[0]) == pytest.approx(expected.item(), rel=1e-5)
    torch.testing.assert_close(grad_x[0], expected_grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(vmapped_grad[0], expected_grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("shuffle", [False, True])
def test_delta_simulation_equals_capture(mode: str, shuffle: bool, device: torch.device) -> None:
    local = LocalTraining(steps=3, lr=0.3, batch_size=2, shuffle=shuffle)
    update, images, labels = make_update(count=3, mode=mode, local=local, seed=3)
    assert update.kind == "delta"
    config = preset("ig", seeds=1)
    choice = resolve_labels(update, labels.tolist(), config)
    _, simulator, _ = _prepare(update, choice, config, device, 3)
    inputs = update.input.normalize(images).to(device)
    simulated = simulator.local_delta(inputs)
    # capture's own routine on a fresh copy of the global model, same schedule, same device
    model = model_from_update(update, device)
    generator = torch.Generator().manual_seed(3)
    schedule = minibatch_schedule(3, update.local, generator)
    expected = local_sgd_delta(copy.deepcopy(model), inputs, labels.to(device), schedule, 0.3)
    # the update itself was captured on the CPU: another device rounds differently
    across = dict(rtol=1e-5, atol=1e-7) if device.type == "cpu" else dict(rtol=1e-4, atol=1e-6)
    for name, value in expected.items():
        torch.testing.assert_close(simulated[name], value, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(simulated[name].cpu(), update.update[name], **across)


def test_dlg_recovers_a_single_image_on_sigmoid_lenet() -> None:
    update, images, labels = make_update("lenet", count=1, size=16, labels=[3], num_classes=10)
    result = run_attack(update, [3], preset("dlg", iterations=40), progress=False)
    assert _psnr(result.images, images) > 25.0
    assert result.labels.tolist() == [3]
    assert result.metadata["labels"]["source"] == "given"


def test_dlg_learns_the_label_when_none_is_given(device: torch.device) -> None:
    update, images, _ = make_update("lenet", count=1, size=16, labels=[6], num_classes=10)
    result = run_attack(update, None, preset("dlg", iterations=40), device, progress=False)
    assert result.metadata["labels"]["source"] == "learned"
    assert result.labels.tolist() == [6]
    assert _psnr(result.images, images) > 25.0


def _gi_config(**overrides: object):  # noqa: ANN202
    settings = dict(
        iterations=9,
        seeds=2,
        group_start=0.0,
        registration_start=0.4,
        group_every=3,
        jitter=1,
        flip=True,
        langevin=0.2,
    )
    settings.update(overrides)
    return preset("gradinversion", **settings)


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_resume_ends_exactly_like_an_uninterrupted_run(
    tmp_path: Path, optimizer: str, device: torch.device
) -> None:
    update, _, labels = make_update(count=2, mode="train", share_bn_stats=True)
    config = _gi_config(optimizer=optimizer, lbfgs_evaluations=3)
    straight = run_attack(update, labels.tolist(), config, device, progress=False)

    checkpoint = tmp_path / "run.ckpt"

    def stop_at_four(engine: Engine, progress: object) -> None:
        if engine.iteration == 4:
            engine.request_stop()

    with pytest.raises(InterruptedRun, match="iteration 4/9"):
        run_attack(
            update,
            labels.tolist(),
            config,
            device,
            progress=False,
            checkpoint=checkpoint,
            checkpoint_every=2,
            on_iteration=stop_at_four,
        )
    state = torch.load(checkpoint, weights_only=True)
    assert state["iteration"] == 4
    assert all(t.device.type == "cpu" for t in state["params"].values())
    resumed = run_attack(
        update, labels.tolist(), config, device, progress=False, checkpoint=checkpoint, resume=True
    )
    assert torch.equal(resumed.images, straight.images)
    assert resumed.metadata == straight.metadata


def test_resume_refuses_a_checkpoint_of_another_run(tmp_path: Path) -> None:
    from gradinvert.runtime.errors import UsageError

    update, _, labels = make_update(count=2)
    checkpoint = tmp_path / "run.ckpt"
    config = preset("ig", iterations=2, seeds=1)
    run_attack(update, labels.tolist(), config, progress=False, checkpoint=checkpoint)
    other = preset("ig", iterations=2, seeds=1, tv=0.5)
    with pytest.raises(UsageError, match="another run"):
        run_attack(
            update, labels.tolist(), other, progress=False, checkpoint=checkpoint, resume=True
        )


def test_same_seed_same_result_other_seed_other_result(device: torch.device) -> None:
    update, _, labels = make_update(count=2, mode="train", share_bn_stats=True)
    a = run_attack(update, labels.tolist(), _gi_config(iterations=4), device, progress=False)
    b = run_attack(update, labels.tolist(), _gi_config(iterations=4), device, progress=False)
    c = run_attack(
        update, labels.tolist(), _gi_config(iterations=4, seed=1), device, progress=False
    )
    assert torch.equal(a.images, b.images) and a.metadata == b.metadata
    assert not torch.equal(a.images, c.images)
    assert c.metadata["seed"] == 1


def test_group_consensus_output_and_metadata(device: torch.device) -> None:
    update, _, labels = make_update(count=2, mode="train", share_bn_stats=True)
    config = _gi_config(iterations=6, pick="consensus", seeds=3)
    result = run_attack(update, labels.tolist(), config, device, progress=False)
    meta = result.metadata
    assert meta["pick"] == "consensus" and len(meta["seed_distances"]) == 3
    assert meta["chosen_seed"] == min(range(3), key=lambda k: meta["seed_distances"][k])
    assert meta["bn_reference"] == "shared batch statistics"
    assert result.images.shape == (2, 3, 8, 8) and result.images.device.type == "cpu"
    assert float(result.images.min()) >= 0.0 and float(result.images.max()) <= 1.0
    assert meta["device"] == device.type


def test_best_seed_is_picked_by_gradient_distance(device: torch.device) -> None:
    update, _, labels = make_update(count=2)
    config = preset("ig", iterations=5)
    result = run_attack(update, labels.tolist(), config, device, progress=False)
    distances = result.metadata["seed_distances"]
    best = min(range(len(distances)), key=distances.__getitem__)
    assert result.metadata["chosen_seed"] == best
    assert all(c["seed"] == best for c in result.metadata["candidates"])
    assert result.metadata["candidates"][0]["gradient_distance"] == distances[best]


def test_non_finite_seed_is_reset_and_the_run_finishes(
    monkeypatch: pytest.MonkeyPatch, device: torch.device
) -> None:
    update, _, labels = make_update(count=2)
    original = Engine._gradients

    def poisoned(self: Engine):  # noqa: ANN202
        grad_x, grad_labels, total, distance = original(self)
        if self.iteration == 2:
            total = total.clone()
            total[1] = float("nan")
        return grad_x, grad_labels, total, distance

    monkeypatch.setattr(Engine, "_gradients", poisoned)
    config = preset("ig", iterations=5, seeds=2)
    result = run_attack(update, labels.tolist(), config, device, progress=False)
    assert result.metadata["resets"] == [0, 1]
    assert torch.isfinite(result.images).all()


def test_a_seed_that_keeps_diverging_stops_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    update, _, labels = make_update(count=2)
    original = Engine._gradients

    def poisoned(self: Engine):  # noqa: ANN202
        grad_x, grad_labels, total, distance = original(self)
        return grad_x, grad_labels, torch.full_like(total, float("inf")), distance

    monkeypatch.setattr(Engine, "_gradients", poisoned)
    config = preset("ig", iterations=MAX_RESETS + 5, seeds=1)
    with pytest.raises(DivergedError, match="non-finite"):
        run_attack(update, labels.tolist(), config, progress=False)
