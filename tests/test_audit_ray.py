"""The Ray executor on a real local multi-node cluster (``ray.cluster_utils.Cluster``: a head
without CPUs and two one-CPU worker nodes): outputs byte-identical to the local executor's, and
every job completes when a worker node is removed mid-audit. No shared filesystem is assumed by
the code: inputs travel through the object store and the driver alone writes."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from audit_support import job_files, run_plan, write_plan

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """One cluster for the module; generous timeouts for a slow shared machine."""
    if ray.is_initialized():  # another module's Ray (e.g. Flower's simulation)
        ray.shutdown()
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "include_dashboard": False},
    )
    nodes = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes(timeout=300)
    for attempt in range(3):  # a slow shared machine can miss the first connection
        try:
            ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
            break
        except (ConnectionError, TimeoutError):
            if attempt == 2:
                cluster.shutdown()
                raise
            time.sleep(5)
    cluster.worker_nodes_for_test = nodes  # type: ignore[attr-defined]
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_ray_matches_the_local_executor_byte_for_byte(cluster: Cluster, tmp_path: Path) -> None:
    plan = write_plan(tmp_path, batch_size="[1, 2]", iterations=3)
    local, remote = tmp_path / "local", tmp_path / "ray"
    run_plan(plan, local, workers=2)
    _, tally, _ = run_plan(plan, remote, executor="ray", address=cluster.address)
    assert tally.done == 4 and tally.failed == 0
    assert len(job_files(remote)) == 4 * 6
    assert job_files(remote) == job_files(local)


def test_removing_a_worker_node_mid_audit_still_completes_every_job(
    cluster: Cluster, tmp_path: Path
) -> None:
    plan = write_plan(tmp_path, batch_size="[1, 2]", batches=2, iterations=60, noise="[0.0]")
    out = tmp_path / "out"
    doomed = cluster.worker_nodes_for_test[0]  # type: ignore[attr-defined]

    def remove_when_running() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any((out / "jobs").glob("*/done.json")):
            time.sleep(0.1)
        cluster.remove_node(doomed, allow_graceful=False)

    remover = threading.Thread(target=remove_when_running)
    remover.start()
    try:
        _, tally, _ = run_plan(plan, out, executor="ray", address=cluster.address)
    finally:
        remover.join()
    assert tally.done == 4 and tally.failed == 0
    assert len(list((out / "jobs").glob("*/done.json"))) == 4
    # the head and one worker left (Ray's control store notices a killed node after a delay)
    deadline = time.monotonic() + 60
    while sum(node["Alive"] for node in ray.nodes()) != 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert sum(node["Alive"] for node in ray.nodes()) == 2
