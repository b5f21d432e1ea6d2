"""The local backend end to end: real CLI processes, real runner, real jobs."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from iacrun.orchestrator.registry import Registry
from tests.conftest import Cli, write_task


def ps(cli: Cli) -> dict[str, dict[str, object]]:
    done = cli("ps", "-a", "--json")
    assert done.returncode == 0, done.stderr
    return {r["name"]: r for r in json.loads(done.stdout)}


def wait_for(predicate: object, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_args_env_and_output(cli: Cli, project: Path) -> None:
    write_task(
        project,
        """
        type: task
        env:
          - GREETING=hello
          - FROM_SHELL
        commands:
          - echo "$GREETING $FROM_SHELL $IACRUN_RUN_NAME $DSTACK_RUN_NAME"
          - printf '[%s]' ${{ run.args }}; echo
          - pwd
        """,
    )
    cli.env["FROM_SHELL"] = "shell-value"
    done = cli("up", "-y", "-n", "greet", "task.dstack.yml", "--epochs=3", "--lr", "0.1", "a b")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "hello shell-value greet greet"
    assert lines[1] == "[--epochs=3][--lr][0.1][a b]"
    assert lines[2].endswith("/code")
    run = ps(cli)["greet"]
    assert run["status"] == "done" and run["exit_code"] == 0 and run["backend"] == "local"
    assert run["price"] == 0.0
    # extra arguments after -- are passed too
    again = cli("up", "-y", "-n", "greet2", "task.dstack.yml", "--", "-y", "--name")
    assert again.returncode == 0 and "[-y][--name]" in again.stdout


def test_failing_command_sets_exit_code(cli: Cli, project: Path) -> None:
    write_task(project, "commands:\n  - echo before\n  - exit 7\n  - echo never\n")
    done = cli("up", "-y", "-n", "fails", "task.dstack.yml")
    assert done.returncode == 7
    assert "before" in done.stdout and "never" not in done.stdout
    run = ps(cli)["fails"]
    assert run["status"] == "failed" and run["reason"] == "exited (7)" and run["exit_code"] == 7


def test_max_duration_ends_a_sleeping_job(cli: Cli, project: Path) -> None:
    write_task(
        project, "commands: ['echo start', 'sleep 120']\nmax_duration: 2s\nstop_duration: 1s\n"
    )
    started = time.monotonic()
    done = cli("up", "-y", "-n", "sleepy", "task.dstack.yml", timeout=60)
    assert time.monotonic() - started < 30
    assert done.returncode != 0
    run = ps(cli)["sleepy"]
    assert run["status"] == "terminated" and run["reason"] == "max duration exceeded"


def _pids_with(marker: str) -> list[int]:
    out = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True, check=False)
    return [int(p) for p in out.stdout.split()]


def test_stop_ends_the_job_and_its_children(cli: Cli, project: Path) -> None:
    write_task(
        project,
        """
        commands:
          - sleep 3117 &
          - bash -c 'sleep 3118' &
          - echo started
          - sleep 3119
        """,
    )
    done = cli("up", "-y", "-d", "-n", "stopme", "task.dstack.yml")
    assert done.returncode == 0, done.stderr
    wait_for(lambda: len(_pids_with("sleep 311[789]")) >= 3)
    stopped = cli("stop", "stopme")
    assert stopped.returncode == 0, stopped.stderr
    assert "terminated (stopped by user)" in stopped.stdout
    wait_for(lambda: not _pids_with("sleep 311[789]"), timeout=10)
    assert ps(cli)["stopme"]["status"] == "terminated"
    # stopping again is harmless
    assert cli("stop", "stopme").returncode == 0
    assert cli("down", "stopme").returncode == 0


def test_logs_resume_from_offset_after_the_cli_was_killed(cli: Cli, project: Path) -> None:
    write_task(
        project,
        """
        commands:
          - for i in $(seq 1 4000); do echo "line-$i"; [ $((i % 200)) != 0 ] || sleep 0.1; done
        """,
    )
    assert cli("up", "-y", "-d", "-n", "chatty", "task.dstack.yml").returncode == 0
    follower = cli.popen("logs", "-f", "chatty")
    assert follower.stdout is not None
    received = b""
    while received.count(b"\n") < 500:
        received += os.read(follower.stdout.fileno(), 65536)
    follower.send_signal(signal.SIGKILL)
    follower.wait()
    received += follower.stdout.read()
    rest = cli("logs", "-f", "chatty", "--offset", str(len(received)), timeout=60)
    assert rest.returncode == 0
    lines = (received.decode() + rest.stdout).splitlines()
    job_lines = [line for line in lines if line.startswith("line-")]
    assert job_lines == [f"line-{i}" for i in range(1, 4001)]
    assert cli("logs", "chatty").stdout.count("line-") == 4000


def test_port_is_forwarded_while_attached(cli: Cli, project: Path) -> None:
    task_port, local_port = free_port(), free_port()
    write_task(
        project,
        f"""
        commands:
          - echo served > index.html
          - python3 -m http.server {task_port} --bind 127.0.0.1
        ports: [{task_port}]
        """,
    )
    attached = cli.popen(
        "up", "-y", "-n", "web", "--port", f"{local_port}:{task_port}", "task.dstack.yml"
    )
    try:
        body = b""

        def reachable() -> bool:
            nonlocal body
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{local_port}/index.html", timeout=2
                ) as r:
                    body = r.read()
                return True
            except OSError:
                return False

        wait_for(reachable, timeout=30)
        assert body == b"served\n"
    finally:
        assert cli("stop", "web").returncode == 0
        attached.wait(timeout=60)


def test_busy_port_is_refused_before_the_job_starts(cli: Cli, project: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        write_task(project, f"commands: [echo]\nports: [{port}]\n")
        done = cli("up", "-y", "task.dstack.yml")
        assert done.returncode == 2
        assert f"local port {port} is already in use" in done.stderr
    assert ps(cli) == {}


def test_retry_resubmits_a_failed_job(cli: Cli, project: Path, tmp_path: Path) -> None:
    marker = tmp_path / "attempts"
    write_task(
        project,
        f"""
        commands:
          - echo attempt >> {marker}
          - test $(wc -l < {marker}) -ge 3 || exit 5
          - echo finally
        retry:
          on_events: [error]
          duration: 2m
        """,
    )
    done = cli("up", "-y", "-n", "flaky", "task.dstack.yml", timeout=90)
    assert done.returncode == 0, done.stderr
    assert marker.read_text().count("attempt") == 3
    assert done.stdout.count("retrying in") == 2 and "finally" in done.stdout
    registry = Registry(Path(cli.env["IACRUN_HOME"]) / "registry.db")
    run = registry.get("flaky")
    assert run.status == "done" and run.attempt == 3
    pending = [e for e in registry.history(run.id) if e.status == "pending"]
    assert [e.reason for e in pending] == [
        "attempt 1 exited (5); retrying",
        "attempt 2 exited (5); retrying",
    ]


def test_retry_gives_up_when_its_duration_ends(cli: Cli, project: Path) -> None:
    write_task(project, "commands: ['exit 4']\nretry:\n  on_events: [error]\n  duration: 4s\n")
    done = cli("up", "-y", "-n", "hopeless", "task.dstack.yml", timeout=60)
    assert done.returncode == 4
    assert ps(cli)["hopeless"]["status"] == "failed"


def test_two_runs_at_once_and_names(cli: Cli, project: Path) -> None:
    write_task(project, "commands: ['sleep 30']\n")
    first = cli("up", "-y", "-d", "--json", "task.dstack.yml")
    second = cli("up", "-y", "-d", "--json", "task.dstack.yml")
    assert first.returncode == 0 and second.returncode == 0
    names = [json.loads(first.stdout)["name"], json.loads(second.stdout)["name"]]
    assert names[0] != names[1]
    import re

    assert all(re.fullmatch(r"[a-z]+-[a-z]+-\d+", n) for n in names)
    wait_for(lambda: all(ps(cli)[n]["status"] == "running" for n in names))
    taken = cli("up", "-y", "-d", "-n", names[0], "task.dstack.yml")
    assert taken.returncode == 2 and "still active" in taken.stderr
    table = cli("ps")
    assert all(n in table.stdout for n in names) and "NAME" in table.stdout
    down = cli("down", "--all")
    assert down.returncode == 0 and down.stdout.count("terminated") == 2


def test_detach_then_attach_gets_the_exit_code(cli: Cli, project: Path) -> None:
    write_task(project, "commands: ['sleep 1', 'echo later', 'exit 3']\n")
    assert cli("up", "-y", "-d", "-n", "later", "task.dstack.yml").returncode == 0
    attached = cli("attach", "later")
    assert attached.returncode == 3
    assert "later" in attached.stdout


def test_python_runs_in_a_fresh_virtualenv(cli: Cli, project: Path) -> None:
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    write_task(
        project,
        f"""
        python: "{version}"
        commands:
          - python -c "import sys; print(sys.prefix, sys.version_info[:2])"
          - pip --version
        """,
    )
    done = cli("up", "-y", "-n", "venv", "task.dstack.yml", timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    prefix = done.stdout.splitlines()
    assert any(
        line.endswith(f"/venv ({sys.version_info.major}, {sys.version_info.minor})")
        for line in prefix
    )


def test_image_without_a_container_engine_says_so(cli: Cli, project: Path) -> None:
    import shutil

    if (
        shutil.which("docker")
        and subprocess.run(["docker", "info"], capture_output=True).returncode == 0
    ):
        pytest.skip("a container engine is running here")
    write_task(project, "image: ubuntu:22.04\ncommands: [echo]\n")
    done = cli("up", "-y", "-n", "img", "task.dstack.yml")
    assert done.returncode == 1
    assert "container engine" in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert "img" not in ps(cli)  # refused before anything is recorded


def test_interrupting_an_attached_up_without_a_terminal_stops_the_run(
    cli: Cli, project: Path
) -> None:
    write_task(project, "commands: ['echo up', 'sleep 3121']\n")
    attached = cli.popen("up", "-y", "-n", "ci-step", "task.dstack.yml")
    wait_for(lambda: bool(_pids_with("sleep 3121")))
    attached.send_signal(signal.SIGINT)
    assert attached.wait(timeout=60) != 0
    assert ps(cli)["ci-step"]["status"] == "terminated"
    assert ps(cli)["ci-step"]["reason"] == "stopped by user"
    wait_for(lambda: not _pids_with("sleep 3121"), timeout=10)


def test_a_run_whose_supervisor_died_is_taken_over(cli: Cli, project: Path) -> None:
    write_task(project, "commands: ['sleep 6', 'echo finished']\n")
    assert cli("up", "-y", "-d", "-n", "orphan", "task.dstack.yml").returncode == 0
    registry = Registry(Path(cli.env["IACRUN_HOME"]) / "registry.db")
    wait_for(lambda: registry.get("orphan").status == "running")
    supervisor = registry.get("orphan").supervisor_pid
    assert supervisor is not None
    os.kill(supervisor, signal.SIGKILL)
    assert ps(cli)["orphan"]["status"] == "running"  # ps notices, and a new supervisor takes over
    assert registry.get("orphan").supervisor_pid not in (None, supervisor)
    wait_for(lambda: ps(cli)["orphan"]["status"] == "done", timeout=30)
    assert "finished" in cli("logs", "orphan").stdout


def test_python_this_machine_lacks_is_one_clear_line(cli: Cli, project: Path) -> None:
    import shutil

    from iacrun.orchestrator.runner.runner import find_python

    missing = next((v for v in ("3.14", "3.9", "3.10") if find_python(v) is None), None)
    if missing is None or shutil.which("uv"):
        pytest.skip("every candidate Python is installed here (or uv can fetch one)")
    write_task(project, f'python: "{missing}"\ncommands: [python --version]\n')
    done = cli("up", "-y", "-n", "nopy", "task.dstack.yml")
    assert done.returncode == 1
    assert f"needs a Python {missing} interpreter on this machine" in done.stderr
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert "nopy" not in ps(cli)  # refused before anything is recorded
