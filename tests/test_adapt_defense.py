"""--adapt-defense: the support mask, sign and DP-SGD clipping in the candidate's path against
hand computations, and where the adaptation is (not) exact."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.func import grad

from gradinvert.client.aggregate import aggregate_updates
from gradinvert.client.capture import CaptureConfig, capture_update
from gradinvert.client.defenses import DefenseConfig
from gradinvert.client.dpsgd import DPConfig
from gradinvert.invert.simulate import Simulator, build_victim
from gradinvert.io.files import LocalTraining
from gradinvert.models import InputSpec, build_model, model_spec

SHAPE = (3, 8, 8)
INPUT = InputSpec(SHAPE)
SPEC = model_spec("lenet", 5, SHAPE)


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.rand(3, *SHAPE, generator=generator), torch.tensor([0, 3, 3])


def _capture(config: CaptureConfig):
    x, y = _batch()
    return capture_update(build_model(SPEC, init_seed=0), SPEC, INPUT, x, y, config)


def _simulator(update, adapt: bool = True) -> Simulator:
    victim = build_victim(update, "cpu")
    _, y = _batch()
    return Simulator(
        victim, update, y, victim.trainable, "sql2", False, "cpu", 3, adapt_defense=adapt
    )


def _candidate() -> torch.Tensor:
    return torch.rand(3, *SHAPE, generator=torch.Generator().manual_seed(5))


def _plain_gradient(pixels: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    model = build_model(SPEC, init_seed=0)
    loss = F.cross_entropy(model(INPUT.normalize(pixels)), labels)
    names, params = zip(*model.named_parameters(), strict=True)
    return dict(zip(names, torch.autograd.grad(loss, params), strict=True))


def _sql2(candidate: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> float:
    return sum(float((candidate[n].double() - target[n].double()).square().sum()) for n in target)


def test_support_mask_matches_hand_computation():
    update = _capture(CaptureConfig(defense=DefenseConfig(prune=0.9)))
    simulator = _simulator(update)
    assert simulator.adaptation.applied[0].startswith("prune")
    x = _candidate()
    found = float(simulator.candidate(INPUT.normalize(x))[0])
    plain = _plain_gradient(x, _batch()[1])
    masked = {n: g * (update.update[n] != 0) for n, g in plain.items()}
    assert found == pytest.approx(_sql2(masked, update.update), rel=1e-4)
    as_is = float(_simulator(update, adapt=False).candidate(INPUT.normalize(x))[0])
    assert as_is == pytest.approx(_sql2(plain, update.update), rel=1e-4)


def test_sign_matches_hand_computation_and_passes_a_gradient():
    update = _capture(CaptureConfig(defense=DefenseConfig(sign=True)))
    simulator = _simulator(update)
    x = INPUT.normalize(_candidate())
    found = float(simulator.candidate(x)[0])
    plain = _plain_gradient(_candidate(), _batch()[1])
    signed = {n: torch.sign(g) for n, g in plain.items()}
    assert found == pytest.approx(_sql2(signed, update.update), rel=1e-6)
    pull = grad(lambda inputs: simulator.candidate(inputs)[0])(x)
    assert float(pull.abs().sum()) > 0  # straight-through: the sign does not stop the search


@pytest.mark.parametrize("local", [None, LocalTraining(steps=2, lr=0.5, batch_size=2)])
def test_dp_clipping_matches_a_per_example_loop_and_the_truth_matches_exactly(local):
    clip = 0.05
    update = _capture(CaptureConfig(dp=DPConfig(clip, 0.0), local=local))
    simulator = _simulator(update)
    assert simulator.adaptation.dp_clip == clip
    x, y = _batch()
    truth = float(simulator.candidate(INPUT.normalize(x))[0])
    assert truth < 1e-12  # noise 0: the adapted client reproduces the update
    as_is = float(_simulator(update, adapt=False).candidate(INPUT.normalize(x))[0])
    assert as_is > 1e-6
    if local is not None:
        return
    candidate = _candidate()
    examples = [_plain_gradient(candidate[n : n + 1], y[n : n + 1]) for n in range(3)]
    clipped = {}
    for grads in examples:
        norm = torch.sqrt(sum(g.double().square().sum() for g in grads.values()))
        factor = min(1.0, clip / (float(norm) + 1e-6))
        for name, g in grads.items():
            clipped[name] = clipped.get(name, 0) + factor * g / 3
    found = float(simulator.candidate(INPUT.normalize(candidate))[0])
    assert found == pytest.approx(_sql2(clipped, update.update), rel=1e-4)


def test_adaptation_is_skipped_where_it_is_not_exact():
    noisy = _capture(CaptureConfig(defense=DefenseConfig(prune=0.9, noise=0.01)))
    plan = _simulator(noisy).adaptation
    assert not plan.transforms and any("noise" in s and "support" in s for s in plan.skipped)
    x, y = _batch()
    model = build_model(SPEC, init_seed=0)
    config = CaptureConfig(defense=DefenseConfig(prune=0.9))
    members = [
        capture_update(model, SPEC, INPUT, x[p], y[p], config) for p in (slice(0, 1), slice(1, 3))
    ]
    aggregate = aggregate_updates(members, ["a", "b"])
    plan = _simulator(aggregate).adaptation
    assert not plan.transforms and any("union" in s for s in plan.skipped)
    quantized = _capture(CaptureConfig(defense=DefenseConfig(quantize=4)))
    plan = _simulator(quantized).adaptation
    assert not plan.active and plan.skipped == ["quantize: random, not simulated"]
