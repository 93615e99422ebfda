"""`learn-prior` (GIML): Reptile step, seeded stream, updates only, resume, CLI errors; the
``penalty`` hook and the shared-copy space; `capture --start` and labels maps."""

from __future__ import annotations

import hashlib
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from invert_support import make_update, one_thread  # noqa: F401 (fixture)
from models_for_tests import TinyGenerator
from safetensors import safe_open
from typer.testing import CliRunner

from gradinvert.cli.main import app
from gradinvert.generators import load_generator, load_generator_file
from gradinvert.invert.engine import Engine
from gradinvert.invert.spaces import LatentSpace, SharedWeightSpace
from gradinvert.io.files import LocalTraining, load_batch, save_update
from gradinvert.models import trust_code
from gradinvert.priors.learn import (
    LearnPriorSettings,
    MetaLearner,
    learn_prior,
    reptile_step,
    task_order,
)
from gradinvert.runtime.checkpoint import InterruptedRun

runner = CliRunner()
TINY = "models_for_tests:tiny_generator"
CPU = torch.device("cpu")
FAST = LearnPriorSettings(generator=TINY, tasks=3, latent_iterations=3, iterations=3, restarts=2)


def invoke(*args: object):  # noqa: ANN201
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(autouse=True)
def _trust_tiny() -> Iterator[None]:
    """The library calls here name the tests' own generator factory (the CLI trusts the
    --generator it is given by itself)."""
    with trust_code(TINY):
        yield


@pytest.fixture
def stream(tmp_path: Path) -> Path:
    """A folder holding nothing but three 8 px update files (different model weights; the
    last one a FedAvg delta of two local steps)."""
    folder = tmp_path / "stream"
    folder.mkdir()
    for i in range(3):
        local = LocalTraining(2, 0.1, 1) if i == 2 else None
        update, _, _ = make_update(count=2, seed=i, labels=[i % 4, (i + 2) % 4], local=local)
        save_update(update, folder / f"u{i}.safetensors")
    return folder


def _cli(folder: Path, out: Path, *extra: object) -> list[object]:
    return ["learn-prior", folder / "u*.safetensors", "--generator", TINY, "--tasks", 3,
            "--latent-iterations", 3, "--iterations", 3, "--restarts", 2, "--out", out,
            "--device", "cpu", "--no-progress", *extra]  # fmt: skip


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open API)


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_reptile_step_is_adam_on_the_squared_distance_by_hand() -> None:
    module = TinyGenerator()
    theta = {n: p.detach().double().clone() for n, p in module.named_parameters()}
    rng = torch.Generator().manual_seed(0)
    targets = [
        {n: (t + torch.randn(t.shape, generator=rng, dtype=torch.float64)).float()
         for n, t in theta.items()}
        for _ in range(2)
    ]  # fmt: skip
    optimizer = torch.optim.Adam(list(module.parameters()), lr=1e-2)
    lr, (b1, b2), eps = 1e-2, (0.9, 0.999), 1e-8
    m = {n: torch.zeros_like(t) for n, t in theta.items()}
    v = {n: torch.zeros_like(t) for n, t in theta.items()}
    for step, target in enumerate(targets, start=1):
        expected_distance = (
            sum(float((theta[n] - target[n].double()).square().sum()) for n in theta) ** 0.5
        )
        distance = reptile_step(module, target, optimizer)
        assert distance == pytest.approx(expected_distance, rel=1e-5)
        for n in theta:  # meta-gradient 2(θ − θ′), then Adam by hand
            g = 2.0 * (theta[n] - target[n].double())
            m[n] = b1 * m[n] + (1 - b1) * g
            v[n] = b2 * v[n] + (1 - b2) * g * g
            m_hat, v_hat = m[n] / (1 - b1**step), v[n] / (1 - b2**step)
            theta[n] = theta[n] - lr * m_hat / (v_hat.sqrt() + eps)
        for n, p in module.named_parameters():
            torch.testing.assert_close(p.detach().double(), theta[n], rtol=0, atol=1e-6)
            assert p.grad is None
    # the first step moves every parameter by lr toward θ′ (Adam's first step is lr·sign)
    module = TinyGenerator()
    before = {n: p.detach().clone() for n, p in module.named_parameters()}
    reptile_step(module, targets[0], torch.optim.Adam(list(module.parameters()), lr=1e-2))
    for n, p in module.named_parameters():
        moved = p.detach() - before[n]
        toward = (targets[0][n] - before[n]).sign()
        torch.testing.assert_close(moved, 1e-2 * toward, rtol=0, atol=1e-6)


def test_task_order_is_seeded_epochs_of_permutations() -> None:
    order = task_order(5, 12, seed=3)
    assert order == task_order(5, 12, seed=3)
    assert order != task_order(5, 12, seed=4)
    assert sorted(order[:5]) == sorted(order[5:10]) == list(range(5))
    assert order[5:10] != order[:5]
    assert task_order(5, 7, seed=3) == order[:7]  # more tasks extend, never reorder


def test_penalty_hook_and_the_shared_copy_space() -> None:
    update, _, _ = make_update(count=2)
    generator = load_generator(TINY, (3, 8, 8))
    shape = (2, 3, 8, 8)
    plain = LatentSpace(shape, update.input, CPU, generator)
    penalised = LatentSpace(shape, update.input, CPU, generator, z_norm=1e-3)
    z = plain.fresh(1, torch.Generator().manual_seed(0))
    one = {"z": z["z"][0]}
    assert plain.penalty(one) is None
    assert float(penalised.penalty(one)) == pytest.approx(1e-3 * float(z["z"][0].norm()))
    shared = SharedWeightSpace(shape, update.input, CPU, generator, z["z"])
    params = shared.fresh(1, torch.Generator())
    assert all(p.shape[0] == 1 for p in params.values())
    assert params.keys() == dict(generator.module.named_parameters()).keys()
    images = shared.all_images(params)  # K×N×C×H×W, each seed = G(z) with G's own weights
    expected = update.input.normalize((generator.module(z["z"][0]) + 1) / 2)
    torch.testing.assert_close(images[0], expected)
    # the penalty reaches the loss: the engine's total grows by exactly z_norm·||z||
    from gradinvert.config import preset
    from gradinvert.invert.attack import _prepare, resolve_labels

    config = preset("gias", seeds=1, iterations=2, latent_iterations=2)
    choice = resolve_labels(update, [0, 1], config)
    _, simulator, _ = _prepare(update, choice, config, CPU, 2)
    totals = []
    for space in (plain, penalised):
        engine = Engine(simulator, config, shape, update.input, 4, False, None, CPU, space=space)
        totals.append(engine._seed_loss({"z": z["z"][0]}, {}, None, None)[0])
    assert float(totals[1] - totals[0]) == pytest.approx(float(penalised.penalty(one)), rel=1e-4)


def test_cli_learns_from_update_files_alone(
    stream: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (stream / "u1.labels.json").write_text(json.dumps({"labels": [1, 3]}))

    def no_images(*args: object, **kwargs: object) -> None:
        raise AssertionError("learn-prior opened an image or a batch file")

    monkeypatch.setattr("PIL.Image.open", no_images)
    monkeypatch.setattr("gradinvert.io.files.load_batch", no_images)
    monkeypatch.chdir(stream)
    out, samples = tmp_path / "G.safetensors", tmp_path / "g.png"
    result = invoke(*_cli(Path("."), out, "--samples", samples, "--samples-every", 2))
    assert result.exit_code == 0, result.output
    assert "task 3/3" in result.output and samples.exists()
    stored = load_generator_file(out)
    training = stored.training
    assert training["method"] == "learn-prior" and training["tasks"] == 3
    files = {f["name"]: f["sha256"] for f in training["update_files"]}
    assert files == {
        f"u{i}.safetensors": hashlib.sha256((stream / f"u{i}.safetensors").read_bytes()).hexdigest()
        for i in range(3)
    }
    assert training["meta_gradient"].startswith("2(θ − θ′)")
    assert sorted(training["labels"]) == ["given", "restored"]
    assert len(training["task_distances"]) == 3
    names = sorted(files)
    assert training["order"] == [names[i] for i in task_order(3, 3, seed=0)]
    start = load_generator(TINY, (3, 8, 8)).module.state_dict()
    assert not all(torch.equal(stored.state[k], start[k]) for k in start if "weight" in k)
    # BN running statistics are not learned (eval mode)
    assert torch.equal(stored.state["main.1.running_mean"], start["main.1.running_mean"])


def test_resume_equals_an_uninterrupted_run(stream: Path, tmp_path: Path) -> None:
    updates = [stream / "u*.safetensors"]
    straight = learn_prior(updates, FAST)
    ckpt = tmp_path / "run.ckpt"

    def stop_after_two(learner: MetaLearner, info: object) -> None:
        if learner.done == 2:
            learner.request_stop()

    with pytest.raises(InterruptedRun, match="--resume"):
        learn_prior(updates, FAST, checkpoint=ckpt, on_task=stop_after_two)
    assert torch.load(ckpt, weights_only=True)["done"] == 2
    resumed = learn_prior(updates, FAST, checkpoint=ckpt, resume=True)
    assert _same(resumed.module.state_dict(), straight.module.state_dict())
    assert resumed.history == straight.history
    # two tasks, then continued to three, is the same run too
    short = tmp_path / "short.ckpt"
    two = FAST.model_copy(update={"tasks": 2})
    learn_prior(updates, two, checkpoint=short)
    more = learn_prior(updates, FAST, checkpoint=short, resume=True)
    assert _same(more.module.state_dict(), straight.module.state_dict())


def test_cli_ctrl_c_inside_a_task_saves_and_resume_matches(
    stream: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    straight = tmp_path / "straight.safetensors"
    assert invoke(*_cli(stream, straight)).exit_code == 0
    original, calls = Engine.step, [0]

    def step_then_sigint(self: Engine) -> None:
        original(self)
        calls[0] += 1
        if calls[0] == 6 + 2:  # the second task's latent search (3 + 3 iterations per task)
            os.kill(os.getpid(), signal.SIGINT)

    out, ckpt = tmp_path / "G.safetensors", tmp_path / "run.ckpt"
    args = _cli(stream, out, "--checkpoint", ckpt)
    with monkeypatch.context() as patch:
        patch.setattr(Engine, "step", step_then_sigint)
        result = invoke(*args)
    assert result.exit_code == 130, result.output
    assert "after task 1 of 3" in result.output and not out.exists()
    result = invoke(*args, "--resume")
    assert result.exit_code == 0, result.output
    assert "resuming from" in result.output
    assert _same(_tensors(out), _tensors(straight))


@pytest.mark.parametrize(
    ("case", "code", "message"),
    [
        ("architecture", 65, "u9.safetensors: model"),
        ("input", 65, "u9.safetensors: input"),
        ("empty", 2, "no update files"),
        ("glob", 66, "matches no file"),
        ("missing", 66, "no such update file"),
        ("generator", 65, "makes images of shape"),
        ("resume-other", 2, "another run"),
    ],
)
def test_cli_bad_input(stream: Path, tmp_path: Path, case: str, code: int, message: str) -> None:
    out = tmp_path / "G.safetensors"
    args = _cli(stream, out)
    if case == "architecture":
        update, _, _ = make_update(count=2, width=5)
        save_update(update, stream / "u9.safetensors")
    elif case == "input":
        update, _, _ = make_update(count=2, size=16)
        save_update(update, stream / "u9.safetensors")
    elif case == "empty":
        args = ["learn-prior", "--out", out]
    elif case == "glob":
        args[1] = stream / "v*.safetensors"
    elif case == "missing":
        args[1] = stream / "nothing.safetensors"
    elif case == "generator":
        args[args.index(TINY)] = "models_for_tests:tiny_generator_16px"
    elif case == "resume-other":
        ckpt = tmp_path / "run.ckpt"
        assert invoke(*_cli(stream, out, "--tasks", 1, "--checkpoint", ckpt)).exit_code == 0
        args = _cli(stream, out, "--seed", 5, "--checkpoint", ckpt, "--resume")
    result = invoke(*args)
    assert result.exit_code == code, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_capture_start_and_a_folder_labels_map(tmp_path: Path) -> None:
    labels = json.loads(Path("samples/digits32/labels.json").read_text())
    base = ["capture", "--images", "samples/digits32", "--size", 8, "--model", "convnet",
            "--num-classes", 10, "--device", "cpu"]  # fmt: skip
    truth = tmp_path / "t.safetensors"
    result = invoke(*base, "--start", 5, "--batch-size", 3, "--out", tmp_path / "u.safetensors",
                    "--truth", truth)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "labels.json" in result.output
    batch = load_batch(truth)
    names = ["0005.png", "0006.png", "0007.png"]
    assert batch.labels.tolist() == [labels[n] for n in names]
    assert [Path(f).name for f in batch.metadata["files"]] == names
    result = invoke(*base, "--start", 10, "--batch-size", 2, "--labels",
                    "samples/digits32/labels.json", "--out", tmp_path / "u.safetensors",
                    "--truth", truth)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert load_batch(truth).labels.tolist() == [labels["0010.png"], labels["0011.png"]]
    count = len(labels)
    for start, size in ((count, 1), (count - 1, 2)):
        result = invoke(*base, "--start", start, "--batch-size", size, "--out",
                        tmp_path / "v.safetensors")  # fmt: skip
        assert result.exit_code == 2, result.output
        assert "only" in result.output and not (tmp_path / "v.safetensors").exists()
