"""RecordUpdates without a simulation: hand-made replies, hostile ones included, never stop the
federation and never replace a file."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

pytest.importorskip("flwr", reason="the flower extra is not installed")

from flwr.app import Array, ArrayRecord, Message, Metadata, MetricRecord, RecordDict  # noqa: E402

from gradinvert.integrations import flower  # noqa: E402
from gradinvert.integrations.flower import RecordUpdates  # noqa: E402
from gradinvert.io.files import load_update  # noqa: E402
from gradinvert.models import build_model, model_spec  # noqa: E402

SPEC = model_spec("lenet", 10, (3, 32, 32))


class Aggregator:
    """Stands in for the wrapped strategy: remembers which replies it was given."""

    def __init__(self) -> None:
        self.seen: list[list[Message]] = []

    def aggregate_train(self, server_round: int, replies: Any) -> tuple[None, None]:
        self.seen.append(list(replies))
        return None, None


def _reply(node: int, arrays: dict[str, Any], examples: object = 2, message: str = "m") -> Message:
    metadata = Metadata(
        run_id=1,
        message_id=message,
        src_node_id=node,
        dst_node_id=0,
        reply_to_message_id="",
        group_id="1",
        created_at=time.time(),
        ttl=3600.0,
        message_type="train",
    )
    content = RecordDict(
        {"arrays": ArrayRecord(arrays), "metrics": MetricRecord({"num-examples": examples})}
    )
    return Message(content=content, metadata=metadata)


@pytest.fixture
def recorder(tmp_path: Path) -> RecordUpdates:
    strategy = RecordUpdates(
        Aggregator(), tmp_path / "updates", model="lenet", input_shape=(3, 32, 32)
    )  # type: ignore[arg-type]  # noqa: E501
    strategy.sent[1] = build_model(SPEC, init_seed=0).state_dict()  # what configure_train keeps
    return strategy


def _trained(seed: int) -> dict[str, torch.Tensor]:
    return build_model(SPEC, init_seed=seed).state_dict()


def test_a_reply_becomes_its_delta(recorder: RecordUpdates) -> None:
    after = _trained(1)
    path = recorder.record(1, _reply(7, after))
    assert path is not None and path.name == "round-001-node-7.safetensors"
    update = load_update(path)
    assert update.kind == "delta" and update.source["node_id"] == 7
    before = recorder.sent[1]
    for name, value in update.update.items():
        torch.testing.assert_close(value, after[name] - before[name], rtol=0, atol=0)


def test_a_second_reply_of_a_node_gets_its_own_file(recorder: RecordUpdates) -> None:
    first = recorder.record(1, _reply(7, _trained(1), message="a"))
    assert first is not None
    kept = first.read_bytes()
    second = recorder.record(1, _reply(7, _trained(2), message="b"))
    third = recorder.record(1, _reply(7, _trained(3), message="c"))
    assert second is not None and second.name == "round-001-node-7-2.safetensors"
    assert third is not None and third.name == "round-001-node-7-3.safetensors"
    assert first.read_bytes() == kept
    assert [load_update(p).source["message_id"] for p in (first, second, third)] == list("abc")


def test_a_file_left_by_an_earlier_run_is_kept(recorder: RecordUpdates) -> None:
    recorder.out_dir.mkdir(parents=True)
    earlier = recorder.out_dir / "round-001-node-7.safetensors"
    earlier.write_bytes(b"an earlier run's update")
    path = recorder.record(1, _reply(7, _trained(1)))
    assert path is not None and path != earlier
    assert earlier.read_bytes() == b"an earlier run's update"


@pytest.mark.parametrize("examples", [float("inf"), float("nan"), -3, 0.5])
def test_an_impossible_number_of_examples_is_recorded_as_unknown(
    recorder: RecordUpdates, examples: float
) -> None:
    path = recorder.record(1, _reply(7, _trained(1), examples=examples))
    assert path is not None
    assert load_update(path).source["num_examples"] is None


def _strings() -> dict[str, Any]:
    state = {k: Array(v.numpy()) for k, v in _trained(1).items()}
    state["fc.bias"] = Array(np.array(["x"] * 10))
    return state


HOSTILE = {
    "string array": _strings,
    "wrong shape": lambda: {**_trained(1), "fc.bias": torch.zeros(3)},
    "missing tensor": lambda: {k: v for k, v in _trained(1).items() if k != "fc.bias"},
    "non-finite": lambda: {**_trained(1), "fc.bias": torch.full((10,), float("nan"))},
}


@pytest.mark.parametrize("case", HOSTILE)
def test_a_hostile_reply_is_logged_and_skipped_and_the_round_goes_on(
    recorder: RecordUpdates, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    good, bad = _reply(5, _trained(1)), _reply(7, HOSTILE[case]())
    with caplog.at_level(logging.WARNING, logger=flower.__name__):
        recorder.aggregate_train(1, [bad, good])
    assert recorder.strategy.seen == [[bad, good]]  # the wrapped strategy still aggregates both
    assert [p.name for p in recorder.written] == ["round-001-node-5.safetensors"]
    assert sorted(p.name for p in recorder.out_dir.iterdir()) == ["round-001-node-5.safetensors"]
    assert "round 1 node 7 not recorded" in caplog.text


def test_any_failure_while_writing_skips_the_reply(
    recorder: RecordUpdates, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(flower, "save_update", disk_full)
    with caplog.at_level(logging.WARNING, logger=flower.__name__):
        assert recorder.record(1, _reply(7, _trained(1))) is None
    assert "No space left on device" in caplog.text and recorder.written == []
