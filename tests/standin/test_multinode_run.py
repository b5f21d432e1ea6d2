"""A two-node run through the orchestrator on the stand-in cloud: one stack of two stand-in VMs
(each its own sshd on its own loopback address), running the framework-free example
(examples/distributed/tcp-sum.dstack.yml: every rank sends a number to the master at
DSTACK_MASTER_NODE_IP, the master prints the sum). The run ends `done` with exit code 0 (what
makes `up` exit 0), each node's job saw the other's private address, and teardown ends both VMs
(their sshd included) and removes the stack."""

from __future__ import annotations

import contextlib
import shutil
import threading
import time
from pathlib import Path

import pytest

from iacrun.orchestrator.host.cluster import read_nodes
from iacrun.orchestrator.models.runspec import Overrides, build_run_spec
from iacrun.stacks.engine import StackEngine
from tests.standin.supervise import orchestrator
from tests.standin.vm import free_port, vm_pids

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "distributed"
pytestmark = [pytest.mark.engine, pytest.mark.sshd]


def test_a_two_node_run_on_the_standin_cloud_exchanges_data_and_tears_both_down(
    tmp_path: Path,
) -> None:
    home, root, project = tmp_path / "home", tmp_path / "vm", tmp_path / "project"
    home.mkdir()
    project.mkdir()
    for name in ("tcp-sum.dstack.yml", "tcp_sum.py"):
        shutil.copy(EXAMPLES / name, project / name)
    port = free_port("127.0.0.2")  # the master node's address
    overrides = Overrides(env=[f"SUM_PORT={port}"])
    spec = build_run_spec(project / "tcp-sum.dstack.yml", overrides, environ={})
    assert spec.nodes == 2
    orch = orchestrator(home, root)
    plan = orch.plan(spec)
    assert [o.backend for o in plan.offers] == ["standin"]
    run = orch.submit(spec, plan, supervise=False)
    # the supervisor has its own Orchestrator, as in its own process (one registry per thread)
    supervisor = threading.Thread(
        target=lambda: orchestrator(home, root).supervisor().supervise(run.id), daemon=True
    )
    supervisor.start()
    try:
        supervisor.join(timeout=300)
        assert not supervisor.is_alive(), orch.registry.get_by_id(run.id)
    finally:
        with contextlib.suppress(Exception):
            orch.down(run.name)
    final = orch.registry.get_by_id(run.id)
    assert (final.status, final.exit_code) == ("done", 0), final
    nodes = read_nodes(final.local_dir)
    assert [(n.rank, n.host.address, n.host.internal_ip) for n in nodes] == [
        (0, "127.0.0.2", "127.0.0.2"),
        (1, "127.0.0.3", "127.0.0.3"),
    ]
    master: list[bytes] = []
    orch.logs(run.name, master.append)  # the master's log by default
    master_log = b"".join(master).decode()
    assert "rank 0 of 2; master 127.0.0.2; nodes 127.0.0.2,127.0.0.3" in master_log
    assert "got 2 from rank 1" in master_log
    assert "sum of 2 ranks: 3" in master_log
    worker: list[bytes] = []
    orch.logs(run.name, worker.append, node=1)
    assert "rank 1 sent 2" in b"".join(worker).decode()
    # torn down: both VMs' processes (their sshd included) are gone, and so is the stack
    end = time.monotonic() + 30
    while (vm_pids(str(root)) or vm_pids(f"{root}-node-1")) and time.monotonic() < end:
        time.sleep(0.2)
    assert vm_pids(str(root)) == [] and vm_pids(f"{root}-node-1") == []
    assert not root.exists() and not Path(f"{root}-node-1").exists()
    assert StackEngine(home).stack_names() == []
