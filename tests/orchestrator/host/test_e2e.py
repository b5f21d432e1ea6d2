"""The `ssh` backend end to end: the real CLI, a real sshd on 127.0.0.1, the real runner.

On loopback the "remote" host is this machine, reached only through sshd: run folders land in the
sshd user's home (`~/.iacrun/runs/NAME-ID`) and are removed after each test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from iacrun.orchestrator.errors import RunNotFoundError
from iacrun.orchestrator.paths import home_tag
from iacrun.orchestrator.registry import Registry
from tests.conftest import Cli, write_task
from tests.orchestrator.host.sshd import Sshd, free_port, keygen

pytestmark = [pytest.mark.sshd, pytest.mark.slow]


def configure(cli: Cli, hosts: list[dict[str, Any]]) -> None:
    home = Path(cli.env["IACRUN_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    config = {"backends": {"local": {"enabled": False}, "ssh": {"hosts": hosts}}}
    (home / "config.yml").write_text(yaml.safe_dump(config))


def host_entry(sshd: Sshd, name: str = "loop", **overrides: Any) -> dict[str, Any]:
    entry = sshd.host_settings(name=name).model_dump(exclude_none=True)
    entry.update(overrides)
    return entry


@pytest.fixture
def ssh_cli(cli: Cli, sshd: Sshd) -> Iterator[Cli]:
    """The CLI with one ssh host, `loop`, and no local backend."""
    configure(cli, [host_entry(sshd)])
    yield cli
    cli("down", "--all", timeout=120)
    for run_dir in remote_run_dirs(cli):
        shutil.rmtree(run_dir, ignore_errors=True)


def remote_run_dirs(cli: Cli) -> list[str]:
    db = Path(cli.env["IACRUN_HOME"]) / "registry.db"
    if not db.exists():
        return []
    registry = Registry(db)
    try:
        return [r.host.run_dir for r in registry.runs(all_runs=True) if r.host]
    finally:
        registry.close()


def record(cli: Cli, name: str) -> dict[str, Any]:
    registry = Registry(Path(cli.env["IACRUN_HOME"]) / "registry.db")
    try:
        return registry.get(name).model_dump()
    finally:
        registry.close()


def wait_for(predicate: Callable[[], object], timeout: float = 30.0, what: str = "") -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"not in {timeout}s: {what}")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


def numbers(output: str) -> list[int]:
    return [int(line) for line in output.splitlines() if line.isdigit()]


# ----------------------------------------------------------------------------- running


def test_the_tasks_shell_and_setup_run_on_the_host(ssh_cli: Cli, project: Path) -> None:
    """`shell: bash` runs the commands with bash on the host (arrays are bash, not sh), after
    `setup`; the runner that does it is the same file as locally, shipped over SSH."""
    write_task(
        project,
        """
        type: task
        shell: bash
        setup:
          - echo prepared > ready.txt
        commands:
          - words=(alpha beta); echo "${words[1]} $(cat ready.txt) $BASH_VERSION" | cut -c1-20
        """,
    )
    done = ssh_cli("up", "-y", "-n", "shelly", "task.dstack.yml")
    assert done.returncode == 0, done.stderr
    assert re.match(r"beta prepared \d+\.\d+", done.stdout.splitlines()[0]), done.stdout


def test_env_args_and_exit_code(ssh_cli: Cli, project: Path, sshd: Sshd) -> None:
    write_task(
        project,
        """
        type: task
        env:
          - GREETING=hello
        commands:
          - echo "$GREETING from $IACRUN_RUN_NAME in $(pwd)"
          - printf '[%s]' ${{ run.args }}; echo
          - exit 3
        """,
    )
    done = ssh_cli("up", "-y", "-n", "greet", "task.dstack.yml", "--lr", "0.1", "a b")
    assert done.returncode == 3, done.stderr
    run = record(ssh_cli, "greet")
    assert run["backend"] == "ssh" and run["instance_type"] == "loop"
    assert run["status"] == "failed" and run["exit_code"] == 3
    run_dir = run["host"]["run_dir"]
    # the home of the host's SSH session (a temporary folder the test sshd gives it)
    tag = home_tag(Path(ssh_cli.env["IACRUN_HOME"]))  # the folder names the home that sent it
    assert run_dir == f"{sshd.login_home}/.iacrun/runs/greet-{run['id']}-{tag}"
    lines = done.stdout.splitlines()
    assert lines[0] == f"hello from greet in {run_dir}/code"
    assert lines[1] == "[--lr][0.1][a b]"
    assert "loop" in done.stderr  # the offers table named the host


def test_ssh_run_name_works_while_the_run_lives(ssh_cli: Cli, project: Path) -> None:
    write_task(project, "type: task\ncommands:\n  - sleep 300\n")
    done = ssh_cli("up", "-y", "-d", "-n", "shell", "task.dstack.yml")
    assert done.returncode == 0, done.stderr
    wait_for(lambda: record(ssh_cli, "shell")["status"] == "running", what="running")
    user_config = Path(ssh_cli.env["HOME"]) / ".ssh" / "config"
    status = f"{record(ssh_cli, 'shell')['host']['run_dir']}/status"
    argv = ["ssh", "-F", str(user_config), "-o", "BatchMode=yes", "shell", "cat", status]
    seen = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert (seen.returncode, seen.stdout.split()) == (0, ["running"]), seen.stderr
    assert ssh_cli("stop", "shell").returncode == 0
    after = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    assert after.returncode == 255  # the entry went with the run


# ----------------------------------------------------------------------------- logs


COUNTER = """
type: task
commands:
  - for i in $(seq 1 400); do echo $i; sleep 0.01; done
"""


def test_logs_survive_killing_the_attached_cli(ssh_cli: Cli, project: Path) -> None:
    write_task(project, COUNTER)
    first = ssh_cli.popen("up", "-y", "-n", "counter", "task.dstack.yml")
    assert first.stdout is not None
    seen = [first.stdout.readline() for _ in range(5)]
    assert seen == [b"%d\n" % i for i in range(1, 6)]
    first.send_signal(signal.SIGKILL)
    first.wait()
    before = numbers(b"".join(seen).decode() + first.stdout.read().decode())

    again = ssh_cli("attach", "counter", timeout=120)
    assert again.returncode == 0, again.stderr
    # none lost; killed at an arbitrary moment, the CLI may not have saved the offset of the
    # chunk it was printing, and that chunk (and only it) comes again
    after = numbers(again.stdout)
    assert after == list(range(after[0], 401)) and 1 <= after[0] <= len(before) + 1
    assert before == list(range(1, len(before) + 1))

    follow = ssh_cli("logs", "-f", "counter")
    assert numbers(follow.stdout) == list(range(1, 401))


def test_logs_after_the_run_ended(ssh_cli: Cli, project: Path) -> None:
    write_task(project, COUNTER)
    done = ssh_cli("up", "-y", "-n", "ended", "task.dstack.yml", timeout=120)
    assert done.returncode == 0, done.stderr
    for run_dir in remote_run_dirs(ssh_cli):
        shutil.rmtree(run_dir)  # the machine is gone: the copy kept here must answer
    later = ssh_cli("logs", "ended")
    assert later.returncode == 0, later.stderr
    assert numbers(later.stdout) == list(range(1, 401))


# ----------------------------------------------------------------------------- ports


def test_task_port_reached_through_the_forward(ssh_cli: Cli, project: Path) -> None:
    task_port, local_port = free_port(), free_port()
    (project / "hello.txt").write_text("served by the task\n")
    write_task(
        project,
        f"""
        type: task
        ports: [{task_port}]
        commands:
          - python3 -m http.server {task_port} --bind 127.0.0.1
        """,
    )
    attached = ssh_cli.popen(
        "up", "-y", "-n", "web", "--port", f"{local_port}:{task_port}", "task.dstack.yml"
    )

    def fetch() -> bytes | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{local_port}/hello.txt", timeout=2) as r:
                return bytes(r.read())
        except OSError:
            return None

    try:
        wait_for(fetch, timeout=60, what="the forwarded port answers")
        assert fetch() == b"served by the task\n"
    finally:
        assert ssh_cli("stop", "web").returncode == 0
        attached.wait(timeout=60)


def test_busy_local_port_refused_before_the_job_starts(ssh_cli: Cli, project: Path) -> None:
    write_task(project, "type: task\nports: [8000]\ncommands:\n  - touch started\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = ssh_cli("up", "-y", "-n", "busy", "--port", f"{port}:8000", "task.dstack.yml")
    assert done.returncode == 2
    assert f"local port {port} is already in use" in done.stderr
    assert remote_run_dirs(ssh_cli) == []


# ----------------------------------------------------------------------------- stopping


CHILDREN = """
type: task
{extra}
commands:
  - sleep 300 &
  - echo $! > "$IACRUN_RUN_DIR/child.pid"
  - echo started
  - sleep 300
"""


def _child_pid(cli: Cli, name: str) -> int:
    path: list[Path] = []

    def written() -> bool:
        try:
            host = record(cli, name).get("host")
        except RunNotFoundError:
            return False  # not submitted yet
        if host:
            path[:] = [Path(host["run_dir"]) / "child.pid"]
        return bool(path) and path[0].exists() and path[0].read_text().strip() != ""

    wait_for(written, timeout=60, what="the job started its child")
    return int(path[0].read_text())


def test_stop_ends_the_job_and_its_children(ssh_cli: Cli, project: Path) -> None:
    write_task(project, CHILDREN.format(extra=""))
    assert ssh_cli("up", "-y", "-d", "-n", "stopper", "task.dstack.yml").returncode == 0
    child = _child_pid(ssh_cli, "stopper")
    assert pid_alive(child)
    done = ssh_cli("stop", "stopper", timeout=120)
    assert done.returncode == 0, done.stderr
    run = record(ssh_cli, "stopper")
    assert (run["status"], run["reason"]) == ("terminated", "stopped by user")
    wait_for(lambda: not pid_alive(child), timeout=10, what="the child ended")
    # the log's last lines were kept here before the machine went
    shutil.rmtree(run["host"]["run_dir"])
    kept = ssh_cli("logs", "stopper")
    assert kept.stdout.splitlines()[0] == "started", kept.stderr
    assert "[iacrun] run terminated: stopped by user" in kept.stdout


def test_max_duration_ends_the_job_and_its_children(ssh_cli: Cli, project: Path) -> None:
    write_task(project, CHILDREN.format(extra="max_duration: 4s"))
    attached = ssh_cli.popen("up", "-y", "-n", "capped", "task.dstack.yml")
    child = _child_pid(ssh_cli, "capped")
    code = attached.wait(timeout=120)
    assert code != 0
    run = record(ssh_cli, "capped")
    assert (run["status"], run["reason"]) == ("terminated", "max duration exceeded")
    wait_for(lambda: not pid_alive(child), timeout=10, what="the child ended")


# ----------------------------------------------------------------------------- hosts


def test_changed_host_key_is_refused(cli: Cli, project: Path, sshd: Sshd, tmp_path: Path) -> None:
    configure(cli, [host_entry(sshd, host_key=keygen(tmp_path / "impostor"))])
    write_task(project, "type: task\ncommands:\n  - echo never\n")
    done = cli("up", "-y", "task.dstack.yml")
    assert done.returncode != 0
    assert "never" not in done.stdout
    assert f"host key of {sshd.user}@127.0.0.1:{sshd.port} changed" in done.stderr


def test_unreachable_host_shows_as_unavailable(cli: Cli, project: Path, sshd: Sshd) -> None:
    dead = {"name": "dead", "host": "127.0.0.1", "port": free_port(), "host_key": sshd.host_key}
    configure(cli, [dead, host_entry(sshd)])
    write_task(project, "type: task\ncommands:\n  - echo ran on $IACRUN_RUN_NAME\n")
    try:
        done = cli("up", "-y", "-n", "alive", "task.dstack.yml")
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines()[0] == "ran on alive"
        row = next(line for line in done.stderr.splitlines() if " dead " in line)
        assert "unreachable: connection refused" in row
        assert record(cli, "alive")["instance_type"] == "loop"
    finally:
        for run_dir in remote_run_dirs(cli):
            shutil.rmtree(run_dir, ignore_errors=True)


def test_ps_json_lists_the_ssh_run(ssh_cli: Cli, project: Path) -> None:
    write_task(project, "type: task\ncommands:\n  - echo ok\n")
    assert ssh_cli("up", "-y", "-n", "listed", "task.dstack.yml").returncode == 0
    rows = json.loads(ssh_cli("ps", "-a", "--json").stdout)
    assert [(r["name"], r["backend"], r["status"]) for r in rows] == [("listed", "ssh", "done")]


# ----------------------------------------------------------------------------- waiting for a host


def test_retry_waits_for_a_busy_host_then_runs(ssh_cli: Cli, project: Path) -> None:
    write_task(project, "type: task\ncommands:\n  - sleep 300\n", name="hold.dstack.yml")
    write_task(project, "type: task\ncommands:\n  - echo got the host\n", name="next.dstack.yml")
    first = ssh_cli("up", "-y", "-d", "-n", "holder", "hold.dstack.yml")
    assert first.returncode == 0, first.stderr
    wait_for(lambda: record(ssh_cli, "holder")["status"] == "running", what="holder running")

    refused = ssh_cli("up", "-y", "-d", "-n", "nowait", "next.dstack.yml")
    assert refused.returncode != 0 and "no offer is available right now" in refused.stderr

    second = ssh_cli(
        "up", "-y", "-d", "-n", "waiter", "--retry", "--retry-duration", "60s", "next.dstack.yml"
    )
    assert second.returncode == 0, second.stderr
    wait_for(lambda: record(ssh_cli, "waiter")["status"] == "pending", what="waiter pending")
    waiting = record(ssh_cli, "waiter")["reason"]
    assert waiting == "waiting for a machine: ssh loop: busy with holder", waiting
    assert ssh_cli("stop", "holder").returncode == 0
    wait_for(lambda: record(ssh_cli, "waiter")["status"] == "done", timeout=60, what="done")
    logs = ssh_cli("logs", "waiter")
    assert logs.stdout.splitlines()[0] == "got the host", logs.stderr
    events = (Path(record(ssh_cli, "waiter")["local_dir"]) / "events").read_text()
    assert "for a machine: ssh loop: busy with holder (retry until " in events
