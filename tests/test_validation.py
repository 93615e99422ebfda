"""The update-file schema, tensor checks, model footprints and memory bounds, one by one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hostile_corpus import read_raw, write_raw
from invert_support import make_update, one_thread  # noqa: F401 (fixture)
from typer.testing import CliRunner

from gradinvert.cli.main import app
from gradinvert.io.files import LocalTraining, load_update, read_update_shapes, save_update
from gradinvert.labels import methods
from gradinvert.models.footprint import update_footprint
from gradinvert.runtime.errors import InvalidInputError, UnavailableError, UsageError
from gradinvert.runtime.memory import estimate_invert, estimate_labels
from gradinvert.runtime.resources import (
    Estimate,
    check_memory,
    default_bound,
    machine_memory,
    parse_memory,
)

runner = CliRunner()


@pytest.fixture(scope="module")
def valid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("valid") / "u.safetensors"
    save_update(make_update(count=2, labels=[1, 3])[0], path)
    return path


def _with(valid: Path, tmp_path: Path, tensors=None, **metadata: str) -> Path:  # noqa: ANN001
    raw, meta = read_raw(valid)
    path = tmp_path / "changed.safetensors"
    path.write_bytes(write_raw({**raw, **(tensors or {})}, {**meta, **metadata}))
    return path


def test_every_metadata_problem_is_reported_at_once(valid: Path, tmp_path: Path) -> None:
    model = {"arch": "convnet", "num_classes": 0, "kwargs": {"width": 4}}
    shape = {"shape": [2, 8, 0], "mean": [0.5] * 3, "std": [1.0, 0.0, 1.0]}
    path = _with(valid, tmp_path, model=json.dumps(model), input=json.dumps(shape),
                 mode="test", batch_size="0", defense='[{"name": "shuffle"}]')  # fmt: skip
    with pytest.raises(InvalidInputError) as caught:
        load_update(path)
    message = caught.value.message
    for part in ("model.num_classes", "input.shape.0", "input.shape.2", "input.std.1", "mode",
                 "batch_size", "defense.0"):  # fmt: skip
        assert f"{part}:" in message, part
    assert "\n" not in message


def test_json_values_must_be_finite_and_exactly_typed(valid: Path, tmp_path: Path) -> None:
    bad_mean = '{"shape": [3, 8, 8], "mean": [NaN, 0, 0], "std": [1, 1, 1]}'
    with pytest.raises(InvalidInputError, match=r"input\.mean\.0: .*finite"):
        load_update(_with(valid, tmp_path, input=bad_mean))
    classes = '{"arch": "convnet", "num_classes": true, "kwargs": {"width": 4}}'
    with pytest.raises(InvalidInputError, match="model.num_classes: .*valid integer"):
        load_update(_with(valid, tmp_path, model=classes))
    local = '{"steps": 1000000, "lr": 0.1, "batch_size": 1}'
    with pytest.raises(InvalidInputError, match="local.steps: .*10000"):
        load_update(_with(valid, tmp_path, kind="delta", local=local))


def test_float64_tensors_are_read_as_float32_and_non_finite_ones_refused(
    valid: Path, tmp_path: Path
) -> None:
    raw, _ = read_raw(valid)
    doubled = {k: v.double() for k, v in raw.items() if k.startswith(("grad.", "param."))}
    update = load_update(_with(valid, tmp_path, doubled))
    assert all(t.dtype == torch.float32 for t in update.update.values())
    torch.testing.assert_close(update.update["fc.weight"], raw["grad.fc.weight"])
    broken = raw["grad.fc.bias"].clone()
    broken[0] = float("nan")
    with pytest.raises(InvalidInputError, match="grad.fc.bias holds 1 non-finite"):
        load_update(_with(valid, tmp_path, {"grad.fc.bias": broken}))
    with pytest.raises(InvalidInputError, match="grad.fc.bias has dtype torch.int64"):
        load_update(_with(valid, tmp_path, {"grad.fc.bias": broken.long()}))


def test_model_is_checked_on_the_meta_device_before_it_is_built(
    valid: Path, tmp_path: Path
) -> None:
    update = load_update(valid)
    footprint = update_footprint(update)
    assert footprint.parameters == sum(t.numel() for t in update.params.values())
    assert footprint.activations and footprint.activations > 3 * 8 * 8
    # a 100000-wide convnet would need a terabyte: refused from shapes alone, in no time
    wide = '{"arch": "convnet", "num_classes": 4, "kwargs": {"width": 100000}}'
    with pytest.raises(InvalidInputError, match="do not fit model 'convnet'.*wrong shape"):
        update_footprint(load_update(_with(valid, tmp_path, model=wide)))
    huge = '{"arch": "convnet", "num_classes": 4, "kwargs": {"width": 1000000000}}'
    with pytest.raises(InvalidInputError, match="cannot be built.*overflow"):
        update_footprint(load_update(_with(valid, tmp_path, model=huge)))
    unknown = '{"arch": "no-such-net", "num_classes": 4}'
    with pytest.raises(InvalidInputError, match="cannot be built"):
        update_footprint(load_update(_with(valid, tmp_path, model=unknown)))


def test_memory_estimates_follow_batch_seeds_and_local_steps() -> None:
    update, _, _ = make_update(count=2)
    footprint = update_footprint(update)
    one = estimate_invert(update, footprint, 2, 1).bytes
    seed = 4 * (footprint.parameters * 1.25 + 2 * footprint.activations * 8 + 2 * 192 * 10)
    assert estimate_invert(update, footprint, 2, 4).bytes - one == pytest.approx(3 * seed, abs=4)
    big = estimate_invert(update, footprint, 2000, 1).bytes
    per_sample = footprint.activations * 4 * 8  # eval mode: 8 float32 copies per activation
    assert big - one == pytest.approx(1998 * (per_sample + 3 * 8 * 8 * 4 * 10), rel=1e-6)
    delta, _, _ = make_update(count=2, local=LocalTraining(3, 0.1, 1))
    steps = estimate_invert(delta, footprint, 2, 1)
    assert "3 local steps" in steps.basis
    assert estimate_labels(update, footprint, 10**6).bytes > 10**8


def test_header_estimates_equal_full_reads_and_bound_every_reader(
    valid: Path, tmp_path: Path
) -> None:
    full, shapes = load_update(valid), read_update_shapes(valid)
    assert all(t.device.type == "meta" for t in shapes.update.values())
    assert estimate_invert(shapes, update_footprint(shapes), 2, 3) == estimate_invert(
        full, update_footprint(full), 2, 3
    )
    out = tmp_path / "g.safetensors"
    commands = {
        "learn-prior": ["learn-prior", valid, "--out", out],
        "train-prior": ["train-prior", "--images", "samples/images32", "--out", out],
        "labels": ["labels", valid, "--out", out],
        "invert": ["invert", valid, "--attack", "ig", "--out", out],
    }
    for what, command in commands.items():
        result = runner.invoke(app, [str(a) for a in [*command, "--max-memory", "1KB"]])
        assert result.exit_code == 69, result.output
        assert result.stderr.startswith(f"error: {what} would need about ")
        assert not out.exists()


def test_memory_bound_messages_and_parsing() -> None:
    assert parse_memory("8GB") == 8 * 10**9 and parse_memory("512MiB") == 512 * 2**20
    assert parse_memory("1.5t") == 15 * 10**11 and parse_memory("none") is None
    for bad in ("lots", "-1GB", "0"):
        with pytest.raises(UsageError):
            parse_memory(bad)
    bound, why = default_bound("cpu")
    assert bound == int(0.8 * machine_memory()) and "80% of this machine's" in why and "RAM" in why
    estimate = Estimate("invert", 3 * 10**12, "batch 9")
    with pytest.raises(UnavailableError) as caught:
        check_memory(estimate, "8GB")
    assert caught.value.message == (
        "invert would need about 3.0 TB of memory (batch 9), more than the bound of 8.0 GB "
        "(--max-memory); use a smaller batch or fewer seeds, or raise the bound with "
        "--max-memory 3.8TB"
    )
    check_memory(estimate, "4TB")
    check_memory(estimate, "none")


def _one_by_one(keys: torch.Tensor, picks: int) -> torch.Tensor:
    counts, keys = torch.zeros_like(keys, dtype=torch.long), keys.clone()
    for _ in range(picks):
        j = int(torch.argmax(keys))
        counts[j] += 1
        keys[j] -= 1
    return counts


@pytest.mark.parametrize("classes", [2, 10, 300])
def test_bulk_label_counts_equal_the_one_by_one_rule(classes: int) -> None:
    estimate = torch.rand(classes, generator=torch.Generator().manual_seed(classes)) * 4000
    picks = methods.BULK_FROM + 3000
    counts = methods.integer_counts(estimate.double(), picks)
    assert torch.equal(counts, _one_by_one(estimate.double(), picks))
    huge = methods.integer_counts(estimate.double(), 10**12)  # instant, not 10¹² steps
    assert int(huge.sum()) == 10**12


def test_models_are_rebuilt_only_after_the_meta_check(valid: Path, tmp_path: Path) -> None:
    from gradinvert.models.restore import model_from_update

    wide = '{"arch": "convnet", "num_classes": 4, "kwargs": {"width": 100000}}'
    update = load_update(_with(valid, tmp_path, model=wide))  # a terabyte if it were built
    with pytest.raises(InvalidInputError, match="do not fit model 'convnet'"):
        model_from_update(update)
    assert model_from_update(load_update(valid)).fc.out_features == 4
