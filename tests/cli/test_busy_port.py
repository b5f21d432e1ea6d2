"""A local port taken after `up` checked it, or before `attach` forwards it: never a silent run.

`up` refuses busy ports before it submits; another program can still take one between that check
and the forward. A run `up` started is then stopped, saying why; a run `attach` follows goes on,
and the CLI says how to attach with another port.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from iacrun.orchestrator.host.ports import check_local_ports_free
from tests.cli.test_signals import record
from tests.conftest import Cli, write_task
from tests.orchestrator.host.test_e2e import free_port, wait_for


def serving_task(project: Path, task_port: int) -> None:
    write_task(
        project,
        f"""
        type: task
        ports: [{task_port}]
        commands:
          - python3 -m http.server {task_port} --bind 127.0.0.1
        """,
    )


@pytest.fixture
def taken() -> Iterator[socket.socket]:
    """A listening socket that holds a local port (`taken.getsockname()[1]`)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock


def take_right_after_the_check(monkeypatch: pytest.MonkeyPatch, port: int) -> list[socket.socket]:
    """`up`'s port check passes, then another program takes `port` at once."""
    import iacrun.cli.attach

    held: list[socket.socket] = []

    def check_then_take(ports: object, backends: set[str]) -> None:
        check_local_ports_free([port])
        sock = socket.socket()
        sock.bind(("127.0.0.1", port))
        sock.listen()
        held.append(sock)

    monkeypatch.setattr(iacrun.cli.attach, "check_ports", check_then_take)
    return held


def up_in_process(project: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str]:
    from iacrun.cli.main import app

    monkeypatch.chdir(project)
    result = CliRunner().invoke(app, ["up", "-y", *args], catch_exceptions=False)
    return result.exit_code, result.stderr


def check_up_stops_the_run(
    cli: Cli, project: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    task_port, local_port = free_port(), free_port()
    serving_task(project, task_port)
    held = take_right_after_the_check(monkeypatch, local_port)
    try:
        code, said = up_in_process(
            project,
            monkeypatch,
            "-n",
            name,
            "--port",
            f"{local_port}:{task_port}",
            "task.dstack.yml",
        )
    finally:
        for sock in held:
            sock.close()
    assert code == 1, said
    assert f"local port {local_port} is already in use" in said, said
    assert f"stopping run {name}" in said, said
    wait_for(lambda: record(cli, name).status.is_final, timeout=60, what="the run ended")
    run = record(cli, name)
    assert run.status == "terminated"
    assert run.reason == f"stopped: local port {local_port} was taken before it could be forwarded"


def check_attach_keeps_the_run(cli: Cli, project: Path, taken: socket.socket, name: str) -> None:
    task_port = free_port()
    serving_task(project, task_port)
    assert cli("up", "-y", "-d", "-n", name, "task.dstack.yml").returncode == 0
    wait_for(lambda: record(cli, name).status == "running", timeout=60, what="running")
    busy = taken.getsockname()[1]
    done = cli("attach", name, "--port", f"{busy}:{task_port}")
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"error: local port {busy} is already in use"), lines
    assert f"the run goes on: iacrun attach {name} --port " in lines[0]
    other = int(lines[0].rsplit("--port ", 1)[1].split(":")[0])
    assert other != busy and lines[0].endswith(f"--port {other}:{task_port}")
    assert record(cli, name).status == "running"


def test_up_stops_its_run_when_the_port_is_taken_after_the_check(
    cli: Cli, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    check_up_stops_the_run(cli, project, monkeypatch, "web")


def test_attach_with_a_busy_port_keeps_the_run_and_says_how(
    cli: Cli, project: Path, taken: socket.socket
) -> None:
    check_attach_keeps_the_run(cli, project, taken, "served")
