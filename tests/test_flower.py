"""A real Flower simulation (2 clients × 1 round) recorded by RecordUpdates, then attacked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

flwr = pytest.importorskip("flwr", reason="the flower extra is not installed")
pytest.importorskip("ray", reason="Flower's simulation needs ray (flwr[simulation])")

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict  # noqa: E402
from flwr.clientapp import ClientApp  # noqa: E402
from flwr.serverapp import Grid, ServerApp  # noqa: E402
from flwr.serverapp.strategy import FedAvg  # noqa: E402
from flwr.simulation import run_simulation  # noqa: E402

from gradinvert.cli.main import app as cli  # noqa: E402
from gradinvert.integrations.flower import RecordUpdates  # noqa: E402
from gradinvert.io.files import LocalTraining, load_update  # noqa: E402
from gradinvert.io.images import load_images  # noqa: E402
from gradinvert.models import InputSpec, build_model, model_spec  # noqa: E402

SPEC = model_spec("lenet", 10, (3, 32, 32))
SAMPLES = sorted(Path("samples/images32").resolve().glob("*.png"))
LABELS = {0: [0, 1], 1: [2, 3]}  # client partition -> labels of its two images
STEPS, LR = 2, 0.05
REPLY_TIMEOUT_S = 300
# A private Ray instance: with no address, ray.init joins the cluster that the last `ray start` on
# this machine recorded in /tmp/ray, and fails when that cluster is gone. Two CPUs and a small
# object store are all two tiny clients need (Ray's default takes 30 % of memory in /dev/shm).
RAY_INIT = {
    "address": "local",
    "num_cpus": 2,
    "object_store_memory": 100 * 2**20,
    "include_dashboard": False,
}


def _client_app(own_dir: Path) -> ClientApp:
    client = ClientApp()

    @client.train()
    def train(msg: Message, context: Context) -> Message:
        partition = int(context.node_config["partition-id"])
        model = build_model(SPEC)
        model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
        before = {k: v.clone() for k, v in model.state_dict().items()}
        images, _ = load_images(SAMPLES[2 * partition : 2 * partition + 2])
        inputs = InputSpec((3, 32, 32)).normalize(images)
        labels = torch.tensor(LABELS[partition])
        optimizer = torch.optim.SGD(model.parameters(), lr=LR)
        model.eval()
        for _ in range(STEPS):
            optimizer.zero_grad()
            F.cross_entropy(model(inputs), labels).backward()
            optimizer.step()
        change = {k: (v - before[k]).contiguous() for k, v in model.state_dict().items()}
        path = own_dir / f"node-{context.node_id}.safetensors"
        save_file(change, str(path), metadata={"labels": json.dumps(LABELS[partition])})
        content = RecordDict(
            {
                "arrays": ArrayRecord(model.state_dict()),
                "metrics": MetricRecord({"num-examples": len(labels)}),
            }
        )
        return Message(content=content, reply_to=msg)

    return client


def _server_app(out_dir: Path) -> ServerApp:
    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        strategy = RecordUpdates(
            FedAvg(fraction_evaluate=0.0, min_train_nodes=2, min_available_nodes=2),
            out_dir,
            model="lenet",
            input_shape=(3, 32, 32),
            local=LocalTraining(steps=STEPS, lr=LR, batch_size=2),
        )
        initial = ArrayRecord(build_model(SPEC).state_dict())
        # Flower waits an hour for replies by default: a simulation whose backend failed would
        # hold the test session open that long after the failure.
        strategy.start(grid=grid, initial_arrays=initial, num_rounds=1, timeout=REPLY_TIMEOUT_S)

    return server


def test_flower_simulation_replies_become_update_files(tmp_path: Path):
    out_dir, own_dir = tmp_path / "updates", tmp_path / "own"
    own_dir.mkdir()
    run_simulation(
        server_app=_server_app(out_dir),
        client_app=_client_app(own_dir),
        num_supernodes=2,
        backend_config={
            "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
            "init_args": RAY_INIT,
        },
    )
    files = sorted(out_dir.glob("round-001-node-*.safetensors"))
    assert len(files) == 2, sorted(tmp_path.rglob("*"))
    runner = CliRunner()
    for path in files:
        update = load_update(path)
        node = update.source["node_id"]
        assert update.kind == "delta" and update.source["round"] == 1
        assert update.source["num_examples"] == 2 and update.batch_size == 2
        own_path = own_dir / f"node-{node}.safetensors"
        own = load_file(str(own_path))
        with safe_open(str(own_path), framework="pt") as f:
            own_labels = json.loads(f.metadata()["labels"])
        for name, value in update.update.items():
            torch.testing.assert_close(value, own[name], rtol=0, atol=1e-7)
        initial = build_model(SPEC).state_dict()
        assert all(torch.equal(update.params[k], initial[k]) for k in update.params)

        labels = runner.invoke(cli, ["labels", str(path)])
        assert labels.exit_code == 0, labels.output
        assert sorted(json.loads(labels.stdout)["labels"]) == sorted(own_labels)
        recon = tmp_path / f"r-{node}.safetensors"
        result = runner.invoke(
            cli,
            ["invert", str(path), "--attack", "ig", "--iterations", "3", "--seeds", "1",
             "--device", "cpu", "--no-progress", "--out", str(recon)],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        assert recon.exists()
