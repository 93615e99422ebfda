"""DP-SGD in capture: per-example gradients, clipping against Opacus, seeded noise, ε."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from typer.testing import CliRunner

from gradinvert.cli.main import app
from gradinvert.client.capture import CaptureConfig, capture_update
from gradinvert.client.dpsgd import (
    DPConfig,
    clip_factors,
    dp_sgd_gradient,
    per_example_gradients,
    privacy_spent,
)
from gradinvert.io.files import LocalTraining, load_update, save_update
from gradinvert.models import InputSpec, build_model, model_spec
from gradinvert.runtime.errors import UsageError

SHAPE = (3, 8, 8)


def _tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.GroupNorm(2, 4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 8 * 8, 5),
    )


def _batch(size: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(size, *SHAPE, generator=generator), torch.tensor([0, 1, 2, 3, 4, 0])[:size]


def test_per_example_gradients_match_a_loop_of_single_example_grads():
    model, (x, y) = _tiny(), _batch()
    found = per_example_gradients(model, x, y)
    params = list(model.parameters())
    names = [n for n, _ in model.named_parameters()]
    for n in range(x.shape[0]):
        loss = F.cross_entropy(model(x[n : n + 1]), y[n : n + 1])
        expected = torch.autograd.grad(loss, params)
        for name, grad in zip(names, expected, strict=True):
            torch.testing.assert_close(found[name][n], grad, rtol=1e-5, atol=1e-7)


def test_clipping_without_noise_matches_opacus_dp_optimizer_step():
    from opacus import GradSampleModule
    from opacus.optimizers import DPOptimizer

    x, y = _batch()
    clip = 0.05  # below every example's norm: each one is clipped
    model = _tiny()
    ours, stats = dp_sgd_gradient(
        model, x, y, DPConfig(clip, 0.0), torch.Generator().manual_seed(0)
    )
    assert stats["clipped"] == x.shape[0]

    reference = GradSampleModule(_tiny())
    optimizer = DPOptimizer(
        torch.optim.SGD(reference.parameters(), lr=1.0),
        noise_multiplier=0.0,
        max_grad_norm=clip,
        expected_batch_size=x.shape[0],
    )
    F.cross_entropy(reference(x), y).backward()
    optimizer.step()  # leaves DP-SGD's gradient (clipped, noised, averaged) in .grad
    for name, param in reference.named_parameters():
        expected = param.grad
        torch.testing.assert_close(
            ours[name.removeprefix("_module.")], expected, rtol=1e-5, atol=1e-9
        )


def test_clip_factors_are_opacus_formula_by_hand():
    per_example = {"a": torch.tensor([[3.0, 4.0], [0.3, 0.4]]), "b": torch.zeros(2, 1)}
    factors = clip_factors(per_example, 1.0)
    torch.testing.assert_close(factors, torch.tensor([1.0 / (5.0 + 1e-6), 1.0]))


def test_noise_is_seeded_and_has_the_right_std_per_coordinate():
    spec = model_spec("convnet-gn", 10, SHAPE, width=16)
    model, inputs = build_model(spec, init_seed=0), InputSpec(SHAPE)
    x, y = _batch(4)
    z, clip = 2.0, 0.5

    def capture(noise: float, seed: int) -> dict[str, torch.Tensor]:
        config = CaptureConfig(dp=DPConfig(clip, noise), seed=seed)
        return capture_update(model, spec, inputs, x.sigmoid(), y, config).update

    plain = capture(0.0, 0)
    first, again, other = capture(z, 0), capture(z, 0), capture(z, 1)
    for name in plain:
        torch.testing.assert_close(first[name], again[name], rtol=0, atol=0)
    assert any(not torch.equal(first[n], other[n]) for n in plain)
    noise = torch.cat([(first[n] - plain[n]).flatten() for n in plain]).double()
    expected = z * clip / x.shape[0]  # N(0, (zC)²) on the sum, then ÷ B
    assert noise.numel() > 10_000
    assert abs(float(noise.std()) / expected - 1) < 0.03
    assert abs(float(noise.mean())) < 0.03 * expected


def test_epsilon_matches_the_accountants_own_step_api():
    from opacus.accountants import PRVAccountant, RDPAccountant

    z, q, steps, delta = 1.1, 0.01, 300, 1e-5
    for kind, accountant in (("rdp", RDPAccountant()), ("prv", PRVAccountant())):
        for _ in range(steps):
            accountant.step(noise_multiplier=z, sample_rate=q)
        expected = accountant.get_epsilon(delta=delta)
        assert privacy_spent(z, q, steps, delta, kind) == pytest.approx(expected, rel=1e-9)


def test_epsilon_matches_the_value_published_in_opacus_tests():
    # opacus/tests/accountants_test.py, test_rdp_accountant: z 1.5, q 0.04, 90 epochs of
    # 1/q steps, δ 1e-5 -> ε 7.32911117143 (assertAlmostEqual: 7 decimal places)
    assert privacy_spent(1.5, 0.04, int(90 / 0.04), 1e-5, "rdp") == pytest.approx(
        7.32911117143, abs=5e-8
    )
    assert privacy_spent(0.0, 0.04, 10, 1e-5) is None  # no noise: no finite ε


def test_update_records_epsilon_and_its_inputs_for_fedavg(tmp_path):
    spec = model_spec("convnet-gn", 10, SHAPE, width=4)
    model = build_model(spec, init_seed=0)
    x, y = _batch(4)
    local = LocalTraining(steps=3, lr=0.1, batch_size=2)
    config = CaptureConfig(local=local, dp=DPConfig(1.0, 0.8, 500, 1e-6, rounds=20))
    update = capture_update(model, spec, InputSpec(SHAPE), x.sigmoid(), y, config)
    save_update(update, tmp_path / "u.safetensors")
    entry = load_update(tmp_path / "u.safetensors").defense[0]
    accounting = entry["accounting"]
    assert entry["name"] == "dp-sgd" and entry["local_steps"] == 3
    assert accounting["sample_rate"] == 2 / 500 and accounting["steps"] == 60
    assert accounting["epsilon"] == pytest.approx(privacy_spent(0.8, 2 / 500, 60, 1e-6))
    assert entry["examples_seen"] == 6  # every local step ran DP-SGD


def test_batchnorm_in_train_mode_is_refused_and_groupnorm_variants_have_none():
    spec = model_spec("convnet", 10, SHAPE, width=4)
    x, y = _batch(2)
    config = CaptureConfig(mode="train", dp=DPConfig(1.0, 1.0))
    with pytest.raises(UsageError, match="BatchNorm in train mode.*GroupNorm"):
        capture_update(build_model(spec), spec, InputSpec(SHAPE), x.sigmoid(), y, config)
    eval_mode = CaptureConfig(mode="eval", dp=DPConfig(1.0, 1.0))  # running stats: per example
    capture_update(build_model(spec), spec, InputSpec(SHAPE), x.sigmoid(), y, eval_mode)
    for arch in ("convnet-gn", "cifar-resnet18-gn", "resnet18-gn", "resnet50-gn"):
        model = build_model(model_spec(arch, 10, (3, 32, 32)))
        kinds = {type(m) for m in model.modules()}
        assert nn.GroupNorm in kinds and not any(issubclass(k, nn.BatchNorm2d) for k in kinds)


def test_cli_refuses_batchnorm_and_names_every_bad_setting(tmp_path):
    runner = CliRunner()
    base = ["capture", "--images", "samples/images32", "--labels", "0,1", "--batch-size", "2"]
    out = ["--out", str(tmp_path / "u.safetensors")]
    result = runner.invoke(app, [*base, "--mode", "train", "--dp-clip", "1", *out])
    assert result.exit_code == 2 and "GroupNorm" in result.output
    result = runner.invoke(
        app,
        [*base, "--dp-clip", "-1", "--dp-noise-multiplier", "nan", "--dp-delta", "2",
         "--quantize", "1", "--rounds", "0", *out],
    )  # fmt: skip
    assert result.exit_code == 2
    for option in ("--dp-clip", "--dp-noise-multiplier", "--dp-delta", "--quantize", "--rounds"):
        assert option in result.output
    assert not (tmp_path / "u.safetensors").exists()


def test_epsilon_reaches_inspect_evaluate_and_the_report(tmp_path):
    from gradinvert.io.files import BatchFile, save_batch
    from gradinvert.report.runs import Run, defense_settings, swept_setting

    spec = model_spec("lenet", 5, SHAPE)
    x, y = _batch(2)
    config = CaptureConfig(dp=DPConfig(1.0, 1.0, 100))
    update = capture_update(build_model(spec), spec, InputSpec(SHAPE), x.sigmoid(), y, config)
    save_update(update, tmp_path / "u.safetensors")
    save_batch(BatchFile(x.sigmoid(), y), tmp_path / "t.safetensors")
    runner = CliRunner()
    epsilon = update.defense[0]["accounting"]["epsilon"]
    shown = runner.invoke(app, ["inspect", str(tmp_path / "u.safetensors"), "--json"])
    assert shown.exit_code == 0
    privacy = json.loads(shown.stdout)["privacy"]
    assert privacy[0].startswith(f"ε = {epsilon:.4g} at δ = 1e-05 (opacus")
    scored = runner.invoke(
        app,
        ["evaluate", str(tmp_path / "t.safetensors"), "--truth", str(tmp_path / "t.safetensors"),
         "--update", str(tmp_path / "u.safetensors"), "--lpips", "off"],
    )  # fmt: skip
    assert scored.exit_code == 0 and f"privacy of the attacked update: ε = {epsilon:.4g}" in (
        scored.output
    )
    settings = defense_settings(update.defense)
    assert settings["epsilon"] == epsilon and settings["dp_noise_multiplier"] == 1.0
    runs = [
        Run(str(z), {"summary": {}}, {"dp_noise_multiplier": z, "epsilon": e})
        for z, e in ((1.0, 0.5), (2.0, 0.1))
    ]
    assert swept_setting(runs)[0] == "epsilon"
