"""A multi-node run's machines on the stand-in cloud: one real stack of two stand-in VMs, each
its own sshd on its own loopback address, reached through the real SSH transport with the pinned
host key; the nodes reach each other on their private addresses; teardown ends both."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from iacrun.orchestrator.host.transport import Host
from iacrun.orchestrator.models.runspec import build_run_spec
from iacrun.orchestrator.registry import RunRecord, RunStatus
from iacrun.stacks.engine import StackEngine
from tests.standin.backend import StandinBackend
from tests.standin.vm import free_port, vm_pids

pytestmark = [pytest.mark.engine, pytest.mark.sshd]

#: a TCP exchange between the two nodes, over their private addresses
LISTEN = (
    "import socket, sys\n"
    "s = socket.create_server((sys.argv[1], int(sys.argv[2])))\n"
    "c, _ = s.accept()\n"
    "print('master got', c.recv(100).decode())\n"
)
SEND = (
    "import socket, sys, time\n"
    "for _ in range(100):\n"
    "    try:\n"
    "        c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2); break\n"
    "    except OSError:\n"
    "        time.sleep(0.1)\n"
    "c.sendall(b'hello from rank 1')\n"
)


def record(tmp_path: Path) -> RunRecord:
    project = tmp_path / "project"
    project.mkdir()
    task = project / "task.dstack.yml"
    task.write_text("type: task\ncommands: [echo hi]\n")
    spec = build_run_spec(task, environ={})
    local = tmp_path / "runs" / "pair-3"
    local.mkdir(parents=True)
    return RunRecord(
        id=3,
        name="pair",
        status=RunStatus.PROVISIONING,
        spec=spec,
        local_dir=str(local),
        submitted_at=time.time(),
    )


async def exchange(master: Host, worker: Host, port: int) -> tuple[str, str]:
    """Rank 0 listens on its private address; rank 1 connects to it there and sends."""
    from iacrun.orchestrator.host.connect import connect

    first, second = await connect(master, retry_auth=True), await connect(worker, retry_auth=True)
    try:
        listen = ["python3", "-c", LISTEN, str(master.internal_ip), str(port)]
        send = ["python3", "-c", SEND, str(master.internal_ip), str(port)]
        (rc0, out0, err0), (rc1, _, err1) = await asyncio.gather(
            first.run(listen), second.run(send)
        )
        assert (rc0, rc1) == (0, 0), (err0, err1)
        rc, where, _ = await second.run(["sh", "-c", "echo $IACRUN_VM_ROOT"])
        assert rc == 0
        return out0.decode().strip(), where.decode().strip()
    finally:
        await first.close()
        await second.close()


def test_two_standin_vms_in_one_stack_reach_each_other_and_go_together(
    tmp_path: Path, engine: StackEngine
) -> None:
    home, root = Path(engine.home), tmp_path / "vm"
    backend = StandinBackend(root, engine=engine, home=home)
    run = record(tmp_path)
    offer = backend.offers(run.spec.requirements)[0]
    lines: list[str] = []
    hosts = backend.provision_nodes(run, offer, 2, lines.append)
    try:
        assert [h.internal_ip for h in hosts] == ["127.0.0.2", "127.0.0.3"]
        assert [h.address for h in hosts] == ["127.0.0.2", "127.0.0.3"]
        assert hosts[0].port != hosts[1].port or hosts[0].address != hosts[1].address
        assert [h.run_dir for h in hosts] == [
            f"{root}/opt/iacrun/run",
            f"{root}-node-1/opt/iacrun/run",
        ]
        summaries = {s.name: s for s in engine.list_stacks()}
        (stack,) = [name for name in summaries if name.startswith("pair-3-")]
        assert summaries[stack].resource_count is not None
        assert len(vm_pids(str(root))) >= 1 and len(vm_pids(f"{root}-node-1")) >= 1
        port = free_port("127.0.0.2")
        said, where = asyncio.run(exchange(hosts[0], hosts[1], port))
        assert said == "master got hello from rank 1"
        assert where == f"{root}-node-1"  # the second session ran on the second VM
    finally:
        backend.terminate(run)
    assert vm_pids(str(root)) == [] and vm_pids(f"{root}-node-1") == []
    assert not root.exists() and not Path(f"{root}-node-1").exists()
    assert not [s for s in engine.list_stacks() if s.name.startswith("pair-3-")]
    backend.terminate(run)  # idempotent
