"""Dead-tap trimming: the same outputs, gradients and distances as the untrimmed model."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from invert_support import make_update, one_thread  # noqa: F401 (fixture)
from torch import nn

from gradinvert.invert.objectives import GradientDistance
from gradinvert.invert.simulate import Simulator, build_victim
from gradinvert.invert.trim import TrimmedConv2d, live_taps, trim_dead_taps
from gradinvert.io.files import LocalTraining


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "padding", "dilation", "live"),
    [
        (1, 3, 1, 1, 1, range(1, 2)),  # ResNet layer4 at 32 px: centre tap only
        (2, 3, 2, 1, 1, range(1, 3)),  # strided: the first row only ever sees padding
        (3, 5, 1, 2, 1, range(0, 5)),
        (1, 5, 1, 2, 1, range(2, 3)),
        (2, 3, 1, 2, 2, range(1, 2)),
        (3, 3, 1, 2, 2, range(0, 3)),
        (1, 3, 1, 2, 2, range(1, 2)),
        (8, 3, 1, 1, 1, range(0, 3)),
    ],
)
def test_live_taps_against_brute_force(size, kernel, stride, padding, dilation, live) -> None:  # noqa: ANN001
    assert live_taps(size, kernel, stride, padding, dilation) == live


@pytest.mark.parametrize(
    ("height", "width", "kernel", "stride", "padding", "dilation", "groups"),
    [
        (1, 1, 3, 1, 1, 1, 1),
        (2, 2, 3, 2, 1, 1, 1),
        (1, 3, 3, 1, 1, 1, 2),
        (2, 1, 5, 1, 2, 1, 1),
        (3, 2, 3, 2, 2, 2, 1),
    ],
)
def test_trimmed_conv_gives_the_same_output_and_live_gradients(
    height: int, width: int, kernel: int, stride: int, padding: int, dilation: int, groups: int
) -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, kernel, stride, padding, dilation, groups, bias=True).double()
    model = nn.Sequential(conv)
    x = torch.randn(3, 4, height, width, dtype=torch.float64)
    expected = F.conv2d(x, conv.weight, conv.bias, stride, padding, dilation, groups)
    (full_grad,) = torch.autograd.grad(expected.square().sum(), conv.weight)

    trims = trim_dead_taps(model, (4, height, width))
    assert list(trims) == ["0.weight"]
    trimmed = model[0]
    assert isinstance(trimmed, TrimmedConv2d)
    weight = trimmed.weight.detach().requires_grad_()
    got = F.conv2d(F.pad(x, trimmed.pad), weight, conv.bias, stride, 0, dilation, groups)
    torch.testing.assert_close(model(x), expected)
    torch.testing.assert_close(got, expected)
    (live_grad,) = torch.autograd.grad(got.square().sum(), weight)
    trim = trims["0.weight"]
    torch.testing.assert_close(live_grad, trim.apply(full_grad))
    dead = full_grad.clone()
    trim.apply(dead).zero_()
    assert torch.count_nonzero(dead) == 0  # the dead taps' gradient is exactly zero


def test_a_conv_reused_on_maps_of_different_sizes_is_left_alone() -> None:
    class Pyramid(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            small = self.conv(F.avg_pool2d(x, x.shape[-1]))  # 1×1: dead taps here only
            return self.conv(x).mean() + small.mean()

    model = Pyramid()
    assert trim_dead_taps(model, (3, 8, 8)) == {}
    assert isinstance(model.conv, nn.Conv2d)


def test_no_trim_where_every_tap_sees_the_input() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1))
    assert trim_dead_taps(model, (3, 8, 8)) == {}
    assert isinstance(model[0], nn.Conv2d)


@pytest.mark.parametrize(
    ("objective", "local"),
    [
        ("l2", None),
        ("sql2", None),
        ("cosine", None),
        ("layer-cosine", None),
        ("l2", LocalTraining(steps=2, lr=0.5, batch_size=1)),
    ],
)
def test_trimmed_resnet_distance_and_gradient_equal_the_full_model(
    objective: str, local: LocalTraining | None
) -> None:
    """ResNet-18 at 16 px (1×1 maps in layer3 and layer4) and a noisy update, so the dead taps
    of the target are not zero: values and image gradients match the full model. (Eval mode:
    train-mode BN over 2 values per channel amplifies float32 rounding beyond any tolerance.)"""
    update, images, labels = make_update("resnet18", count=2, size=16, num_classes=4, local=local)
    generator = torch.Generator().manual_seed(1)
    for name, value in update.update.items():
        update.update[name] = value + 1e-3 * torch.randn(value.shape, generator=generator)
    x = update.input.normalize(images) + 0.3 * torch.randn(images.shape, generator=generator)
    results = []
    for trim in (False, True):
        victim = build_victim(update, "cpu", trim=trim)
        simulator = Simulator(
            victim, update, labels, victim.trainable, objective, False, "cpu", batch_size=2
        )
        if local is None:
            candidate = x.clone().requires_grad_()
            distance, _ = simulator.candidate(candidate, autograd=True)
            (gradient,) = torch.autograd.grad(distance, candidate)
        else:  # FedAvg deltas go through torch.func
            gradient, distance = torch.func.grad_and_value(
                lambda c, s=simulator: s.candidate(c)[0]
            )(x)
        results.append((victim.trims, distance.detach(), gradient))
    (untrimmed, d_full, g_full), (trims, d_trim, g_trim) = results
    assert untrimmed == {}
    assert "layer4.1.conv2.weight" in trims and "layer3.0.conv1.weight" in trims
    torch.testing.assert_close(d_trim, d_full, rtol=1e-5, atol=1e-6)
    # float32 sums in another order: entries near zero are compared on the gradient's own scale
    scale = g_full.abs().max().item()
    torch.testing.assert_close(g_trim, g_full, rtol=1e-4, atol=1e-4 * scale)


def test_dead_norms_enter_each_distance_as_constants() -> None:
    """A distance over live entries plus the dead entries' norms equals the full distance when
    the candidate is zero on the dead entries."""
    generator = torch.Generator().manual_seed(2)
    target = torch.randn(5, 3, 3, generator=generator)
    candidate = torch.randn(5, 3, 3, generator=generator)
    candidate[:, 0, :] = 0.0  # the dead row
    live_t, live_c = target[:, 1:, :], candidate[:, 1:, :]
    dead = float(target[:, 0, :].square().sum())
    other_t = torch.randn(4, generator=generator)
    other_c = torch.randn(4, generator=generator)
    for kind in ("l2", "sql2", "cosine", "layer-cosine"):
        full = GradientDistance(kind, [target, other_t])([candidate, other_c])
        cut = GradientDistance(kind, [live_t, other_t], [dead, 0.0])([live_c, other_c])
        torch.testing.assert_close(cut, full, rtol=1e-5, atol=1e-6)
