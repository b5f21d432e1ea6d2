"""The supervisor's multi-node lifecycle in-process, on the two loopback sshd of the e2e file
(node-a on 127.0.0.2, node-b on 127.0.0.3): `stop_criteria: master-done`, `startup_order`, and
a supervisor killed during a 2-node run and resumed. Both hosts are this machine, so a node's
job can look at the other's run folder."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from iacrun.orchestrator import supervisor
from iacrun.orchestrator.api import Orchestrator
from iacrun.orchestrator.host.cluster import read_nodes
from iacrun.orchestrator.host.runner_client import ship_and_start
from iacrun.orchestrator.host.transport import Host, Transport
from iacrun.orchestrator.models.runspec import Overrides, build_run_spec
from iacrun.orchestrator.registry import RunRecord
from tests.conftest import write_task
from tests.orchestrator.host.sshd import Sshd
from tests.orchestrator.host.test_e2e import host_entry, wait_for
from tests.orchestrator.host.test_e2e_multinode import two_sshd  # noqa: F401  (a fixture)

pytestmark = [pytest.mark.sshd, pytest.mark.slow]


@pytest.fixture
def orch(tmp_path: Path, two_sshd: list[Sshd]) -> Iterator[Orchestrator]:  # noqa: F811
    home = Path(os.environ["IACRUN_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    hosts = [host_entry(two_sshd[0], "node-a"), host_entry(two_sshd[1], "node-b")]
    config = {"backends": {"local": {"enabled": False}, "ssh": {"hosts": hosts}}}
    (home / "config.yml").write_text(yaml.safe_dump(config))
    orch = Orchestrator(home=home)
    yield orch
    for run in orch.registry.runs(all_runs=True):
        if run.active:
            orch.stop(run.name, wait=60)
        for node in read_nodes(run.local_dir):
            shutil.rmtree(node.host.run_dir, ignore_errors=True)
    orch.registry.close()


def submit(orch: Orchestrator, project: Path, task: str, name: str, *, detached: bool) -> RunRecord:
    write_task(project, task)
    spec = build_run_spec(project / "task.dstack.yml", Overrides(name=name))
    return orch.submit(spec, orch.plan(spec), supervise=detached)


def nodes_of(orch: Orchestrator, run: RunRecord) -> list[tuple[str | None, str | None]]:
    return [(n.status, n.reason) for n in read_nodes(run.local_dir)]


def test_master_done_stops_the_other_nodes_and_the_run_is_done(
    orch: Orchestrator, project: Path
) -> None:
    task = """
    nodes: 2
    stop_criteria: master-done
    commands:
      - if [ "$DSTACK_NODE_RANK" = 0 ]; then echo master out; exit 0; fi
      - sleep 300
    """
    run = submit(orch, project, task, "masterdone", detached=False)
    orch.supervisor().supervise(run.id)
    ended = orch.get("masterdone")
    assert (ended.status, ended.exit_code) == ("done", 0), ended.reason
    assert nodes_of(orch, run) == [
        ("done", "exited (0)"),
        ("terminated", "the master is done (stop_criteria: master-done)"),
    ]


def test_all_done_waits_for_every_node(orch: Orchestrator, project: Path) -> None:
    task = """
    nodes: 2
    commands:
      - if [ "$DSTACK_NODE_RANK" = 1 ]; then sleep 2; echo worker out; fi
    """
    run = submit(orch, project, task, "alldone", detached=False)
    orch.supervisor().supervise(run.id)
    assert orch.get("alldone").status == "done"
    assert nodes_of(orch, run) == [("done", "exited (0)"), ("done", "exited (0)")]
    assert (
        "the master is done; waiting for 1 other node"
        in (Path(run.local_dir) / "events").read_text()
    )


# the rank started second finds the other's runner up (its pid is written before the runner's
# start returns): the nodes are started one after the other, each once the one before is up
ORDER_TASK = """
nodes: 2
startup_order: {order}
commands:
  - other="${{IACRUN_RUN_DIR%-node1}}"
  - if [ "$DSTACK_NODE_RANK" = 0 ]; then other="${{IACRUN_RUN_DIR}}-node1"; fi
  - if [ -s "$other/pid" ]; then echo "rank $DSTACK_NODE_RANK saw the other up"; fi
"""


@pytest.mark.parametrize(("order", "ranks"), [("workers-first", [1, 0]), ("master-first", [0, 1])])
def test_startup_order_starts_one_rank_after_the_other(
    orch: Orchestrator, project: Path, monkeypatch: pytest.MonkeyPatch, order: str, ranks: list[int]
) -> None:
    steps: list[str] = []

    async def recording(
        transport: Transport, host: Host, job: dict[str, Any], *a: Any, **k: Any
    ) -> None:
        rank = job["env"]["DSTACK_NODE_RANK"]
        steps.append(f"start {rank}")
        await ship_and_start(transport, host, job, *a, **k)
        steps.append(f"up {rank}")

    monkeypatch.setattr(supervisor, "ship_and_start", recording)
    name = order.replace("-", "")
    run = submit(orch, project, ORDER_TASK.format(order=order), name, detached=False)
    orch.supervisor().supervise(run.id)
    assert orch.get(name).status == "done", orch.get(name).reason
    first, second = ranks
    assert steps == [f"start {first}", f"up {first}", f"start {second}", f"up {second}"]
    logs = {0: Path(run.local_dir) / "log", 1: Path(run.local_dir) / "log.node1"}
    assert f"rank {second} saw the other up" in logs[second].read_text()


def test_a_killed_supervisor_is_resumed_and_watches_every_node(
    orch: Orchestrator, project: Path, tmp_path: Path
) -> None:
    """Killed (SIGKILL) while both nodes run; the supervisor that takes over sees the worker
    fail, fails the run with the worker's exit code and stops the master."""
    go = tmp_path / "go"
    task = f"""
    nodes: 2
    commands:
      - echo "rank $DSTACK_NODE_RANK up"
      - while [ ! -e {go} ]; do sleep 0.1; done
      - if [ "$DSTACK_NODE_RANK" = 1 ]; then exit 5; fi
      - sleep 300
    """
    run = submit(orch, project, task, "resumed", detached=True)
    # the registry's record, not `orch.get`: that would start a new supervisor for a dead one
    wait_for(lambda: orch.registry.get("resumed").status == "running", timeout=90, what="running")
    pid = orch.registry.get("resumed").supervisor_pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not Path(f"/proc/{pid}").exists() or _zombie(pid), timeout=15, what="gone")
    assert orch.registry.get("resumed").status == "running"  # nothing settled it

    taken = orch.registry.claim_supervisor(run.id, pid, os.getpid())
    assert taken
    resumer = threading.Thread(target=orch.supervisor().resume, args=(run.id,))
    resumer.start()
    go.touch()
    resumer.join(timeout=120)
    assert not resumer.is_alive()
    ended = orch.get("resumed")
    assert (ended.status, ended.reason, ended.exit_code) == (
        "failed",
        "node 1 failed: exited (5)",
        5,
    )
    assert [status for status, _ in nodes_of(orch, run)] == ["terminated", "failed"]
    assert (
        "the previous supervisor exited; taking the run over"
        in (Path(run.local_dir) / "events").read_text()
    )


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


#: a supervisor process that kills itself (SIGKILL) once rank RANK's job is up: python -c KILLER
#: RUN_ID RANK; the same as `python -m iacrun.orchestrator.supervisor RUN_ID` otherwise
KILLER = """
import os, signal, sys
from iacrun.orchestrator import supervisor

run_id, rank = sys.argv[1], sys.argv[2]
real = supervisor.ship_and_start

async def ship_and_start(transport, host, job, *args, **kwargs):
    await real(transport, host, job, *args, **kwargs)
    if job["env"]["DSTACK_NODE_RANK"] == rank:
        os.kill(os.getpid(), signal.SIGKILL)

supervisor.ship_and_start = ship_and_start
supervisor.main([run_id])
"""

STARTED = """
nodes: 2
startup_order: {order}
commands:
  - sleep 300 &
  - echo $! > "$IACRUN_RUN_DIR/child.pid"
  - sleep 300
"""


@pytest.mark.parametrize(("order", "started"), [("workers-first", 1), ("master-first", 0)])
def test_a_supervisor_killed_between_two_nodes_starts_leaves_no_job_behind(
    orch: Orchestrator, project: Path, order: str, started: int
) -> None:
    """Killed once one node's job is up and before the other's is started: the one that took
    over fails the run (it cannot go on without every node) and stops the job that did start,
    instead of leaving it running (or waiting for a node that never comes)."""
    name = f"half{started}"
    run = submit(orch, project, STARTED.format(order=order), name, detached=False)
    env = dict(os.environ, IACRUN_HOME=str(orch.home))
    killer = subprocess.run(
        [sys.executable, "-c", KILLER, str(run.id), str(started)], env=env, check=False
    )
    assert killer.returncode == -signal.SIGKILL
    nodes = read_nodes(run.local_dir)
    child = Path(nodes[started].host.run_dir) / "child.pid"
    wait_for(lambda: child.is_file() and child.read_text().strip(), timeout=30, what="child")
    pid = int(child.read_text())

    resumer = threading.Thread(target=orch.supervisor().resume, args=(run.id,), daemon=True)
    resumer.start()
    resumer.join(timeout=120)
    assert not resumer.is_alive(), "the resumed supervisor still waits"
    ended = orch.registry.get(name)
    other = 1 - started
    assert (ended.status, ended.reason) == (
        "failed",
        f"interrupted while starting the nodes; node {other}'s job never started",
    )
    wait_for(lambda: _zombie(pid), timeout=15, what=f"node {started}'s job ended")
