"""Fault injection over the real processes of a local run: kill -9 the attached CLI, the
supervisor or the runner while the job runs or while it is being stopped.

Phases are made observable with gates (a file the job waits on, a line it logs), never sleeps.
Every case ends with no process of the run left, a truthful status and exit code, and `stop` and
`down` succeeding; each adds a row to the table printed after the tests (tests/faults/conftest)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from iacrun.orchestrator.errors import RunNotFoundError
from iacrun.orchestrator.registry import Registry, RunRecord
from iacrun.orchestrator.runner.runner import pid_alive
from tests.conftest import Cli, write_task

FINAL = ("done", "failed", "terminated")


def wait_for(predicate: object, timeout: float = 90.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def record(cli: Cli, name: str) -> RunRecord:
    registry = Registry(Path(cli.env["IACRUN_HOME"]) / "registry.db")
    try:
        return registry.get(name)
    finally:
        registry.close()


def ps_row(cli: Cli, name: str) -> dict[str, object]:
    """The run as `ps` shows it (and `ps` replaces a dead supervisor, as any command does)."""
    done = cli("ps", "-a", "--json")
    assert done.returncode == 0, done.stderr
    rows: dict[str, dict[str, object]] = {r["name"]: r for r in json.loads(done.stdout)}
    return rows[name]


def run_dir(cli: Cli, name: str) -> str:
    run = record(cli, name)
    assert run.host is not None
    return run.host.run_dir


def log_has(cli: Cli, name: str, text: str) -> bool:
    try:
        return text in (Path(run_dir(cli, name)) / "log").read_text()
    except (OSError, AssertionError, RunNotFoundError):  # not recorded or started yet
        return False


def processes_of(folder: str) -> list[int]:
    """Processes working in the run's folder or naming it: the runner, the job, its children."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cwd = os.readlink(f"/proc/{entry}/cwd")
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{entry}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    continue
        except OSError:
            continue
        if cwd.startswith(folder) or folder in cmdline:
            found.append(int(entry))
    return found


def kill9(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(pid), timeout=10)


def victim_pid(cli: Cli, name: str, victim: str, attached: subprocess.Popen[bytes] | None) -> int:
    if victim == "cli":
        assert attached is not None
        return attached.pid
    if victim == "supervisor":
        pid = record(cli, name).supervisor_pid
        assert pid is not None
        return pid
    return int((Path(run_dir(cli, name)) / "pid").read_text())


GATED = """
stop_duration: 3
commands:
  - trap 'echo got-term' TERM
  - echo started
  - while [ ! -e {gate} ]; do sleep 0.05 || true; done
  - echo finished
"""


def settle_and_check(
    cli: Cli,
    name: str,
    outcomes: list[dict[str, str]],
    phase: str,
    victim: str,
    expect: str,
    backend: str = "local",
) -> None:
    folder = run_dir(cli, name)
    wait_for(lambda: ps_row(cli, name)["status"] in FINAL)
    row = ps_row(cli, name)
    wait_for(lambda: not processes_of(folder), timeout=30)
    left = processes_of(folder)
    stop = cli("stop", name)
    down = cli("down", name)
    outcomes.append(
        {
            "backend": backend,
            "phase": phase,
            "victim": victim,
            "status": str(row["status"]),
            "exit": str(row.get("exit_code")),
            "left over": "none" if not left else f"{len(left)} processes",
            "stop+down": "ok" if stop.returncode == down.returncode == 0 else "FAILED",
        }
    )
    assert row["status"] == expect, row
    if expect == "done":
        assert row["exit_code"] == 0, row
        assert "finished" in cli("logs", name).stdout
    else:  # the job ignores SIGTERM: SIGKILL after its grace, whoever did the stopping
        assert row["exit_code"] == 137, row
    assert not left
    assert stop.returncode == 0, stop.stderr
    assert down.returncode == 0, down.stderr
    assert not list(Path(folder).glob("**/*.tmp*")), "a partial file was left"


@pytest.mark.parametrize("victim", ["cli", "supervisor", "runner"])
def test_kill_while_running(
    cli: Cli, project: Path, tmp_path: Path, victim: str, outcomes: list[dict[str, str]]
) -> None:
    gate = tmp_path / "gate"
    write_task(project, GATED.format(gate=gate))
    name = f"run-{victim}"
    attached = None
    if victim == "cli":
        attached = cli.popen("up", "-y", "-n", name, "task.dstack.yml")
        wait_for(lambda: log_has(cli, name, "started"))
    else:
        assert cli("up", "-y", "-d", "-n", name, "task.dstack.yml").returncode == 0
        wait_for(lambda: log_has(cli, name, "started"))
    kill9(victim_pid(cli, name, victim, attached))
    if attached is not None:
        attached.communicate()
    gate.touch()
    settle_and_check(cli, name, outcomes, "running", victim, "done")
    if victim != "cli":  # `logs -f` of a run whose runner or supervisor died returns
        assert "finished" in cli("logs", "-f", name, timeout=60).stdout


@pytest.mark.parametrize("victim", ["cli", "supervisor", "runner"])
def test_kill_while_stopping(
    cli: Cli, project: Path, tmp_path: Path, victim: str, outcomes: list[dict[str, str]]
) -> None:
    gate = tmp_path / "gate"  # never opened: the job runs until stopped
    write_task(project, GATED.format(gate=gate))
    name = f"stop-{victim}"
    assert cli("up", "-y", "-d", "-n", name, "task.dstack.yml").returncode == 0
    wait_for(lambda: log_has(cli, name, "started"))
    stopper = cli.popen("stop", name)
    # the job got SIGTERM and ignores it: the stop is inside its 3s grace now
    wait_for(lambda: log_has(cli, name, "got-term"))
    kill9(victim_pid(cli, name, victim, stopper))
    stopper.communicate()
    settle_and_check(cli, name, outcomes, "stopping", victim, "terminated")
