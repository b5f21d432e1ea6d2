"""A multi-node run through a real `iacrun server` process (remote mode): the server's home
lists two ssh hosts (two sshd on 127.0.0.2 and 127.0.0.3), the CLI submits a `nodes: 2` task,
follows the master and exits with its code; `ps --json` and `logs` behave, and the per-node
logs (`--node`, `--all-nodes`) are refused in one line, as the server serves the master's."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from iacrun.orchestrator.host.cluster import read_nodes
from tests.conftest import Cli, write_task
from tests.orchestrator.host.sshd import Sshd
from tests.orchestrator.host.test_e2e import host_entry
from tests.orchestrator.host.test_e2e_multinode import two_sshd  # noqa: F401  (a fixture)
from tests.server.conftest import ADMIN_TOKEN, Server, start_server, stop_server

pytestmark = [pytest.mark.sshd, pytest.mark.slow]


@pytest.fixture
def cluster_server(
    tmp_path: Path,
    two_sshd: list[Sshd],  # noqa: F811
) -> Iterator[Server]:
    """A server (SQLite) whose home's config lists node-a and node-b and no local backend."""
    home = tmp_path / "server-home"
    home.mkdir()
    hosts = [host_entry(two_sshd[0], "node-a"), host_entry(two_sshd[1], "node-b")]
    config = {"backends": {"local": {"enabled": False}, "ssh": {"hosts": hosts}}}
    (home / "config.yml").write_text(yaml.safe_dump(config))
    env = dict(os.environ, IACRUN_SERVER_ADMIN_TOKEN=ADMIN_TOKEN)
    env.pop("IACRUN_DATABASE_URL", None)
    server = start_server(home, env)
    yield server
    registry = server.registry()
    try:
        for run in registry.runs(all_runs=True):
            for node in read_nodes(run.local_dir):
                shutil.rmtree(node.host.run_dir, ignore_errors=True)
    finally:
        registry.close()
        stop_server(server)


def test_a_two_node_ssh_run_through_the_server(
    cli: Cli, cluster_server: Server, project: Path
) -> None:
    login = cli("login", cluster_server.url, "--token-stdin", input=ADMIN_TOKEN + "\n")
    assert login.returncode == 0, login.stderr
    write_task(
        project,
        """
        nodes: 2
        commands:
          - echo "rank $DSTACK_NODE_RANK of $DSTACK_NODES_NUM; master $DSTACK_MASTER_NODE_IP"
          - if [ "$DSTACK_NODE_RANK" = 0 ]; then exit 4; fi
        """,
    )
    up = cli("up", "-y", "-n", "pair", "task.dstack.yml", timeout=180)
    assert up.returncode == 4, up.stderr
    assert "rank 0 of 2; master 127.0.0.2" in up.stdout
    assert "rank 1 of" not in up.stdout  # `up` follows the master

    listed = cli("ps", "-a", "--json")
    assert listed.returncode == 0, listed.stderr
    (run,) = json.loads(listed.stdout)
    assert (run["name"], run["status"], run["exit_code"]) == ("pair", "failed", 4)
    assert run["backend"] == "ssh" and run["instance_type"] == "node-a"
    assert "node_hosts" not in run
    assert [(n["rank"], n["address"], n["status"]) for n in run["nodes"]] == [
        (0, "127.0.0.2", "failed")
    ]
    table = cli("ps", "-a").stdout
    assert "2 nodes x" in table

    logs = cli("logs", "pair")
    assert logs.returncode == 0, logs.stderr
    assert "rank 0 of 2; master 127.0.0.2" in logs.stdout
    why = "is local-only: the server's API serves the log of a run's master (node 0)"
    for option, refused in ((("--node", "1"), "--node"), (("--all-nodes",), "--all-nodes")):
        out = cli("logs", *option, "pair")
        assert out.returncode == 2
        assert out.stderr.strip().splitlines() == [f"error: {refused} {why}"], out.stderr
    assert cli("logs", "--node", "0", "pair").stdout == logs.stdout  # the master is served

    # the server ran both nodes: the worker's log is in its home beside the master's
    registry = cluster_server.registry()
    try:
        record = registry.get("pair")
    finally:
        registry.close()
    assert (Path(record.local_dir) / "log.node1").read_text().startswith("rank 1 of 2")
