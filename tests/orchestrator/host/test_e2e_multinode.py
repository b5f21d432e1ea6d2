"""Multi-node runs (`nodes: 2`) on the ssh backend, end to end: the real CLI, two real sshd on
127.0.0.2 and 127.0.0.3 (Linux routes all of 127/8 to lo, so they are two hosts with two
addresses), the real runner on each, and the framework-free example of examples/distributed,
whose ranks meet over TCP at DSTACK_MASTER_NODE_IP.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cli, write_task
from tests.orchestrator.host.conftest import _require_sshd
from tests.orchestrator.host.sshd import Sshd, free_port
from tests.orchestrator.host.test_e2e import (
    configure,
    host_entry,
    record,
    remote_run_dirs,
    wait_for,
)

pytestmark = [pytest.mark.sshd, pytest.mark.slow]

EXAMPLES = Path(__file__).parents[3] / "examples" / "distributed"
ADDRESSES = ("127.0.0.2", "127.0.0.3")


@pytest.fixture(scope="module")
def two_sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Sshd]]:
    _require_sshd()
    home = tmp_path_factory.mktemp("hosts-home")  # one home for both, as on an NFS home
    servers = [
        Sshd(tmp_path_factory.mktemp(f"sshd{i}"), address=a, login_home=home)
        for i, a in enumerate(ADDRESSES)
    ]
    try:
        yield [server.start() for server in servers]
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def cluster_cli(cli: Cli, two_sshd: list[Sshd]) -> Iterator[Cli]:
    """The CLI with two ssh hosts, node-a (127.0.0.2) and node-b (127.0.0.3), no local backend."""
    configure(cli, [host_entry(two_sshd[0], "node-a"), host_entry(two_sshd[1], "node-b")])
    yield cli
    cli("down", "--all", timeout=120)
    for run_dir in remote_run_dirs(cli):
        for folder in (run_dir, f"{run_dir}-node1"):
            shutil.rmtree(folder, ignore_errors=True)


def nodes_json(cli: Cli, name: str) -> list[dict[str, Any]]:
    listed = cli("ps", "-a", "--json")
    assert listed.returncode == 0, listed.stderr
    run = next(r for r in json.loads(listed.stdout) if r["name"] == name)
    nodes: list[dict[str, Any]] = run["nodes"]
    return nodes


def test_the_ranks_meet_over_tcp_and_the_master_prints_the_sum(
    cluster_cli: Cli, project: Path
) -> None:
    for name in ("tcp-sum.dstack.yml", "tcp_sum.py"):
        shutil.copy(EXAMPLES / name, project / name)
    port = free_port(ADDRESSES[0])
    done = cluster_cli("up", "-y", "-e", f"SUM_PORT={port}", "tcp-sum.dstack.yml", timeout=180)
    assert done.returncode == 0, done.stderr
    # `up` follows the master: its lines, then the sum of 0*0+1 and 1*1+1
    assert "rank 0 of 2; master 127.0.0.2; nodes 127.0.0.2,127.0.0.3" in done.stdout
    assert "sum of 2 ranks: 3" in done.stdout
    assert "rank 1 sent" not in done.stdout

    worker = cluster_cli("logs", "--node", "1", "tcp-sum")
    assert worker.returncode == 0, worker.stderr
    assert "rank 1 of 2; master 127.0.0.2" in worker.stdout
    assert "rank 1 sent 2" in worker.stdout

    every = cluster_cli("logs", "--all-nodes", "tcp-sum")
    assert every.returncode == 0, every.stderr
    lines = every.stdout.splitlines()
    assert "[0] sum of 2 ranks: 3" in lines
    assert "[1] rank 1 sent 2" in lines
    assert all(line.startswith(("[0] ", "[1] ")) for line in lines), lines

    nodes = nodes_json(cluster_cli, "tcp-sum")
    assert [(n["rank"], n["address"], n["status"], n["exit_code"]) for n in nodes] == [
        (0, "127.0.0.2", "done", 0),
        (1, "127.0.0.3", "done", 0),
    ]
    table = cluster_cli("ps", "-a").stdout.splitlines()
    assert len([line for line in table if line.startswith("tcp-sum")]) == 1  # one row per run
    assert "2 nodes x" in table[1]


def test_up_exits_with_the_masters_exit_code(cluster_cli: Cli, project: Path) -> None:
    write_task(
        project,
        """
        nodes: 2
        commands:
          - echo "rank $DSTACK_NODE_RANK of $IACRUN_NODES_NUM gpus $DSTACK_GPUS_NUM"
          - if [ "$DSTACK_NODE_RANK" = 0 ]; then exit 3; fi
          - sleep 300
        """,
    )
    ended = cluster_cli("up", "-y", "-n", "codes", "task.dstack.yml", timeout=180)
    assert ended.returncode == 3, ended.stderr
    assert "rank 0 of 2 gpus 0" in ended.stdout
    run = record(cluster_cli, "codes")
    assert (run["status"], run["exit_code"]) == ("failed", 3)
    # the master's end ended the run: the worker was stopped
    nodes = nodes_json(cluster_cli, "codes")
    assert [n["status"] for n in nodes] == ["failed", "terminated"]
    assert nodes[0]["exit_code"] == 3


SLEEPER = """
nodes: 2
commands:
  - sleep 300 &
  - echo $! > "$IACRUN_RUN_DIR/child.pid"
  - echo "rank $DSTACK_NODE_RANK started"
  - sleep 300
"""


def _started(cli: Cli, name: str) -> list[dict[str, Any]]:
    """Every node's job of `name` once each has written its child's pid."""
    nodes: list[dict[str, Any]] = []

    def written() -> bool:
        nodes[:] = nodes_json(cli, name)
        return len(nodes) == 2 and all(
            (Path(n["run_dir"]) / "child.pid").is_file()
            and (Path(n["run_dir"]) / "child.pid").read_text().strip()
            for n in nodes
        )

    wait_for(written, timeout=90, what="both nodes started")
    return nodes


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


def test_killing_one_nodes_job_fails_the_run_and_stops_the_other(
    cluster_cli: Cli, project: Path
) -> None:
    write_task(project, SLEEPER)
    assert cluster_cli("up", "-y", "-d", "-n", "killed", "task.dstack.yml").returncode == 0
    nodes = _started(cluster_cli, "killed")
    master_child = int((Path(nodes[0]["run_dir"]) / "child.pid").read_text())
    # the worker's job dies as a whole: its process group, killed on its host
    pgid = int((Path(nodes[1]["run_dir"]) / "pgid").read_text())
    os.killpg(pgid, signal.SIGKILL)
    wait_for(
        lambda: record(cluster_cli, "killed")["status"] == "failed",
        timeout=90,
        what="the run failed",
    )
    run = record(cluster_cli, "killed")
    assert run["reason"].startswith("node 1 failed"), run["reason"]
    # the failing node's exit code: the master's was only the stop's
    assert (run["reason"], run["exit_code"]) == ("node 1 failed: exited (137)", 137)
    wait_for(lambda: not _alive(master_child), timeout=15, what="the master's job ended")
    ended = nodes_json(cluster_cli, "killed")
    assert [n["status"] for n in ended] == ["terminated", "failed"]
    assert "node 1 failed" in (ended[0]["reason"] or "")


def test_stop_ends_every_node(cluster_cli: Cli, project: Path) -> None:
    write_task(project, SLEEPER)
    assert cluster_cli("up", "-y", "-d", "-n", "stopped", "task.dstack.yml").returncode == 0
    nodes = _started(cluster_cli, "stopped")
    children = [int((Path(n["run_dir"]) / "child.pid").read_text()) for n in nodes]
    assert all(_alive(pid) for pid in children)
    done = cluster_cli("stop", "stopped", timeout=120)
    assert done.returncode == 0, done.stderr
    run = record(cluster_cli, "stopped")
    assert (run["status"], run["reason"]) == ("terminated", "stopped by user")
    wait_for(lambda: not any(_alive(pid) for pid in children), timeout=15, what="both ended")
    assert [n["status"] for n in nodes_json(cluster_cli, "stopped")] == ["terminated"] * 2
    # each node's log was kept here before the run closed
    shutil.rmtree(nodes[1]["run_dir"])
    kept = cluster_cli("logs", "--node", "1", "stopped")
    assert kept.stdout.splitlines()[0] == "rank 1 started", kept.stderr


def test_two_nodes_need_two_free_hosts(cli: Cli, project: Path, two_sshd: list[Sshd]) -> None:
    configure(cli, [host_entry(two_sshd[0], "node-a")])
    write_task(project, "nodes: 2\ncommands: [echo hi]\n")
    refused = cli("up", "-y", "task.dstack.yml")
    assert refused.returncode != 0
    assert "nodes: 2 needs 2 free hosts that fit; 1 found" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr


@pytest.fixture
def third_sshd(tmp_path: Path) -> Iterator[Sshd]:
    """A third host, node-c on 127.0.0.4, for one test."""
    _require_sshd()
    server = Sshd(tmp_path / "sshd-c", address="127.0.0.4")
    try:
        yield server.start()
    finally:
        server.stop()


def test_two_runs_submitted_at_once_on_three_hosts_never_share_one(
    cluster_cli: Cli, third_sshd: Sshd, two_sshd: list[Sshd], project: Path
) -> None:
    """Two `up` processes at once, each a 2-node run, three hosts: one run gets two hosts, the
    other is refused with one line (no two free hosts are left for it), and no host is given
    to both, though each supervisor chose its hosts in a process of its own."""
    entries = [host_entry(s, n) for s, n in zip(two_sshd, ("node-a", "node-b"), strict=True)]
    configure(cluster_cli, [*entries, host_entry(third_sshd, "node-c")])
    write_task(project, SLEEPER)
    ups = [cluster_cli.popen("up", "-y", "-d", "-n", n, "task.dstack.yml") for n in ("l", "r")]
    outs = [p.communicate(timeout=120) for p in ups]
    submitted = [n for n, p in zip(("l", "r"), ups, strict=True) if p.returncode == 0]
    for p, (_, err) in zip(ups, outs, strict=True):
        assert p.returncode == 0 or len(err.decode().strip().splitlines()) == 1, err

    def settled() -> bool:
        return all(record(cluster_cli, n)["status"] in ("running", "failed") for n in submitted)

    wait_for(settled, timeout=120, what="both runs past provisioning")
    running = [n for n in submitted if record(cluster_cli, n)["status"] == "running"]
    assert len(running) == 1, [record(cluster_cli, n) for n in submitted]
    for name in submitted:
        run = record(cluster_cli, name)
        if run["status"] == "failed":
            assert "\n" not in run["reason"] and "free" in run["reason"], run["reason"]
    held = [(n["address"], n["status"]) for n in nodes_json(cluster_cli, running[0])]
    assert len({a for a, _ in held}) == 2
    assert all(status == "running" for _, status in held)
