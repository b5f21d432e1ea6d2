"""The CLI in remote mode against a real `iacrun server` process (127.0.0.1, a free port, a home
of its own, stopped by PID): `iacrun login`, then `up`, `ps`, `logs -f`, `stop`, `down` as a
user types them, each a real CLI process; the runs run on the server's local backend."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from iacrun.orchestrator.registry import RunRecord
from iacrun.orchestrator.runner.runner import pid_alive
from tests.cli.conftest import read_until
from tests.cli.test_signals import CI_GRACE, TICKING
from tests.conftest import Cli, write_task
from tests.server.conftest import ADMIN_TOKEN, Server, stop_server, wait_for


@pytest.fixture
def remote(cli: Cli, server: Server) -> Cli:
    """The `cli` fixture's CLI, logged in to the server with the admin token."""
    out = cli("login", server.url, "--token-stdin", input=ADMIN_TOKEN + "\n")
    assert out.returncode == 0, out.stderr
    return cli


def server_record(server: Server, name: str) -> RunRecord:
    registry = server.registry()
    try:
        return registry.get(name)
    finally:
        registry.close()


def server_log(server: Server, name: str) -> bytes:
    """The run's log file as the server's home holds it (the local backend's run folder)."""
    host = server_record(server, name).host
    assert host is not None and host.run_dir
    return (Path(host.run_dir) / "log").read_bytes()


def test_login_checks_the_token_and_stores_it_0600(cli: Cli, server: Server) -> None:
    out = cli("login", server.url, "--token-stdin", input=ADMIN_TOKEN + "\n")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"Logged in to {server.url} (iacrun server ")
    saved = Path(cli.env["IACRUN_HOME"]) / "server.json"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert json.loads(saved.read_text()) == {"url": server.url, "token": ADMIN_TOKEN}
    assert "No runs" in cli("ps").stdout  # the server's (empty) list, through it

    bad = cli("login", server.url, "--token-stdin", input="iacrun_not-a-token\n")
    assert bad.returncode != 0
    assert bad.stderr.strip().splitlines() == [
        "error: the API token is not valid: it is wrong, revoked or expired"
    ]
    assert json.loads(saved.read_text())["token"] == ADMIN_TOKEN  # the good login is kept


def test_up_runs_remotely_and_exits_with_the_jobs_code(
    remote: Cli, server: Server, project: Path
) -> None:
    write_task(
        project,
        """
        commands:
          - printf 'caf\\xc3\\xa9 \\xff\\xfe raw bytes\\n'
          - for i in $(seq 1 200); do echo "line $i of the remote run"; done
          - exit 7
        """,
    )
    out = subprocess.run(
        remote.argv("up", "-y", "-n", "far", "task.dstack.yml"),
        env=remote.env,
        cwd=remote.cwd,
        capture_output=True,
        timeout=120,
    )
    assert out.returncode == 7, out.stderr.decode()
    # the log arrived whole, byte for byte (non-UTF-8 bytes too): stdout carries only the log
    assert out.stdout == server_log(server, "far")
    assert out.stdout.count(b"of the remote run\n") == 200
    err = out.stderr.decode()
    assert "#  BACKEND" in err and "local" in err  # the offers table, from the server's plan
    assert "Submitted run far" in err and "Run far failed: exited (7)" in err
    run = server_record(server, "far")
    assert (run.status, run.exit_code, run.submitted_by) == ("failed", 7, "admin")
    # the working folder went up to the server and the job ran in its copy, not in ours
    assert str(project) not in (run.spec.repo_dir or "")

    listed = json.loads(remote("ps", "-a", "--json").stdout)
    assert [(r["name"], r["status"], r["user"]) for r in listed] == [("far", "failed", "admin")]
    table = remote("ps", "-a").stdout.splitlines()
    assert table[0].split() == [
        "NAME", "BACKEND", "RESOURCES", "PRICE", "STATUS", "USER", "SUBMITTED"
    ]  # fmt: skip
    assert " admin " in table[1]


def test_logs_follow_resumes_exactly_after_the_client_is_killed(
    remote: Cli, server: Server, project: Path
) -> None:
    noisy = (
        "import sys, time; [(sys.stdout.buffer.write(bytes(range(256)) * 64), "
        "sys.stdout.flush(), time.sleep(0.02)) for _ in range(150)]"
    )
    write_task(project, f"commands:\n  - python3 -c '{noisy}'\n")
    assert remote("up", "-y", "-d", "-n", "noisy", "task.dstack.yml").returncode == 0
    follower = remote.popen("logs", "-f", "noisy")
    assert follower.stdout is not None
    got = b""
    while len(got) < 64 * 1024:
        chunk = os.read(follower.stdout.fileno(), 65536)
        assert chunk, follower.stderr.read() if follower.stderr else "the follower ended"
        got += chunk
    follower.send_signal(signal.SIGKILL)
    follower.wait(timeout=10)
    got += follower.stdout.read()  # whatever it wrote before it died is ours too
    follower.stdout.close()
    assert follower.stderr is not None
    follower.stderr.close()
    assert not server_record(server, "noisy").status.is_final  # killed mid-stream

    rest = subprocess.run(
        remote.argv("logs", "-f", "--offset", str(len(got)), "noisy"),
        env=remote.env,
        cwd=remote.cwd,
        capture_output=True,
        timeout=120,
    )
    assert rest.returncode == 0, rest.stderr.decode()
    log = server_log(server, "noisy")
    assert log.startswith(bytes(range(256)) * 64 * 150)  # every byte value, then the end line
    assert got + rest.stdout == log


def test_sigterm_stops_the_remote_run(remote: Cli, server: Server, project: Path) -> None:
    """A CI system cancels `iacrun up` with SIGTERM: the run on the server is stopped."""
    write_task(project, TICKING)
    attached = remote.popen("up", "-y", "-n", "ci-step", "task.dstack.yml")
    read_until(attached, b"tick\n")
    host = server_record(server, "ci-step").host
    assert host is not None and host.run_dir
    child = int((Path(host.run_dir) / "child.pid").read_text())
    attached.send_signal(signal.SIGTERM)
    assert attached.wait(timeout=CI_GRACE) == 143
    assert attached.stderr is not None
    err = attached.stderr.read().decode()
    assert "Got SIGTERM: stopping ci-step" in err
    wait_for(lambda: server_record(server, "ci-step").status.is_final, timeout=60)
    done = server_record(server, "ci-step")
    # as in-process (`stopped: iacrun got SIGTERM`), with who stopped it on the server
    assert (done.status, done.reason) == ("terminated", "stopped by admin: iacrun got SIGTERM")
    wait_for(lambda: not pid_alive(child), timeout=10)


def test_stop_and_down_through_the_server(remote: Cli, server: Server, project: Path) -> None:
    write_task(project, TICKING)
    assert remote("up", "-y", "-d", "-n", "halt", "task.dstack.yml").returncode == 0
    assert remote("up", "-y", "-d", "-n", "gone", "task.dstack.yml").returncode == 0
    wait_for(lambda: server_record(server, "halt").status == "running", timeout=60)
    out = remote("stop", "halt")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("halt: terminated")
    assert server_record(server, "halt").status == "terminated"
    out = remote("down", "gone")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("gone: terminated")
    assert remote("down", "gone").returncode == 0  # safe to repeat
    missing = remote("stop", "nosuch")
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines() == ["error: no run named 'nosuch'; see iacrun ps -a"]
    taken = remote("up", "-y", "-d", "-n", "halt2", "task.dstack.yml")
    assert taken.returncode == 0
    again = remote("up", "-y", "-d", "-n", "halt2", "task.dstack.yml")
    assert again.returncode == 2 and again.stderr.startswith("error: ")


def test_a_revoked_token_is_one_line_and_a_failure(cli: Cli, server: Server, project: Path) -> None:
    admin = server.client()
    made = admin.create_user("dana", "member", token_name="laptop")
    assert made.token is not None
    env = dict(cli.env, IACRUN_SERVER_URL=server.url, IACRUN_TOKEN=made.token.token)

    def iacrun(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            cli.argv(*args), env=env, cwd=cli.cwd, capture_output=True, text=True, timeout=60
        )

    write_task(project, "commands: [echo hi from dana]\n")
    assert iacrun("up", "-y", "-n", "mine", "task.dstack.yml").returncode == 0
    assert json.loads(iacrun("ps", "-a", "--json").stdout)[0]["user"] == "dana"
    admin.revoke_token(made.token.id)
    for args in (("ps",), ("logs", "mine"), ("up", "-y", "task.dstack.yml")):
        out = iacrun(*args)
        assert out.returncode != 0, args
        assert out.stderr.strip().splitlines() == [
            "error: the API token is not valid: it is wrong, revoked or expired"
        ], args
    # --local: this machine's own home, whatever the environment says
    assert "No runs" in iacrun("--local", "ps").stdout


def test_a_server_that_does_not_answer_is_one_line(cli: Cli, server: Server) -> None:
    url = server.url
    stop_server(server)
    time.sleep(0.2)
    env = dict(cli.env, IACRUN_SERVER_URL=url, IACRUN_TOKEN=ADMIN_TOKEN)
    out = subprocess.run(
        cli.argv("ps"), env=env, cwd=cli.cwd, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: the iacrun server at {url} does not")


def test_attach_goes_on_where_the_last_attach_stopped(
    remote: Cli, server: Server, project: Path
) -> None:
    # a run that has ended forwards nothing: its ports are gone (tests/cli/test_remote_ports.py)
    write_task(
        project, "ports: [8000]\ncommands:\n  - for i in $(seq 1 50); do echo row $i; done\n"
    )
    assert remote("up", "-y", "-d", "-n", "again", "task.dstack.yml").returncode == 0
    wait_for(lambda: server_record(server, "again").status.is_final, timeout=60)
    first = remote("attach", "again")
    assert first.returncode == 0, first.stderr
    assert first.stdout.encode() == server_log(server, "again")
    assert "Run again done" in first.stderr
    assert "port 8000 of the task" not in first.stderr
    second = remote("attach", "again")  # nothing new since: no line twice
    assert (second.returncode, second.stdout) == (0, "")
    replay = remote("attach", "--from-start", "again")
    assert replay.stdout.encode() == server_log(server, "again")
    ended = remote("attach", "--port", "9000:8000", "again")
    assert (ended.returncode, ended.stdout) == (0, "")
    assert "port 8000 of the task" not in ended.stderr
