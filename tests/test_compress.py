"""Compression (quantization, sign) and the schema bounds of every new defense entry."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from gradinvert.client.capture import CaptureConfig, capture_update
from gradinvert.client.compress import quantize_stochastic, sign_compress
from gradinvert.client.defenses import DefenseConfig
from gradinvert.client.dpsgd import DPConfig
from gradinvert.io.files import load_update, save_update
from gradinvert.models import InputSpec, build_model, model_spec
from gradinvert.runtime.errors import InvalidInputError

SHAPE = (3, 8, 8)


def test_quantization_is_on_the_grid_unbiased_and_seeded():
    value = torch.tensor([0.9, -0.33, 0.05, 0.0, -1.0])
    bits, levels = 3, 3  # 1 sign bit, 2^(3-1) - 1 = 3 magnitude levels of max |v| = 1
    draws = torch.stack(
        [
            quantize_stochastic({"v": value}, bits, torch.Generator().manual_seed(s))["v"]
            for s in range(4000)
        ]
    )
    assert torch.allclose(draws * levels, (draws * levels).round(), atol=1e-6)  # on the grid
    assert torch.all(draws[:, 3] == 0) and torch.all(draws[:, 4] == -1)  # 0 and ±max exact
    # unbiased: the mean of 4000 draws within 4 standard errors (each draw's spread ≤ 1/3)
    assert torch.allclose(draws.mean(0), value, atol=4 * (1 / 3) / 4000**0.5)
    again = quantize_stochastic({"v": value}, bits, torch.Generator().manual_seed(7))["v"]
    torch.testing.assert_close(again, draws[7], rtol=0, atol=0)


def test_sign_and_the_recorded_order():
    value = torch.tensor([[0.2, -3.0], [0.0, 1e-9]])
    torch.testing.assert_close(sign_compress({"v": value})["v"], torch.sign(value))
    spec = model_spec("lenet", 4, SHAPE)
    x = torch.rand(2, *SHAPE)
    config = CaptureConfig(
        dp=DPConfig(1.0, 0.5), defense=DefenseConfig(prune=0.5, noise=0.01, quantize=8)
    )
    update = capture_update(
        build_model(spec), spec, InputSpec(SHAPE), x, torch.tensor([0, 1]), config
    )
    assert [e["name"] for e in update.defense] == ["dp-sgd", "prune", "noise", "quantize"]


def _hostile(tmp_path, defense):
    spec = model_spec("lenet", 4, SHAPE)
    update = capture_update(
        build_model(spec), spec, InputSpec(SHAPE), torch.rand(2, *SHAPE), torch.tensor([0, 1]),
        CaptureConfig(),
    )  # fmt: skip
    path = tmp_path / "u.safetensors"
    save_update(update, path)
    tensors = load_file(str(path))
    with open(path, "rb") as handle:
        length = int.from_bytes(handle.read(8), "little")
        metadata = json.loads(handle.read(length))["__metadata__"]
    metadata["defense"] = json.dumps(defense)
    save_file(tensors, str(path), metadata=metadata)
    return path


def test_schema_bounds_every_new_entry_and_names_every_problem(tmp_path):
    defense = [
        {"name": "dp-sgd", "clip": -1.0, "noise_multiplier": 1e9, "per_step_batch": 0,
         "accounting": {"accountant": "gdp", "delta": 2.0, "rounds": 1, "steps": 1}},
        {"name": "quantize", "bits": 40},
        {"name": "secure-aggregation", "clients": 3, "members": [{"batch_size": 2}]},
    ]  # fmt: skip
    with pytest.raises(InvalidInputError) as caught:
        load_update(_hostile(tmp_path, defense))
    message = caught.value.message
    for part in ("clip", "noise_multiplier", "per_step_batch", "accountant", "delta", "bits"):
        assert part in message, message
    with pytest.raises(InvalidInputError, match="1 members listed for 3 clients"):
        load_update(_hostile(tmp_path, defense[2:]))
    members = [{"batch_size": 1}, {"batch_size": 5}]
    entry = {"name": "secure-aggregation", "clients": 2, "members": members}
    with pytest.raises(InvalidInputError, match="sum to 6, batch_size is 2"):
        load_update(_hostile(tmp_path, [entry]))
