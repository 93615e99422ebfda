"""Gradient distances and image priors against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from invert_support import make_update, one_thread  # noqa: F401 (fixture)

from gradinvert.config import preset
from gradinvert.config.attack import PRESETS, AttackConfig, preset_table
from gradinvert.invert.attack import _prepare, resolve_labels
from gradinvert.invert.engine import lr_at
from gradinvert.invert.objectives import GradientDistance, select_layers
from gradinvert.invert.priors import bn_prior, bn_reference, l2_norm, total_variation
from gradinvert.runtime.errors import UsageError

G = [torch.tensor([1.0, 2.0, 2.0]), torch.tensor([[0.0, -1.0], [3.0, 0.0]])]
T = [torch.tensor([1.0, 0.0, 0.0]), torch.tensor([[1.0, 1.0], [0.0, 1.0]])]


def test_sql2_by_hand() -> None:
    # layer 1: (0, 2, 2) -> 8; layer 2: (-1, -2, 3, -1) -> 15
    assert float(GradientDistance("sql2", T)(G)) == pytest.approx(23.0)


def test_l2_per_layer_by_hand() -> None:
    assert float(GradientDistance("l2", T)(G)) == pytest.approx(math.sqrt(8) + math.sqrt(15))


def test_global_cosine_by_hand() -> None:
    dot = 1 * 1 + (0 * 1 + -1 * 1 + 3 * 0 + 0 * 1)  # = 0
    g_norm = math.sqrt(1 + 4 + 4 + 1 + 9)
    t_norm = math.sqrt(1 + 1 + 1 + 1)
    expected = 1 - dot / (g_norm * t_norm)
    assert float(GradientDistance("cosine", T)(G)) == pytest.approx(expected)
    # scale invariance of the cosine distance, zero at the target itself
    assert float(GradientDistance("cosine", T)([3 * g for g in G])) == pytest.approx(expected)
    assert float(GradientDistance("cosine", T)(T)) == pytest.approx(0.0, abs=1e-7)


def test_layer_cosine_by_hand() -> None:
    cos1 = 1 / (3 * 1)
    cos2 = (-1) / (math.sqrt(10) * math.sqrt(3))
    expected = ((1 - cos1) + (1 - cos2)) / 2
    assert float(GradientDistance("layer-cosine", T)(G)) == pytest.approx(expected)


def test_relative_weights_by_hand() -> None:
    """Each tensor pair divided by ||g*_l|| (here 1 and √3) before the distance."""
    assert float(GradientDistance("sql2", T, relative=True)(G)) == pytest.approx(8 + 15 / 3)
    expected_l2 = math.sqrt(8) + math.sqrt(15 / 3)
    assert float(GradientDistance("l2", T, relative=True)(G)) == pytest.approx(expected_l2)
    dot, g_sq, t_sq = 1.0 - 1.0 / 3, 9.0 + 10.0 / 3, 1.0 + 3.0 / 3
    expected_cos = 1 - dot / math.sqrt(g_sq * t_sq)
    assert float(GradientDistance("cosine", T, relative=True)(G)) == pytest.approx(expected_cos)
    plain = float(GradientDistance("layer-cosine", T)(G))
    assert float(GradientDistance("layer-cosine", T, relative=True)(G)) == pytest.approx(plain)


def test_relative_weights_give_an_all_zero_target_the_mean_weight() -> None:
    target = [T[0], T[1], torch.zeros(2)]
    grads = [G[0], G[1], torch.tensor([3.0, 4.0])]
    mean_weight = (1 / 1 + 1 / math.sqrt(3)) / 2
    expected = 8 + 15 / 3 + 25 * mean_weight**2
    assert float(GradientDistance("sql2", target, relative=True)(grads)) == pytest.approx(expected)


def _naive(kind: str, grads: list[torch.Tensor], target: list[torch.Tensor]) -> torch.Tensor:
    if kind == "sql2":
        return sum(((g - t) ** 2).sum() for g, t in zip(grads, target, strict=True))
    if kind == "l2":
        return sum(((g - t) ** 2).sum().sqrt() for g, t in zip(grads, target, strict=True))
    dots = [(g * t).sum() for g, t in zip(grads, target, strict=True)]
    if kind == "cosine":
        g_norm = sum((g**2).sum() for g in grads).sqrt()
        t_norm = sum((t**2).sum() for t in target).sqrt()
        return 1 - sum(dots) / (g_norm * t_norm)
    cosines = [
        d / ((g**2).sum().sqrt() * (t**2).sum().sqrt())
        for d, g, t in zip(dots, grads, target, strict=True)
    ]
    return sum(1 - c for c in cosines) / len(cosines)


@pytest.mark.parametrize("relative", [False, True])
@pytest.mark.parametrize("kind", ["sql2", "l2", "cosine", "layer-cosine"])
def test_fused_distances_match_autograd_under_vmap(kind: str, relative: bool) -> None:
    """Values and gradients (vmapped over 2 seeds) against plain float64 formulas; ``relative``
    equals the plain distance of every tensor pair divided by ||g*_l||."""
    generator = torch.Generator().manual_seed(0)
    shapes = [(3, 5), (7, 20000), (131072,), (1,)]  # tiny, chunks + tail, exact chunks, scalar
    target = [torch.randn(s, generator=generator) * (i + 1) for i, s in enumerate(shapes)]
    grads = [torch.randn((2, *s), generator=generator) for s in shapes]
    distance = GradientDistance(kind, target, relative=relative)

    def fused(*gs: torch.Tensor) -> torch.Tensor:
        return distance(list(gs))

    argnums = tuple(range(len(shapes)))
    values = torch.func.vmap(fused)(*grads)
    gradients = torch.func.vmap(torch.func.grad(fused, argnums=argnums))(*grads)
    for seed in range(2):
        leaves = [g[seed].double().requires_grad_() for g in grads]
        scales = [t.double().norm() if relative else 1.0 for t in target]
        expected = _naive(
            kind,
            [g / c for g, c in zip(leaves, scales, strict=True)],
            [t.double() / c for t, c in zip(target, scales, strict=True)],
        )
        expected_grads = torch.autograd.grad(expected, leaves)
        assert float(values[seed]) == pytest.approx(expected.item(), rel=1e-5)
        for got, want in zip(gradients, expected_grads, strict=True):
            torch.testing.assert_close(got[seed].double(), want, rtol=1e-4, atol=1e-7)


def test_select_layers_top_k_by_target_norm() -> None:
    target = {"a": torch.ones(3), "b": torch.full((2,), 10.0), "c": torch.zeros(5)}
    assert select_layers(["a", "b", "c"], target, "top-k:2") == ["a", "b"]
    assert select_layers(["a", "b", "c"], target, "all") == ["a", "b", "c"]
    with pytest.raises(UsageError):
        select_layers(["a"], target, "top-k:0")


def test_total_variation_and_l2_by_hand() -> None:
    x = torch.randn(2, 3, 2, 5, 4, generator=torch.Generator().manual_seed(1))
    a = x.numpy()
    for seed in range(2):
        dx = np.abs(np.diff(a[seed], axis=-1)).mean()
        dy = np.abs(np.diff(a[seed], axis=-2)).mean()
        assert float(total_variation(x)[seed]) == pytest.approx(dx + dy, rel=1e-5)
        assert float(l2_norm(x)[seed]) == pytest.approx(np.sqrt((a[seed] ** 2).sum()), rel=1e-5)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_bn_prior_against_directly_computed_statistics(mode: str) -> None:
    """The simulator's BN statistics and the prior, against hooks that compute them by hand."""
    update, _, labels = make_update(count=3, mode=mode, share_bn_stats=True)
    config = preset("ig", bn=1.0, bn_first=10.0)
    choice = resolve_labels(update, labels.tolist(), config)
    victim, simulator, _ = _prepare(update, choice, config, torch.device("cpu"), 3)
    x = torch.randn(2, 3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    _, (means, variances) = simulator.evaluate(x)
    reference = bn_reference(update, victim.bn_names)
    assert reference.source == "shared batch statistics"
    prior = bn_prior(means, variances, reference, first_weight=10.0)

    from gradinvert.models.restore import model_from_update

    model = model_from_update(update)
    for seed in range(2):
        seen: list[torch.Tensor] = []
        handles = [
            layer.register_forward_pre_hook(lambda _m, a, seen=seen: seen.append(a[0].detach()))
            for layer in model.modules()
            if isinstance(layer, torch.nn.BatchNorm2d)
        ]
        with torch.no_grad():
            model(x[seed])
        for handle in handles:
            handle.remove()
        expected = 0.0
        for index, (inputs, name) in enumerate(zip(seen, victim.bn_names, strict=True)):
            a = inputs.double().numpy()
            mean = a.mean(axis=(0, 2, 3))
            var = ((a - mean[None, :, None, None]) ** 2).mean(axis=(0, 2, 3))
            true_mean, true_var = (t.double().numpy() for t in update.bn_stats[name])
            np.testing.assert_allclose(means[index][seed].numpy(), mean, rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(variances[index][seed].numpy(), var, rtol=1e-4, atol=1e-5)
            term = np.linalg.norm(mean - true_mean) + np.linalg.norm(var - true_var)
            expected += (10.0 if index == 0 else 1.0) * term
        assert float(prior[seed]) == pytest.approx(expected, rel=1e-4)


def test_bn_reference_falls_back_to_running_statistics() -> None:
    update, _, _ = make_update(count=2, mode="train", share_bn_stats=False)
    names = [n[: -len(".running_mean")] for n in update.buffers if n.endswith(".running_mean")]
    reference = bn_reference(update, names)
    assert reference.source == "running statistics"
    assert torch.equal(reference.means[0], update.buffers[f"{names[0]}.running_mean"])


def test_learning_rate_schedules() -> None:
    step = AttackConfig(iterations=80, lr=0.1, scheduler="step")
    assert [lr_at(step, i) for i in (0, 29, 30, 50, 70, 79)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.001, 0.0001, 0.0001]
    )
    cosine = AttackConfig(iterations=110, lr=0.2, scheduler="cosine", warmup=10)
    assert lr_at(cosine, 0) == pytest.approx(0.02)
    assert lr_at(cosine, 9) == pytest.approx(0.2)
    assert lr_at(cosine, 60) == pytest.approx(0.1)
    assert lr_at(cosine, 10) == pytest.approx(0.2)


def test_presets_and_overrides() -> None:
    config = preset("ig", iterations=7, tv=None, seeds=2)
    assert (config.attack, config.iterations, config.tv, config.seeds) == ("ig", 7, 1e-2, 2)
    assert config.optimizer == "signed-adam" and config.objective == "cosine"
    gi = preset("gradinversion")
    assert (gi.objective, gi.bn, gi.bn_first, gi.group, gi.seeds) == ("l2", 0.01, 3.0, 0.01, 8)
    assert (gi.calibrate, gi.gradient_weight) == ("start", 1.0)
    assert gi.pick == "consensus"
    assert preset("dlg").optimizer == "lbfgs" and preset("dlg").learn_labels
    with pytest.raises(UsageError, match="--attack"):
        preset("nope")
    with pytest.raises(UsageError, match="unknown attack settings"):
        preset("ig", colour="red")
    with pytest.raises(UsageError) as info:
        preset("ig", optimizer="sgd", iterations=0, layers="top-3")
    assert "--optimizer" in info.value.message and "--iterations" in info.value.message
    table = preset_table()
    assert all(f"`{name}`" in table for name in PRESETS)
