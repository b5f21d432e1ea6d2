"""A real `iacrun server` process on 127.0.0.1 with a free port and a home of its own, started
per test and stopped by its PID; clients talk to it over HTTP as a user's would."""

from __future__ import annotations

import functools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from iacrun.client import Client
from iacrun.orchestrator.registry import Registry

ADMIN_TOKEN = "iacrun_test-admin-token-0123456789abcdefghijklmnopqrstuv"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    url: str
    home: Path
    proc: subprocess.Popen[bytes]
    admin_token: str
    env: dict[str, str] = field(default_factory=dict)
    output: list[str] = field(default_factory=list)
    clients: list[Client] = field(default_factory=list)

    def client(self, token: str | None = None, **kwargs: object) -> Client:
        made = Client(self.url, self.admin_token if token is None else token, **kwargs)  # type: ignore[arg-type]
        self.clients.append(made)
        return made

    def registry(self) -> Registry:
        """The server's database, opened beside it (as a second server process would)."""
        return Registry(self.database_url or self.home / "registry.db")

    @property
    def database_url(self) -> str | None:
        return self.env.get("IACRUN_DATABASE_URL") or None


@functools.cache
def server_command() -> tuple[str, ...]:
    """`iacrun server` when the CLI has the command, else the module it calls (the same
    `serve`)."""
    cli = (sys.executable, "-m", "iacrun.cli.main", "server")
    found = subprocess.run([*cli, "--help"], capture_output=True, check=False, timeout=60)
    return cli if found.returncode == 0 else (sys.executable, "-m", "iacrun.server.main")


def start_server(home: Path, env: dict[str, str], timeout: float = 60.0) -> Server:
    port = free_port()
    proc = subprocess.Popen(
        [*server_command(), "--host", "127.0.0.1", "--port", str(port)],
        env={**env, "IACRUN_HOME": str(home), "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    server = Server(
        f"http://127.0.0.1:{port}", home, proc, env.get("IACRUN_SERVER_ADMIN_TOKEN", ""), env=env
    )
    assert proc.stdout is not None
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        line = proc.stdout.readline().decode(errors="replace")
        if not line and proc.poll() is not None:
            raise AssertionError(f"the server exited: {''.join(server.output)}")
        server.output.append(line)
        if "listening on" in line:
            return server
    stop_server(server)
    raise AssertionError(f"the server did not start: {''.join(server.output)}")


def stop_server(server: Server) -> int:
    for client in server.clients:
        client.close()
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(30)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait(10)
    if server.proc.stdout is not None:
        server.output.append(server.proc.stdout.read().decode(errors="replace"))
        server.proc.stdout.close()
    return server.proc.returncode


#: the databases the server suite runs on: the SQLite file in the server's home, and a fresh
#: database on the session's real PostgreSQL (tests/pg.py: `pg_url`)
DATABASES = ["sqlite", "pg"]


@pytest.fixture(params=DATABASES)
def server_env(request: pytest.FixtureRequest) -> dict[str, str]:
    env = dict(os.environ)
    env["IACRUN_SERVER_ADMIN_TOKEN"] = ADMIN_TOKEN
    env.pop("IACRUN_DATABASE_URL", None)
    # a stopped server's runs are taken over by the next one this long after its last beat
    env["IACRUN_SERVER_LEASE_SECONDS"] = "3"
    if request.param != "sqlite":  # e.g. "postgresql": a fixture that gives a database URL
        env["IACRUN_DATABASE_URL"] = str(request.getfixturevalue(f"{request.param}_url"))
    return env


@pytest.fixture
def server(tmp_path: Path, server_env: dict[str, str]) -> Iterator[Server]:
    running = start_server(tmp_path / "server-home", server_env)
    yield running
    # never leave a run behind: the server's runs are stopped through it
    try:
        admin = Client(running.url, ADMIN_TOKEN)
        for run in admin.runs(active=True):
            admin.stop(run.name)
        admin.close()
    finally:
        stop_server(running)


def wait_for(predicate: Callable[[], object], timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")
