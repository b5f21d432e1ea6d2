"""`iacrun stop -x` on the ssh backend, end to end: a real sshd on loopback, the real runner
reached through it; one host, and a two-node run (every node aborted). The jobs trap SIGTERM:
an abort never lets the trap run, and leaves no process of any node's job."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.cli.test_stop_abort import EXITS, TRAPPING, Job, group_alive
from tests.conftest import Cli, write_task
from tests.orchestrator.host import test_e2e, test_e2e_multinode
from tests.orchestrator.host.test_e2e import pid_alive, record, wait_for
from tests.orchestrator.host.test_e2e_multinode import nodes_json

pytestmark = [pytest.mark.sshd, pytest.mark.slow]

# the fixtures of the ssh end-to-end tests: one host (`loop`), or two (node-a, node-b)
ssh_cli = test_e2e.ssh_cli
two_sshd = test_e2e_multinode.two_sshd
cluster_cli = test_e2e_multinode.cluster_cli


def test_stop_x_over_ssh_kills_the_job_without_its_trap(ssh_cli: Cli, project: Path) -> None:
    write_task(project, TRAPPING.format(grace="60s", on_term=EXITS))
    assert ssh_cli("up", "-y", "-d", "-n", "ssh-aborted", "task.dstack.yml").returncode == 0
    job = Job(ssh_cli, "ssh-aborted")
    done = ssh_cli("stop", "-x", "ssh-aborted", timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ssh-aborted: terminated (aborted by user)"
    assert "caught TERM" not in job.log()
    run = record(ssh_cli, "ssh-aborted")
    assert (run["status"], run["exit_code"], run["abort"]) == (
        "terminated",
        128 + signal.SIGKILL,
        True,
    )
    assert job.gone()
    # the log kept here before the machine was given back says how it ended
    kept = ssh_cli("logs", "ssh-aborted")
    assert "[iacrun] run terminated: aborted by user" in kept.stdout


#: a two-node job that traps SIGTERM on every node
NODES_TRAPPING = "nodes: 2\n" + TRAPPING.format(grace="60s", on_term=EXITS)


def test_stop_x_aborts_every_node(cluster_cli: Cli, project: Path) -> None:
    write_task(project, NODES_TRAPPING)
    assert cluster_cli("up", "-y", "-d", "-n", "nodes-aborted", "task.dstack.yml").returncode == 0

    def started() -> bool:
        nodes = nodes_json(cluster_cli, "nodes-aborted")
        return len(nodes) == 2 and all(
            "started" in _read(Path(n["run_dir"]) / "log")
            and _read(Path(n["run_dir"]) / "pgid").strip()
            for n in nodes
        )

    wait_for(started, timeout=90, what="both nodes started")
    dirs = [Path(n["run_dir"]) for n in nodes_json(cluster_cli, "nodes-aborted")]
    groups = [int(_read(d / "pgid")) for d in dirs]
    children = [int(_read(d / "child.pid")) for d in dirs]
    done = cluster_cli("stop", "-x", "nodes-aborted", timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "nodes-aborted: terminated (aborted by user)"
    ended = nodes_json(cluster_cli, "nodes-aborted")
    assert [(n["status"], n["exit_code"]) for n in ended] == [("terminated", 137)] * 2
    for folder in dirs:
        assert "caught TERM" not in _read(folder / "log")
    assert not any(group_alive(g) for g in groups)
    assert not any(pid_alive(c) for c in children)


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""
