"""A multi-node run through a real `iacrun server` process (remote mode): the server's home
lists two ssh hosts (two sshd on 127.0.0.2 and 127.0.0.3), the CLI submits a `nodes: 2` task and
follows the master; every node is served: `ps --json` lists each node's job, `logs --node K`
and `logs --all-nodes` (plain and following a live run) print what embedded mode prints, and the
API's log stream of node 1 resumes by Last-Event-ID."""

from __future__ import annotations

import base64
import json
import os
import queue
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from iacrun.orchestrator.host.cluster import read_nodes
from tests.conftest import Cli, write_task
from tests.orchestrator.host.sshd import Sshd, free_port
from tests.orchestrator.host.test_e2e import configure, host_entry, remote_run_dirs, wait_for
from tests.orchestrator.host.test_e2e_multinode import (  # noqa: F401  (two_sshd: a fixture)
    ADDRESSES,
    EXAMPLES,
    two_sshd,
)
from tests.server.conftest import ADMIN_TOKEN, Server, start_server, stop_server
from tests.server.dashboard.support import signed_in

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


@pytest.fixture
def remote_cli(cli: Cli, cluster_server: Server, two_sshd: list[Sshd]) -> Iterator[Cli]:  # noqa: F811
    """The CLI logged in to the cluster server; its own home (for `--local`) lists the same
    two hosts, so one test can run a task both ways, one after the other."""
    configure(cli, [host_entry(two_sshd[0], "node-a"), host_entry(two_sshd[1], "node-b")])
    login = cli("login", cluster_server.url, "--token-stdin", input=ADMIN_TOKEN + "\n")
    assert login.returncode == 0, login.stderr
    yield cli
    cli("--local", "down", "--all", timeout=120)
    for run_dir in remote_run_dirs(cli):
        for folder in (run_dir, f"{run_dir}-node1"):
            shutil.rmtree(folder, ignore_errors=True)


def _nodes(cli: Cli, name: str, *mode: str) -> list[dict[str, Any]]:
    listed = cli(*mode, "ps", "-a", "--json")
    assert listed.returncode == 0, listed.stderr
    run = next(r for r in json.loads(listed.stdout) if r["name"] == name)
    nodes: list[dict[str, Any]] = run["nodes"]
    return nodes


def _tcp_sum(project: Path) -> None:
    for name in ("tcp-sum.dstack.yml", "tcp_sum.py"):
        shutil.copy(EXAMPLES / name, project / name)


def _sse(response: httpx.Response) -> list[dict[str, str]]:
    events = []
    for block in response.text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if line and line[0] != ":")
        if fields:
            events.append(fields)
    return events


def test_every_node_of_a_two_node_run_is_served(
    remote_cli: Cli, cluster_server: Server, project: Path
) -> None:
    _tcp_sum(project)
    port = free_port(ADDRESSES[0])
    up = remote_cli("up", "-y", "-e", f"SUM_PORT={port}", "tcp-sum.dstack.yml", timeout=180)
    assert up.returncode == 0, up.stderr
    assert "sum of 2 ranks: 3" in up.stdout
    assert "rank 1 sent" not in up.stdout  # `up` follows the master

    worker = remote_cli("logs", "--node", "1", "tcp-sum")
    assert worker.returncode == 0, worker.stderr
    assert worker.stdout.startswith(
        "rank 1 of 2; master 127.0.0.2; nodes 127.0.0.2,127.0.0.3\nrank 1 sent 2\n"
    )
    assert (
        remote_cli("logs", "--node", "1", "--offset", "7", "tcp-sum").stdout == (worker.stdout[7:])
    )
    assert remote_cli("logs", "-f", "--node", "1", "tcp-sum").stdout == worker.stdout
    master = remote_cli("logs", "tcp-sum").stdout
    assert remote_cli("logs", "--node", "0", "tcp-sum").stdout == master

    every = remote_cli("logs", "--all-nodes", "tcp-sum")
    assert every.returncode == 0, every.stderr
    assert every.stdout == "".join(
        f"[{rank}] {line}\n"
        for rank, text in ((0, master), (1, worker.stdout))
        for line in text.splitlines()
    )
    assert remote_cli("logs", "-f", "--all-nodes", "tcp-sum").stdout == every.stdout

    nodes = _nodes(remote_cli, "tcp-sum")
    assert [(n["rank"], n["address"], n["status"], n["exit_code"]) for n in nodes] == [
        (0, "127.0.0.2", "done", 0),
        (1, "127.0.0.3", "done", 0),
    ]
    assert "2 nodes x" in remote_cli("ps", "-a").stdout

    # a node the run does not have: one line, exit 2, plain and followed
    for args in (("--node", "2"), ("-f", "--node", "2"), ("--node", "-1")):
        bad = remote_cli("logs", *args, "tcp-sum")
        rank = args[-1]
        assert bad.returncode == 2, bad.stderr
        assert bad.stderr.splitlines() == [
            f"error: node {rank}: run tcp-sum has 2 nodes (ranks 0..1)"
        ], bad.stderr

    # the API: every node's record, node 1's log by offset and as SSE resumed by Last-Event-ID
    client = cluster_server.client()
    assert [(n.rank, n.host.address, n.status) for n in client.nodes("tcp-sum")] == [
        (0, "127.0.0.2", "done"),
        (1, "127.0.0.3", "done"),
    ]
    data = worker.stdout.encode()
    assert client.logs("tcp-sum", 5, node=1).data == data[5:]
    assert b"".join(client.follow("tcp-sum", 9, node=1)) == data[9:]
    api = httpx.Client(
        base_url=f"{cluster_server.url}/api/v1",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    with api:
        stream = api.get(
            "/runs/tcp-sum/logs/stream", params={"node": 1}, headers={"Last-Event-ID": "11"}
        )
        assert stream.status_code == 200, stream.text
        events = _sse(stream)
        logged = [e for e in events if e["event"] == "log"]
        assert b"".join(base64.b64decode(e["data"]) for e in logged) == data[11:]
        assert int(logged[-1]["id"]) == len(data)  # ids are byte offsets
        assert events[-1]["event"] == "end"
        for path in ("/runs/tcp-sum/logs", "/runs/tcp-sum/logs/stream"):
            refused = api.get(path, params={"node": 2})
            assert refused.status_code == 400
            assert refused.json()["error"]["message"] == (
                "node 2: run tcp-sum has 2 nodes (ranks 0..1)"
            )
        assert api.get("/runs/nothing/nodes").status_code == 404

    # the dashboard's run page lists the nodes, each with a link to its log
    session = signed_in(cluster_server)
    try:
        html = session.get("/runs/tcp-sum").text
        assert 'id="nodes-h"' in html and "127.0.0.3" in html, html
        link = "/api/v1/runs/tcp-sum/logs?node=1"
        assert f'href="{link}"' in html
        assert session.get(link).content == data
    finally:
        session.close()


def test_embedded_and_remote_print_the_same(remote_cli: Cli, project: Path) -> None:
    """The same two-node task, in-process then through the server: the same logs, node by
    node and all together, the same one-line refusal of a node the run lacks, and the same
    nodes in `ps --json` (but their run folders). The two runs have names of their own: on a
    shared ssh host, runs of two homes with one name and id would share a folder."""
    _tcp_sum(project)
    shown: dict[str, list[object]] = {}
    for mode, name in (("--local", "sum-here"), ("--remote", "sum-there")):
        args = ("--local",) if mode == "--local" else ()
        port = free_port(ADDRESSES[0])
        up = remote_cli(
            *args,
            "up",
            "-y",
            "-n",
            name,
            "-e",
            f"SUM_PORT={port}",
            "tcp-sum.dstack.yml",
            timeout=180,
        )
        assert up.returncode == 0, (mode, up.stderr)
        outputs: list[object] = [
            remote_cli(*args, "logs", *opts, name).stdout
            for opts in ((), ("--node", "1"), ("--all-nodes",), ("-f", "--all-nodes"))
        ]
        bad = remote_cli(*args, "logs", "--node", "5", name)
        outputs.append((bad.returncode, bad.stderr.replace(name, "RUN")))
        nodes = _nodes(remote_cli, name, *args)
        outputs.append([{k: v for k, v in n.items() if k != "run_dir"} for n in nodes])
        shown[mode] = outputs
    assert shown["--local"] == shown["--remote"]
    assert "[1] rank 1 sent 2" in str(shown["--remote"][2])
    assert shown["--remote"][4] == (2, "error: node 5: run RUN has 2 nodes (ranks 0..1)\n")


LIVE = """
nodes: 2
commands:
  - echo "rank $DSTACK_NODE_RANK waiting"
  - while [ ! -e "$GO" ]; do sleep 0.2; done
  - echo "rank $DSTACK_NODE_RANK done"
"""


def _lines(proc: subprocess.Popen[bytes]) -> queue.Queue[str | None]:
    """The process's stdout lines as they come (None at its end)."""
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.decode().rstrip("\n"))
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    return lines


def _until(lines: queue.Queue[str | None], wanted: set[str], seen: list[str]) -> None:
    while not wanted <= set(seen):
        line = lines.get(timeout=90)
        assert line is not None, seen
        seen.append(line)


def test_following_every_node_of_a_live_run(remote_cli: Cli, project: Path, tmp_path: Path) -> None:
    """`logs -f --all-nodes` and `logs -f --node 1` through the server show each node's lines
    while the run waits for a file the test creates only once they were seen: live, not after
    the end; then they end with the run."""
    go = tmp_path / "go"
    write_task(project, LIVE)
    up = remote_cli("up", "-y", "-d", "-n", "live", "-e", f"GO={go}", "task.dstack.yml")
    assert up.returncode == 0, up.stderr
    every = remote_cli.popen("logs", "-f", "--all-nodes", "live")
    worker = remote_cli.popen("logs", "-f", "--node", "1", "live")
    try:
        every_lines, worker_lines = _lines(every), _lines(worker)
        seen_every: list[str] = []
        seen_worker: list[str] = []
        _until(every_lines, {"[0] rank 0 waiting", "[1] rank 1 waiting"}, seen_every)
        _until(worker_lines, {"rank 1 waiting"}, seen_worker)
        assert every.poll() is None and worker.poll() is None  # still following
        assert _nodes(remote_cli, "live")[1]["status"] == "running"
        go.touch()
        assert every.wait(timeout=120) == 0 and worker.wait(timeout=120) == 0
        for lines, seen in ((every_lines, seen_every), (worker_lines, seen_worker)):
            while (line := lines.get(timeout=30)) is not None:
                seen.append(line)
        for rank in (0, 1):  # each node's lines in order, the two nodes' interleaved
            assert [line for line in seen_every if line.startswith(f"[{rank}] rank")] == [
                f"[{rank}] rank {rank} waiting",
                f"[{rank}] rank {rank} done",
            ], seen_every
        assert all(line.startswith(("[0] ", "[1] ")) for line in seen_every), seen_every
        assert seen_worker[:2] == ["rank 1 waiting", "rank 1 done"], seen_worker
    finally:
        for proc in (every, worker):
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def ended() -> bool:
        listed = json.loads(remote_cli("ps", "-a", "--json").stdout)
        return next(r for r in listed if r["name"] == "live")["status"] == "done"

    wait_for(ended, timeout=60, what="the run done")
