"""Secure aggregation: the aggregate against the union batch and independent captures, its
simulation on the attack side, and every mismatch named."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from gradinvert.cli.main import app
from gradinvert.client.aggregate import aggregate_updates
from gradinvert.client.capture import CaptureConfig, capture_clients, capture_update
from gradinvert.invert.simulate import Simulator, build_victim
from gradinvert.io.files import BatchFile, LocalTraining, load_update, save_batch, save_update
from gradinvert.models import InputSpec, build_model, model_spec
from gradinvert.runtime.errors import InvalidInputError

SHAPE = (3, 8, 8)
INPUT = InputSpec(SHAPE)


def _images(count: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(count, *SHAPE, generator=generator), torch.arange(count) % 5


def _model(arch: str = "convnet", init_seed: int = 0):
    spec = model_spec(arch, 5, SHAPE, width=4)
    return spec, build_model(spec, init_seed=init_seed)


def test_aggregate_of_gradients_is_the_gradient_of_the_union_batch():
    spec, model = _model()
    x, y = _images(5)
    parts = [slice(0, 2), slice(2, 5)]  # unequal batches: weights 2/5 and 3/5
    members = [capture_update(model, spec, INPUT, x[p], y[p], CaptureConfig()) for p in parts]
    aggregate = aggregate_updates(members, ["a", "b"])
    union = capture_update(model, spec, INPUT, x, y, CaptureConfig())
    reference = build_model(spec, init_seed=0).eval()
    F.cross_entropy(reference(INPUT.normalize(x)), y).backward()
    for name, param in reference.named_parameters():
        torch.testing.assert_close(aggregate.update[name], union.update[name], rtol=1e-5, atol=1e-8)
        torch.testing.assert_close(aggregate.update[name], param.grad, rtol=1e-5, atol=1e-8)
    assert aggregate.batch_size == 5
    entry = aggregate.defense[-1]
    assert entry["name"] == "secure-aggregation" and [
        m["batch_size"] for m in entry["members"]
    ] == [2, 3]


def test_aggregated_deltas_are_the_mean_of_independent_captures(tmp_path):
    spec, model = _model("convnet-gn")
    x, y = _images(6)
    local = LocalTraining(steps=2, lr=0.5, batch_size=1, shuffle=True)
    config = CaptureConfig(local=local, seed=7)
    aggregate, _ = capture_clients(model, spec, INPUT, x, y, config, clients=3)
    independent = [
        capture_update(model, spec, INPUT, x[2 * i : 2 * i + 2], y[2 * i : 2 * i + 2],
                       dataclasses.replace(config, seed=7 + i))
        for i in range(3)
    ]  # fmt: skip
    for name, value in aggregate.update.items():
        mean = sum(u.update[name].double() for u in independent) / 3
        torch.testing.assert_close(value.double(), mean, rtol=1e-6, atol=1e-9)
    save_update(aggregate, tmp_path / "agg.safetensors")
    again = load_update(tmp_path / "agg.safetensors")
    assert [m["local"]["seed"] for m in again.defense[-1]["members"]] == [7, 8, 9]


@pytest.mark.parametrize(
    ("mode", "local"),
    [("train", None), ("eval", LocalTraining(steps=2, lr=0.3, batch_size=1, shuffle=True))],
)
def test_simulator_runs_every_member_on_its_slice(mode, local):
    """The true images of each member give distance 0; the union batch as one client does not
    (BatchNorm batch statistics per member, or each member's own minibatch schedule)."""
    spec, model = _model()
    x, y = _images(4)
    aggregate, members = capture_clients(
        model, spec, INPUT, x, y, CaptureConfig(mode=mode, local=local, seed=3), clients=2
    )
    victim = build_victim(aggregate, "cpu")
    names = victim.trainable
    simulator = Simulator(victim, aggregate, y, names, "sql2", False, "cpu", 4)
    distance, _ = simulator.candidate(INPUT.normalize(x))
    reference = sum(float(v.double().square().sum()) for v in aggregate.update.values())
    assert float(distance) < 1e-9 * max(reference, 1e-12) + 1e-12
    as_one = dataclasses.replace(aggregate, defense=[], batch_size=4)
    if local is not None:
        as_one = dataclasses.replace(as_one, local=dataclasses.replace(local, batch_size=1, seed=3))
    naive = Simulator(build_victim(as_one, "cpu"), as_one, y, names, "sql2", False, "cpu", 4)
    assert float(naive.candidate(INPUT.normalize(x))[0]) > 1e-6 * reference


def test_mismatches_are_all_named_library_and_cli(tmp_path):
    spec, model = _model()
    x, y = _images(4)
    first = capture_update(model, spec, INPUT, x[:2], y[:2], CaptureConfig())
    other_round = capture_update(_model(init_seed=1)[1], spec, INPUT, x[2:], y[2:], CaptureConfig())
    delta = capture_update(
        model, spec, INPUT, x[2:], y[2:], CaptureConfig(local=LocalTraining(1, 0.1, 2))
    )
    gn_spec, gn_model = _model("convnet-gn")
    other_model = capture_update(gn_model, gn_spec, INPUT, x[2:], y[2:], CaptureConfig())
    with pytest.raises(InvalidInputError) as caught:
        aggregate_updates([first, other_round, delta, other_model], ["a", "b", "c", "d"])
    message = caught.value.message
    for expected in ("b: another global model state", "c: kind delta", "d: model convnet-gn"):
        assert expected in message

    paths = []
    for name, update in (("a", first), ("b", other_round), ("c", delta)):
        save_update(update, tmp_path / f"{name}.safetensors")
        paths.append(str(tmp_path / f"{name}.safetensors"))
    out = tmp_path / "agg.safetensors"
    result = CliRunner().invoke(app, ["aggregate", *paths, "--out", str(out)])
    assert result.exit_code == 65, result.output
    assert "b.safetensors: another global model state" in result.output
    assert "c.safetensors: kind delta" in result.output
    assert not out.exists()
    result = CliRunner().invoke(app, ["aggregate", paths[0], "--out", str(out)])
    assert result.exit_code == 2 and "2 or more" in result.output


def test_cli_aggregate_truth_union_and_evaluate_several_truths(tmp_path):
    spec, model = _model()
    x, y = _images(4)
    runner = CliRunner()
    paths, truths = [], []
    for i in range(2):
        part = slice(2 * i, 2 * i + 2)
        update = capture_update(model, spec, INPUT, x[part], y[part], CaptureConfig(seed=i))
        save_update(update, tmp_path / f"c{i}.safetensors")
        save_batch(BatchFile(x[part], y[part]), tmp_path / f"t{i}.safetensors")
        paths.append(str(tmp_path / f"c{i}.safetensors"))
        truths += ["--truth", str(tmp_path / f"t{i}.safetensors")]
    union = tmp_path / "tu.safetensors"
    agg = tmp_path / "agg.safetensors"
    result = runner.invoke(
        app, ["aggregate", *paths, "--out", str(agg), *truths, "--truth-out", str(union)]
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["inspect", str(agg), "--json"])
    assert '"clients": 2' in result.stdout
    # the union truth scored against itself, and as several --truth files
    for args in (["--truth", str(union)], truths):
        result = runner.invoke(app, ["evaluate", str(union), *args, "--lpips", "off"])
        assert result.exit_code == 0, result.output
        assert "100.00" in result.output  # identical images: PSNR at its cap
