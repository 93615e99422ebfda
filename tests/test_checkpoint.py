"""The one checkpoint mechanism (gradinvert.runtime.checkpoint): a toy run checks the file rules
(atomic, owner-only, another kind or run refused, every schema problem at once, no rewrite at
the same position); then each of the four long runs, through its command, is stopped by SIGTERM
(exit 143, checkpoint saved), resumed to exactly the straight run's output, and refuses another
run's checkpoint."""

from __future__ import annotations

import os
import signal
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from invert_support import one_thread  # noqa: F401 (fixture)
from long_run_support import same_tensors, training_inputs
from pydantic import BaseModel, ConfigDict, InstanceOf
from typer.testing import CliRunner

from gradinvert.cli.main import app
from gradinvert.invert.engine import Engine
from gradinvert.inverter.train import InverterTrainer
from gradinvert.priors.learn import MetaLearner
from gradinvert.priors.train import PriorTrainer
from gradinvert.runtime.checkpoint import (
    CheckpointKind,
    InterruptedRun,
    LongRun,
    read_checkpoint,
    write_checkpoint,
)
from gradinvert.runtime.errors import InvalidInputError, MissingInputError, UsageError
from gradinvert.runtime.runstate import terminated

runner = CliRunner()


# ---------------------------------------------------------------------- a toy run


class CountSchema(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", arbitrary_types_allowed=True)

    format: str
    run_id: str
    count: int
    value: InstanceOf[torch.Tensor]


COUNT = CheckpointKind("count", "test-count/1", CountSchema, "settings")


@dataclass
class Count(LongRun):
    """Adds a seeded random number per step: the result depends on every step and the RNG."""

    checkpoint_kind: ClassVar[CheckpointKind] = COUNT

    total: int
    run_id: str = "run-a"
    count: int = 0
    _stop: bool = False

    def __post_init__(self) -> None:
        self.value = torch.zeros(())
        self.rng = torch.Generator().manual_seed(0)

    def finished(self) -> bool:
        return self.count >= self.total

    def advance(self) -> int:
        self.value = self.value + torch.rand((), generator=self.rng)
        self.count += 1
        return self.count

    def position(self) -> int:
        return self.count

    def where(self) -> str:
        return f"at step {self.count}/{self.total}"

    def payload(self) -> dict[str, Any]:
        return {"count": self.count, "value": self.value}

    def restore(self, state: dict[str, Any], source: str) -> None:
        self.count, self.value = state["count"], state["value"]
        self.rng.manual_seed(0)
        torch.rand((self.count,), generator=self.rng)  # the draws already taken


def _stop_at(step: int) -> Callable[[Count, int], None]:
    def stop(run: Count, count: int) -> None:
        if count == step:
            run.request_stop()

    return stop


def test_interrupt_and_resume_equal_the_straight_run(tmp_path: Path) -> None:
    straight = Count(5)
    straight.run_steps(None)
    ckpt = tmp_path / "run.ckpt"
    with pytest.raises(InterruptedRun, match="at step 2/5; checkpoint saved to .*--resume"):
        Count(5).run_steps(ckpt, _stop_at(2))
    assert stat.S_IMODE(ckpt.stat().st_mode) == 0o600
    assert torch.load(ckpt, weights_only=True)["count"] == 2
    resumed = Count(5)
    resumed.load(ckpt)
    resumed.run_steps(ckpt)
    assert torch.equal(resumed.value, straight.value) and resumed.count == 5
    with pytest.raises(InterruptedRun, match=r"nothing saved"):
        Count(5).run_steps(None, _stop_at(1))


def test_sigterm_stops_after_the_step_and_is_told_apart_from_ctrl_c(tmp_path: Path) -> None:
    class Terminated(Count):
        def advance(self) -> int:
            count = super().advance()
            if count == 3:
                os.kill(os.getpid(), signal.SIGTERM)
            return count

    run, ckpt = Terminated(5), tmp_path / "run.ckpt"
    with pytest.raises(InterruptedRun, match="at step 3/5"):
        run.run_steps(ckpt)
    assert terminated() and torch.load(ckpt, weights_only=True)["count"] == 3


def test_a_checkpoint_is_not_rewritten_at_the_same_position(tmp_path: Path) -> None:
    run, ckpt = Count(2), tmp_path / "run.ckpt"
    run.run_steps(ckpt)
    before = ckpt.stat().st_ino
    run.save(ckpt)  # nothing moved since the last write
    assert ckpt.stat().st_ino == before
    ckpt.unlink()
    run.save(ckpt)  # a missing file is written again
    assert ckpt.exists()


def test_another_kind_run_or_shape_is_refused(tmp_path: Path) -> None:
    ckpt = tmp_path / "run.ckpt"
    Count(2).run_steps(ckpt)
    with pytest.raises(UsageError, match="another run \\(different settings\\)"):
        Count(2, run_id="run-b").load(ckpt)
    other = CheckpointKind("other", "test-other/1", CountSchema, "settings")
    with pytest.raises(InvalidInputError, match="not a gradinvert other checkpoint"):
        read_checkpoint(ckpt, other)
    bad = tmp_path / "bad.ckpt"
    write_checkpoint(bad, {"format": "test-count/1", "run_id": "run-a", "count": "2",
                           "value": torch.zeros(()), "extra": 1})  # fmt: skip
    with pytest.raises(InvalidInputError) as caught:
        read_checkpoint(bad, COUNT)
    assert "count" in caught.value.message and "extra" in caught.value.message
    torch.save([1, 2], bad)
    with pytest.raises(InvalidInputError, match="not a gradinvert count checkpoint"):
        read_checkpoint(bad, COUNT)
    with pytest.raises(MissingInputError, match="no checkpoint to resume from"):
        read_checkpoint(tmp_path / "none.ckpt", COUNT)


# ---------------------------------------------------------------------- the four long runs


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return training_inputs(tmp_path_factory.mktemp("work"))


COMMON = ["--device", "cpu", "--no-progress"]
RUNS: dict[str, tuple[type[LongRun], Callable[[Path], list[object]]]] = {
    "invert": (Engine, lambda w: ["invert", w / "u.safetensors", "--attack", "ig",
                                  "--iterations", 4, "--seeds", 1, "--labels", "1,3"]),
    "train-prior": (PriorTrainer, lambda w: ["train-prior", "--images", w / "imgs", "--epochs", 2,
                                             "--batch-size", 4, "--ngf", 8]),
    "learn-prior": (MetaLearner, lambda w: ["learn-prior", w / "u.safetensors", w / "v.safetensors",
                                            "--generator", "models_for_tests:tiny_generator",
                                            "--tasks", 2, "--latent-iterations", 2,
                                            "--iterations", 2]),
    "train-inverter": (InverterTrainer, lambda w: ["train-inverter", w / "u.safetensors",
                                                   "--images", w / "imgs", "--size", 8,
                                                   "--pairs", 8, "--epochs", 2, "--batch", 4,
                                                   "--width", 4, "--val-fraction", 0.25]),
}  # fmt: skip


def invoke(*args: object):  # noqa: ANN201
    return runner.invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("command", RUNS)
def test_sigterm_then_resume_equals_the_straight_run_and_another_run_is_refused(
    work: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    cls, words = RUNS[command]
    base = [*words(work), *COMMON]
    straight, out, ckpt = tmp_path / "straight.st", tmp_path / "out.st", tmp_path / "run.ckpt"
    result = invoke(*base, "--out", straight)
    assert result.exit_code == 0, result.output
    original = cls.advance
    calls = [0]

    def advance_then_sigterm(self: LongRun) -> Any:
        info = original(self)
        calls[0] += 1
        if calls[0] == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # stops after this step
        return info

    with monkeypatch.context() as patch:
        patch.setattr(cls, "advance", advance_then_sigterm)
        result = invoke(*base, "--out", out, "--checkpoint", ckpt)
    assert result.exit_code == 143, result.output
    assert "--resume" in result.output and "Traceback" not in result.output
    assert ckpt.exists() and not out.exists()
    result = invoke(*base, "--out", out, "--checkpoint", ckpt, "--resume")
    assert result.exit_code == 0, result.output
    assert "resuming from" in result.output
    assert same_tensors(out, straight)
    other = tmp_path / "other.st"
    result = invoke(*base, "--seed", 1, "--out", other, "--checkpoint", ckpt, "--resume")
    assert result.exit_code == 2, result.output
    assert "belongs to another run" in result.output and not other.exists()


def test_a_checkpoint_of_another_long_run_is_refused(work: Path, tmp_path: Path) -> None:
    ckpt, out = tmp_path / "prior.ckpt", tmp_path / "g.st"
    _, words = RUNS["train-prior"]
    result = invoke(*words(work), *COMMON, "--epochs", 1, "--out", out, "--checkpoint", ckpt)
    assert result.exit_code == 0, result.output
    _, words = RUNS["invert"]
    result = invoke(*words(work), *COMMON, "--out", tmp_path / "r.st", "--checkpoint", ckpt,
                    "--resume")  # fmt: skip
    assert result.exit_code == 65, result.output
    assert "not a gradinvert invert checkpoint" in result.output
