"""Flower: record every client's training reply as a gradinvert update file.

Wrap the ServerApp's strategy (a Message-API strategy from ``flwr.serverapp.strategy``)::

    from gradinvert.integrations.flower import RecordUpdates
    strategy = RecordUpdates(FedAvg(), "updates/", model="convnet", input_shape=(3, 32, 32))
    strategy.start(grid=grid, initial_arrays=ArrayRecord(model.state_dict()), num_rounds=3)

Each training reply becomes ``round-RRR-node-ID.safetensors``: the FedAvg delta between the global
arrays sent in that round and the arrays the client returned, with the round, the node id and the
client's reported number of examples in the file's ``source``. A file is never replaced: a second
reply of the same node in one round (or a file left by an earlier run) makes
``round-RRR-node-ID-2.safetensors``, then ``-3`` and so on. The wrapped strategy sees the same
replies and aggregates as before. A reply that cannot be recorded, for whatever reason (it does
not fit the model, holds strings, reports an impossible number of examples, the disk is full), is
logged and skipped: the audit must not stop the federation.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import torch

try:
    from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
    from flwr.serverapp import Grid
    from flwr.serverapp.strategy import Strategy
except ImportError as exc:  # pragma: no cover - depends on the optional extra
    raise ImportError(
        "gradinvert.integrations.flower needs Flower: pip install 'gradinvert[flower]'"
    ) from exc

from gradinvert.client.import_update import ClientSettings, StateInputs, build_update
from gradinvert.io.files import LocalTraining, save_update
from gradinvert.models import NORMALIZATIONS, InputSpec, model_spec
from gradinvert.models.trust import CodeTrust, named_factories, trusting
from gradinvert.report.console import one_line
from gradinvert.runtime.errors import GradinvertError

log = logging.getLogger(__name__)


def _state(record: ArrayRecord) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in record.to_torch_state_dict().items()}


def _arrays(message: Message) -> ArrayRecord | None:
    records = message.content.array_records
    if "arrays" in records:
        return records["arrays"]
    return next(iter(records.values()), None)


def _num_examples(message: Message) -> int | None:
    """The reported ``num-examples`` when it is a finite count of at least 1 (else unknown)."""
    for record in message.content.metric_records.values():
        value = record.get("num-examples")
        if isinstance(value, (int, float)) and math.isfinite(value) and value >= 1:
            return int(value)
    return None


def _free_path(folder: Path, stem: str) -> Path:
    """``stem.safetensors`` in ``folder``, or ``stem-2``, ``-3``, ... when it is taken."""
    path, count = folder / f"{stem}.safetensors", 1
    while path.exists():
        count += 1
        path = folder / f"{stem}-{count}.safetensors"
    return path


class RecordUpdates(Strategy):
    """A strategy that writes each training reply as an update file, then lets ``strategy``
    aggregate as usual.

    ``model``, ``num_classes``, ``input_shape``, ``normalize`` and ``mode`` describe the model as
    in ``capture`` (a ``package.module:factory`` here is the caller's own code, so it is trusted;
    nothing a client sends names code). ``local``: the clients' local training, when the
    deployment knows it (else recorded as unknown). ``batch_size``: the clients' batch; default
    each client's reported ``num-examples``.
    """

    def __init__(
        self,
        strategy: Strategy,
        out_dir: str | os.PathLike[str],
        *,
        model: str,
        input_shape: tuple[int, int, int],
        num_classes: int = 10,
        normalize: str = "imagenet",
        mode: Literal["train", "eval"] = "eval",
        local: LocalTraining | None = None,
        batch_size: int | None = None,
    ) -> None:
        mean, std = NORMALIZATIONS[normalize]
        channels = input_shape[0]
        self.strategy = strategy
        self.out_dir = Path(out_dir)
        self.trust = CodeTrust(named_factories([model]))
        with trusting(self.trust):
            self.spec = model_spec(model, num_classes, tuple(input_shape))  # type: ignore[arg-type]
        self.input = InputSpec(tuple(input_shape), mean[:channels], std[:channels])  # type: ignore[arg-type]
        self.mode = mode
        self.local = local
        self.batch_size = batch_size
        self.sent: dict[int, dict[str, torch.Tensor]] = {}
        self.written: list[Path] = []

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        self.sent[server_round] = _state(arrays)
        return self.strategy.configure_train(server_round, arrays, config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        for reply in replies:
            if not reply.has_error():
                self.record(server_round, reply)
        return self.strategy.aggregate_train(server_round, replies)

    def record(self, server_round: int, reply: Message) -> Path | None:
        """Write one training reply as an update file; None when it could not be (logged).

        Never raises: whatever goes wrong with one reply must not stop the federation."""
        node = reply.metadata.src_node_id
        try:
            return self._record(server_round, node, reply)
        except Exception as exc:  # any failure skips this reply only
            reason = exc.message if isinstance(exc, GradinvertError) else repr(exc)
            log.warning(
                "gradinvert: round %s node %s not recorded: %s",
                server_round,
                node,
                one_line(reason),
            )
            return None

    def _record(self, server_round: int, node: int, reply: Message) -> Path | None:
        arrays = _arrays(reply)
        before = self.sent.get(server_round)
        if arrays is None or before is None:
            log.warning("gradinvert: round %s node %s: no arrays to record", server_round, node)
            return None
        examples = _num_examples(reply)
        settings = ClientSettings(self.mode, self.batch_size or examples, self.local)
        source: dict[str, Any] = {
            "tool": "flower",
            "round": server_round,
            "node_id": node,
            "num_examples": examples,
            "message_id": reply.metadata.message_id,
            "local": "given" if self.local is not None else "unknown",
        }
        inputs = StateInputs(before=before, after=_state(arrays))
        inputs.names = {"before": f"round {server_round} global", "after": f"node {node}"}
        with trusting(self.trust):
            update = build_update(self.spec, self.input, inputs, settings, source)
        path = _free_path(self.out_dir, f"round-{server_round:03d}-node-{node}")
        save_update(update, path)
        self.written.append(path)
        return path

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        return self.strategy.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        return self.strategy.aggregate_evaluate(server_round, replies)

    def summary(self) -> None:
        self.strategy.summary()
        log.info("gradinvert: training replies are written to %s", self.out_dir)
