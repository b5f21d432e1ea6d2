"""A run's ports in remote mode: `iacrun up --port` and `iacrun attach --port` (real CLI
processes, logged in to a real `iacrun server` on loopback) listen on 127.0.0.1 here and carry
each connection through the server to the run's port, as the in-process CLI does over SSH: on
the server's local backend, and on an ssh host in the server's config."""

from __future__ import annotations

import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from iacrun.orchestrator.models.runspec import Overrides, build_run_spec
from iacrun.orchestrator.registry import RunRecord
from tests.cli.test_remote import remote, server_record  # noqa: F401  (a fixture)
from tests.conftest import Cli
from tests.orchestrator.host.sshd import Sshd, free_port, sshd_missing
from tests.orchestrator.host.test_e2e import host_entry
from tests.server.conftest import ADMIN_TOKEN, Server, start_server, stop_server, wait_for
from tests.server.serving import HELLO, expected_bytes, fetch, fetch_when_up, write_serving_task


def read_stderr_until(proc: subprocess.Popen[bytes], marker: str, timeout: float = 90.0) -> str:
    """The CLI's stderr until `marker`; fails (never hangs) when it does not come in time."""
    assert proc.stderr is not None
    seen, end = b"", time.monotonic() + timeout
    while marker.encode() not in seen:
        left = end - time.monotonic()
        assert left > 0, f"no {marker!r} in {timeout:.0f}s; got {seen[-500:]!r}"
        ready, _, _ = select.select([proc.stderr], [], [], left)
        if ready:
            chunk = os.read(proc.stderr.fileno(), 65536)
            assert chunk, f"the CLI ended before saying {marker!r}: {seen.decode()}"
            seen += chunk
    return seen.decode()


def end(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def check_served(local: int) -> None:
    """The task's page, a body of megabytes byte for byte, and 20 connections at once."""
    base = f"http://127.0.0.1:{local}"
    assert fetch_when_up(base + "/") == HELLO
    size = 5 * 1024 * 1024 + 3
    assert fetch(f"{base}/bytes/{size}") == expected_bytes(size)
    sizes = [50_000 + 1031 * index for index in range(20)]
    with ThreadPoolExecutor(20) as pool:
        bodies = list(pool.map(lambda s: fetch(f"{base}/bytes/{s}"), sizes))
    assert [len(b) for b in bodies] == sizes
    assert all(b == expected_bytes(s) for b, s in zip(bodies, sizes, strict=True))


def test_attach_port_forwards_through_the_server(
    remote: Cli,  # noqa: F811
    server: Server,
    project: Path,
) -> None:
    task_port, local = free_port(), free_port()
    write_serving_task(project, task_port)
    assert remote("up", "-y", "-d", "-n", "web", "task.dstack.yml").returncode == 0
    wait_for(lambda: server_record(server, "web").status == "running")
    attach = remote.popen("attach", "--port", f"{local}:{task_port}", "web")
    try:
        said = read_stderr_until(attach, f"port {task_port} of the task is at ")
        assert f"port {task_port} of the task is at http://127.0.0.1:{local}" in said
        check_served(local)
        # a port the task does not list: one line, before anything is sent
        other = remote("attach", "--port", f"{free_port()}:{task_port + 1}", "web")
        assert other.returncode == 2
        lines = other.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: --port "), other.stderr
        assert f"but the task listens on {task_port}" in lines[0]
        assert server_record(server, "web").status == "running"
        stopped = remote("stop", "web")
        assert stopped.returncode == 0, stopped.stderr
        assert attach.wait(60) != 0  # the attach ends with the run (stopped: no exit code 0)
    finally:
        end(attach)
    with pytest.raises(OSError):  # and its forward with it
        fetch(f"http://127.0.0.1:{local}/", timeout=5)


def test_up_port_forwards_and_a_busy_local_port_is_one_line(
    remote: Cli,  # noqa: F811
    server: Server,
    project: Path,
) -> None:
    task_port, local = free_port(), free_port()
    write_serving_task(project, task_port)
    up = remote.popen("up", "-y", "-n", "fg", "--port", f"{local}:{task_port}", "task.dstack.yml")
    try:
        read_stderr_until(up, f"port {task_port} of the task is at http://127.0.0.1:{local}")
        assert fetch_when_up(f"http://127.0.0.1:{local}/") == HELLO
        with socket.socket() as taken:  # attach to a port something here holds
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            busy = taken.getsockname()[1]
            done = remote("attach", "--port", f"{busy}:{task_port}", "fg")
        assert done.returncode == 1, done.stderr
        assert "Traceback" not in done.stderr
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, done.stderr
        assert errors[0].startswith(
            f"error: local port {busy} is already in use on 127.0.0.1, so the task's port "
            f"{task_port} cannot be forwarded there; the run goes on: iacrun attach fg --port "
        ), errors
        assert server_record(server, "fg").status == "running"
        assert remote("stop", "fg").returncode == 0
        assert up.wait(60) != 0  # the run was stopped: `up` ends with it
    finally:
        end(up)
    record: RunRecord = server_record(server, "fg")
    assert record.status == "terminated"


@pytest.fixture
def ssh_server(tmp_path: Path) -> Iterator[Server]:
    """A server (SQLite) whose only backend is an ssh host: a real sshd on loopback."""
    reason = sshd_missing()
    if reason is not None:
        pytest.skip(reason)
    with Sshd(tmp_path / "sshd") as sshd:
        home = tmp_path / "server-home"
        home.mkdir()
        config = {"backends": {"local": {"enabled": False}, "ssh": {"hosts": [host_entry(sshd)]}}}
        (home / "config.yml").write_text(yaml.safe_dump(config))
        env = dict(os.environ, IACRUN_SERVER_ADMIN_TOKEN=ADMIN_TOKEN)
        env.pop("IACRUN_DATABASE_URL", None)
        server = start_server(home, env)
        try:
            yield server
        finally:
            admin = server.client()
            for run in admin.runs(active=True):
                admin.stop(run.name)
            registry = server.registry()
            try:
                for run in registry.runs(all_runs=True):
                    if run.host is not None:
                        shutil.rmtree(run.host.run_dir, ignore_errors=True)
            finally:
                registry.close()
                stop_server(server)


@pytest.mark.sshd
@pytest.mark.slow
def test_an_ssh_hosts_run_port_through_the_server(
    cli: Cli, ssh_server: Server, project: Path
) -> None:
    login = cli("login", ssh_server.url, "--token-stdin", input=ADMIN_TOKEN + "\n")
    assert login.returncode == 0, login.stderr
    task_port, local = free_port(), free_port()
    write_serving_task(project, task_port)
    assert cli("up", "-y", "-d", "-n", "far", "task.dstack.yml").returncode == 0
    wait_for(lambda: server_record(ssh_server, "far").status == "running")
    assert server_record(ssh_server, "far").backend == "ssh"
    attach = cli.popen("attach", "--port", f"{local}:{task_port}", "far")
    try:
        read_stderr_until(attach, f"port {task_port} of the task is at http://127.0.0.1:{local}")
        check_served(local)
    finally:
        end(attach)


def test_remote_ps_loads_no_websockets(remote: Cli) -> None:  # noqa: F811
    """websockets comes with a forward only: a remote `ps` stays as light as it was."""
    code = (
        "import sys\n"
        "from iacrun.cli.main import app\n"
        "try:\n"
        "    app(['ps'])\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        "print('LOADED', sorted(m for m in sys.modules if m.split('.')[0] == 'websockets'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=remote.env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "LOADED []" in done.stdout, done.stdout


def test_up_refuses_a_busy_local_port_before_submitting(
    remote: Cli,  # noqa: F811
    server: Server,
    project: Path,
) -> None:
    task_port = free_port()
    write_serving_task(project, task_port)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        out = remote("up", "-y", "-n", "never", "--port", f"{busy}:{task_port}", "task.dstack.yml")
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().splitlines()[-1] == (
        f"error: local port {busy} is already in use on 127.0.0.1; stop what listens there or "
        "map the task's port elsewhere with --port LOCAL:TASK"
    )
    assert server.client().runs(all_runs=True) == []  # nothing was submitted


def test_a_task_port_already_here_is_not_taken_from_the_job(
    remote: Cli,  # noqa: F811
    server: Server,
    project: Path,
) -> None:
    """A server on this machine's loopback runs a local-backend job: its `ports: [T]` is this
    machine's port T already. Attach says so and leaves it to the job (a listener of ours
    there would be refused, or take the job's port), as the in-process local backend does."""
    task_port = free_port()
    write_serving_task(project, task_port)
    assert remote("up", "-y", "-d", "-n", "near", "task.dstack.yml").returncode == 0
    wait_for(lambda: server_record(server, "near").status == "running")
    attach = remote.popen("attach", "near")
    try:
        said = read_stderr_until(attach, f"port {task_port} of the task is at ")
        assert f"port {task_port} of the task is at http://127.0.0.1:{task_port}" in said
        assert fetch_when_up(f"http://127.0.0.1:{task_port}/") == HELLO
        assert remote("stop", "near").returncode == 0
        attach.wait(60)
        assert attach.stderr is not None
        rest = attach.stderr.read().decode()
        assert "error:" not in said + rest, said + rest
    finally:
        end(attach)


@pytest.mark.sshd
@pytest.mark.slow
def test_a_half_close_crosses_the_servers_ssh_connection(ssh_server: Server, project: Path) -> None:
    """The client's end of sending goes through the server and its SSH channel (an EOF) to the
    task on the ssh host, which reads its request's body until it and answers after it."""
    import asyncio

    from tests.server.test_port_tunnels import get, post_until_eof

    task_port = free_port()
    write_serving_task(project, task_port)
    client = ssh_server.client()
    client.submit(build_run_spec(project / "task.dstack.yml", Overrides(name="far")))
    wait_for(lambda: client.get("far").status == "running")
    assert client.get("far").backend == "ssh"

    async def check() -> bytes:
        assert await get(client, "far", task_port, "/") == HELLO  # the task's server is up
        channel = await client.open_port("far", task_port)
        return await post_until_eof(channel)

    assert asyncio.run(check()).endswith(b"\r\n\r\ngot 5000 bytes\n")
