"""Label restoration: each method on cases with a known answer, deltas, the CLI and bad input."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from typer.testing import CliRunner

from gradinvert.cli.main import app
from gradinvert.client.capture import CaptureConfig, capture_update
from gradinvert.io.files import BatchFile, LocalTraining, UpdateFile, save_batch, save_update
from gradinvert.labels import find_last_linear, multiset_accuracy, restore_labels
from gradinvert.labels.methods import (
    bias_lower_bound,
    class_mean_softmax,
    ilrg_counts,
    integer_counts,
    llg_counts,
    present_classes,
)
from gradinvert.models import InputSpec, build_model, model_spec, trust_code
from gradinvert.runtime.errors import InvalidInputError, UsageError

TESTS = Path(__file__).parent
SIZE = 16
runner = CliRunner()


@pytest.fixture(autouse=True)
def _test_models_importable(monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))


def make_update(
    arch: str,
    num_classes: int,
    labels: list[int],
    *,
    seed: int = 0,
    local: LocalTraining | None = None,
    images: torch.Tensor | None = None,
    edit=None,
) -> UpdateFile:
    """Capture the update of an untrained (seeded) model on random 16 px images."""
    if images is None:
        generator = torch.Generator().manual_seed(seed)
        images = torch.rand(len(labels), 3, SIZE, SIZE, generator=generator)
    spec = model_spec(arch, num_classes, (3, SIZE, SIZE))
    model = build_model(spec, init_seed=seed)
    if edit is not None:
        edit(model)
    config = CaptureConfig(local=local)
    return capture_update(
        model, spec, InputSpec((3, SIZE, SIZE)), images, torch.tensor(labels), config
    )


def random_labels(num_classes: int, batch: int, seed: int, distinct: bool = False) -> list[int]:
    generator = torch.Generator().manual_seed(100 + seed)
    if distinct:
        return torch.randperm(num_classes, generator=generator)[:batch].tolist()
    return torch.randint(0, num_classes, (batch,), generator=generator).tolist()


# ------------------------------------------------------------------ accuracy and helpers


def test_multiset_accuracy_counts_matches_with_multiplicity():
    assert multiset_accuracy([1, 1, 2], [2, 1, 1]) == 1.0
    assert multiset_accuracy([1, 2, 2], [1, 1, 2]) == pytest.approx(2 / 3)
    assert multiset_accuracy([5, 5, 5, 5], [5, 6]) == 0.5  # surplus predictions earn nothing
    assert multiset_accuracy([], [3]) == 0.0
    with pytest.raises(ValueError):
        multiset_accuracy([1], [])


def test_integer_counts_rounds_and_respects_lower_bounds():
    estimate = torch.tensor([2.9, 0.2, 1.1, -0.3], dtype=torch.float64)
    assert integer_counts(estimate, 4).tolist() == [3, 0, 1, 0]
    lower = torch.tensor([0, 1, 0, 0])
    assert integer_counts(estimate, 4, lower).tolist() == [2, 1, 1, 0]
    # Bounds that cannot hold (they exceed the batch) are ignored.
    assert integer_counts(estimate, 4, torch.tensor([5, 0, 0, 0])).tolist() == [3, 0, 1, 0]


def test_bias_lower_bound_holds_against_directly_computed_gradients():
    torch.manual_seed(0)
    layer = nn.Linear(6, 5)
    features = torch.rand(9, 6) * 3
    labels = torch.tensor([0, 0, 0, 1, 4, 4, 2, 2, 2])
    loss = F.cross_entropy(layer(features), labels)
    (grad_b,) = torch.autograd.grad(loss, [layer.bias])
    bound = bias_lower_bound(grad_b.double(), 9)
    truth = torch.bincount(labels, minlength=5)
    assert (bound <= truth).all() and bound.sum() > 0


# ------------------------------------------------------------------ finding the last layer


class _Wrapped(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(3 * SIZE * SIZE, 7)
        self.after = nn.Identity()
        self.aux = nn.Linear(7, 7)  # computed but not returned

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.after(self.head(x.flatten(1)))
        self.aux(logits)
        return logits


def test_find_last_linear_uses_the_layer_that_produces_the_output():
    assert find_last_linear(build_model(model_spec("convnet", 4, (3, 8, 8))), (3, 8, 8)).module == (
        "fc"
    )
    layer = find_last_linear(_Wrapped(), (3, SIZE, SIZE))
    assert (layer.module, layer.weight, layer.bias, layer.num_classes) == (
        "head",
        "head.weight",
        "head.bias",
        7,
    )
    assert layer.nonnegative_features is False  # raw pixels feed the head
    sequential = nn.Sequential(nn.Flatten(), nn.Linear(3 * 64, 5), nn.ReLU(), nn.Linear(5, 3))
    layer = find_last_linear(sequential, (3, 8, 8))
    assert layer.module == "3" and layer.nonnegative_features is True


def test_find_last_linear_rejects_models_without_linear_output():
    with pytest.raises(InvalidInputError, match="no nn.Linear"):
        find_last_linear(nn.Sequential(nn.Conv2d(3, 4, 1), nn.Flatten()), (3, 4, 4))
    softmax_after = nn.Sequential(nn.Flatten(), nn.Linear(48, 5), nn.Softmax(dim=1))
    with pytest.raises(InvalidInputError, match="no linear layer produces"):
        find_last_linear(softmax_after, (3, 4, 4))


# ------------------------------------------------------------------ methods on known answers


@pytest.mark.parametrize("label", [0, 3, 9])
def test_idlg_restores_a_single_label(label):
    update = make_update("convnet", 10, [label], seed=label)
    result = restore_labels(update)
    assert (result.labels, result.method) == ([label], "idlg")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_yin_restores_distinct_labels(seed):
    labels = random_labels(20, 6, seed, distinct=True)
    result = restore_labels(make_update("convnet", 20, labels, seed=seed), method="yin")
    assert result.labels == sorted(labels) and result.method == "yin"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ilrg_restores_repeated_labels_on_an_untrained_model(seed):
    labels = random_labels(10, 16, seed)
    assert max(Counter(labels).values()) > 1
    result = restore_labels(make_update("convnet", 10, labels, seed=seed))
    assert result.method == "ilrg"
    assert result.labels == sorted(labels)
    assert result.details["counts"] == {str(c): n for c, n in sorted(Counter(labels).items())}


def test_ilrg_is_exact_when_all_features_are_equal():
    # One image repeated: every sample has the same features, iLRG's model holds exactly.
    labels = [0, 0, 0, 0, 0, 3, 3, 7]
    image = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(5))
    update = make_update("lenet", 10, labels, images=image.expand(8, -1, -1, -1).clone())
    result = restore_labels(update, method="ilrg")
    assert result.labels == labels and result.details["integrality_gap"] < 1e-6


@pytest.mark.parametrize("seed", [0, 1])
def test_presence_test_marks_exactly_the_batch_classes(seed):
    labels = random_labels(30, 12, seed)
    update = make_update("convnet", 30, labels, seed=seed)
    grad_w = update.update["fc.weight"].double()
    marked = set(torch.nonzero(present_classes(grad_w)).flatten().tolist())
    assert marked == set(labels)


def _confident_head(model: nn.Module) -> None:
    with torch.no_grad():
        model.fc.weight.mul_(200.0)


def test_auto_switches_to_bias_counts_for_a_confident_model():
    labels = [0, 0, 1, 5, 5, 5, 8, 9]
    update = make_update("convnet", 10, labels, seed=3, edit=_confident_head)
    result = restore_labels(update)
    assert result.method == "bias" and "confident" in result.details["reason"]
    assert result.details["presence_test"] is True
    # The presence test is a certificate: every class in the batch keeps at least one label.
    assert set(labels) <= set(result.labels)
    plain = restore_labels(make_update("convnet", 10, labels, seed=3))
    assert plain.method == "ilrg" and plain.labels == labels


def _zero_last_layer(model: nn.Module) -> None:
    with torch.no_grad():
        model.fc.weight.zero_()
        model.fc.bias.zero_()


def test_bias_method_is_exact_when_the_softmax_is_uniform():
    labels = [1, 1, 1, 4, 4, 8, 9, 9, 9, 9]
    update = make_update("convnet", 12, labels, edit=_zero_last_layer)
    result = restore_labels(update, method="bias")
    assert result.labels == labels and result.method == "bias"


def test_llg_greedy_on_hand_made_gradient():
    # Row sums -3, +1, -1, +3 for a batch of 3: impact m = -(8 / 2) / 3; class 0 gets two.
    grad_w = torch.tensor([[-2.0, -1.0], [0.5, 0.5], [-0.5, -0.5], [1.0, 2.0]], dtype=torch.float64)
    assert llg_counts(grad_w, 3).counts.tolist() == [2, 0, 1, 0]


def test_model_without_bias_uses_llg():
    labels = [3, 3, 3, 7, 7, 12]
    with trust_code("models_for_tests:no_bias_head"):  # the test's own factory
        update = make_update("models_for_tests:no_bias_head", 50, labels, seed=1)
        result = restore_labels(update)
    assert result.method == "llg" and result.labels == labels
    assert "no bias" in result.details["reason"]
    with pytest.raises(UsageError, match="bias"):
        restore_labels(update, method="ilrg")


# ------------------------------------------------------------------ FedAvg deltas


def test_delta_repeated_labels_with_ilrg():
    labels = random_labels(10, 12, 3)
    update = make_update("convnet", 10, labels, seed=3, local=LocalTraining(3, 0.05, 4))
    assert update.kind == "delta"
    result = restore_labels(update)
    assert result.method == "ilrg" and result.labels == sorted(labels)
    assert result.details["delta_scale"] == pytest.approx(0.15)


def test_delta_distinct_labels_with_yin_and_without_local_metadata():
    labels = random_labels(20, 6, 4, distinct=True)
    update = make_update("convnet", 20, labels, seed=4, local=LocalTraining(2, 0.05, 6))
    assert restore_labels(update, method="yin").labels == sorted(labels)
    update.local = None  # the delta's scale is unknown: counts from ∇b are impossible
    with pytest.raises(UsageError, match="scale"):
        restore_labels(update, method="ilrg")
    result = restore_labels(update)
    assert result.method == "llg" and result.labels == sorted(labels)


def _linear_layer_sgd(steps: int, lr: float):
    """Full-batch SGD of one linear layer on features that are equal within each class."""
    torch.manual_seed(0)
    layer = nn.Linear(6, 5).double()
    class_features = torch.rand(5, 6, dtype=torch.float64) * 2
    labels = torch.tensor([0, 0, 0, 2, 4, 4])
    features = class_features[labels]
    start = (layer.weight.detach().clone(), layer.bias.detach().clone())
    summed_softmax = []
    for _ in range(steps):
        logits = layer(features)
        summed_softmax.append(logits.softmax(dim=1).sum(dim=0).detach())
        grads = torch.autograd.grad(F.cross_entropy(logits, labels), [layer.weight, layer.bias])
        with torch.no_grad():
            layer.weight -= lr * grads[0]
            layer.bias -= lr * grads[1]
    delta = (layer.weight.detach() - start[0], layer.bias.detach() - start[1])
    return class_features, labels, start, delta, torch.stack(summed_softmax).mean(dim=0)


def test_simulated_local_trajectory_matches_sgd_on_a_linear_layer():
    class_features, labels, (weight, bias), _, expected = _linear_layer_sgd(3, 0.5)
    counts = torch.bincount(labels, minlength=5).double()
    summed, _ = class_mean_softmax(counts, class_features, weight, bias, 6.0, (3, 0.5))
    torch.testing.assert_close(summed, expected)


def test_ilrg_on_a_linear_layer_delta_is_exact():
    _, labels, (weight, bias), (delta_w, delta_b), _ = _linear_layer_sgd(3, 0.5)
    scale = 3 * 0.5
    result = ilrg_counts(-delta_w / scale, -delta_b / scale, weight, bias, 6, trajectory=(3, 0.5))
    assert result.counts.tolist() == torch.bincount(labels, minlength=5).tolist()
    assert result.details["integrality_gap"] < 1e-3


# ------------------------------------------------------------------ library errors


def test_library_rejects_impossible_requests():
    update = make_update("convnet", 10, [1, 2, 3, 4])
    with pytest.raises(UsageError, match="unknown label method"):
        restore_labels(update, method="magic")
    with pytest.raises(UsageError, match="one label"):
        restore_labels(update, method="idlg")
    with pytest.raises(UsageError, match="exceeds"):
        restore_labels(update, method="yin", batch_size=11)
    update.batch_size = None
    with pytest.raises(UsageError, match="batch size is unknown"):
        restore_labels(update)
    assert restore_labels(update, batch_size=4).labels == [1, 2, 3, 4]


# ------------------------------------------------------------------ CLI


def _files(tmp: Path, labels: list[int], arch: str = "convnet", classes: int = 10, **kw):
    update = make_update(arch, classes, labels, **kw)
    save_update(update, tmp / "u.safetensors")
    images = torch.zeros(len(labels), 3, SIZE, SIZE)
    save_batch(BatchFile(images, torch.tensor(labels)), tmp / "t.safetensors")
    return tmp / "u.safetensors", tmp / "t.safetensors"


def test_cli_json_on_stdout_with_truth(tmp_path):
    labels = [2, 2, 5, 5, 5, 9]
    update, truth = _files(tmp_path, labels, seed=2)
    result = runner.invoke(app, ["labels", str(update), "--truth", str(truth)])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["labels"] == labels and document["batch_size"] == 6
    assert document["method"] == "ilrg" and document["accuracy"] == 1.0
    assert document["truth"] == labels
    assert "auto chose method ilrg" in result.stderr and "100.0%" in result.stderr


def test_cli_method_and_out_file(tmp_path):
    labels = [0, 4, 6, 7]
    update, truth = _files(tmp_path, labels, classes=20, seed=6)
    out = tmp_path / "labels.json"
    result = runner.invoke(app, ["labels", str(update), "--method", "yin", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    document = json.loads(out.read_text())
    assert document["labels"] == labels and document["method"] == "yin"
    assert "accuracy" not in document
    # Partial recovery is scored as a multiset: yin cannot repeat, ilrg can.
    labels = [3, 3, 3, 8]
    update, truth = _files(tmp_path, labels, seed=7)
    args = ["labels", str(update), "--method", "yin", "--truth", str(truth)]
    document = json.loads(runner.invoke(app, args).stdout)
    assert document["accuracy"] == 0.5 and document["truth"] == labels


def test_cli_batch_size_unknown_then_given(tmp_path):
    update = make_update("convnet", 10, [1, 1, 6])
    update.batch_size = None
    save_update(update, tmp_path / "u.safetensors")
    out = tmp_path / "labels.json"
    result = runner.invoke(app, ["labels", str(tmp_path / "u.safetensors"), "--out", str(out)])
    assert result.exit_code == 2 and "--batch-size" in result.stderr
    assert not out.exists()
    args = ["labels", str(tmp_path / "u.safetensors"), "--batch-size", "3", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["labels"] == [1, 1, 6]


@pytest.mark.parametrize(
    ("case", "code", "message"),
    [
        ("missing", 66, "no such file"),
        ("garbage", 65, "not a readable safetensors file"),
        ("batch_file", 65, "expected a update file"),
        ("no_linear", 65, "no nn.Linear"),
        ("bad_method", 2, "--method: Input should be 'auto'"),
        ("yin_too_big", 2, "exceeds"),
        ("bad_truth", 65, "not a readable safetensors file"),
    ],
)
def test_cli_bad_input(tmp_path, case, code, message):
    update, truth = _files(tmp_path, [1, 2, 3, 3], classes=4)
    extra: list[str] = []
    if case == "missing":
        update = tmp_path / "absent.safetensors"
    elif case == "garbage":
        update.write_bytes(b"not a safetensors file")
    elif case == "batch_file":
        update = truth
    elif case == "no_linear":
        with trust_code("models_for_tests:conv_head"):
            update, truth = _files(tmp_path, [1, 2], arch="models_for_tests:conv_head")
        extra = ["--model", "models_for_tests:conv_head"]  # the CLI imports it when named
    elif case == "bad_method":
        extra = ["--method", "nope"]
    elif case == "yin_too_big":
        extra = ["--method", "yin", "--batch-size", "5"]
    elif case == "bad_truth":
        truth.write_bytes(b"\x00" * 10)
    out = tmp_path / "labels.json"
    args = ["labels", str(update), "--out", str(out), *extra]
    if case == "bad_truth":
        args += ["--truth", str(truth)]
    result = runner.invoke(app, args)
    assert result.exit_code == code, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert not out.exists()
    assert not list(tmp_path.glob(".labels.json*"))


def test_cli_help_lists_methods():
    result = runner.invoke(app, ["labels", "--help"])
    assert result.exit_code == 0
    for method in ("idlg", "yin", "ilrg", "llg", "auto"):
        assert method in result.stdout
