"""A runner killed mid-run or mid-stop: the job's group is reachable without it and the status
is settled from the job's own exit file, never written while a process of the run lives."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from iacrun.orchestrator.runner import runner
from tests.orchestrator.runner.test_runner import RUNNER, start, wait_final


def gated(gate: Path, then: str) -> list[str]:
    """Commands that wait for `gate` to exist, then run `then`: phases without sleeps."""
    return [f"while [ ! -e {gate} ]; do sleep 0.05; done", then]


def wait_for(predicate: object, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached")


def kill_runner(run_dir: Path) -> int:
    pid = int((run_dir / "pid").read_text())
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not runner.pid_alive(pid))
    return pid


def settle(run_dir: Path) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, str(RUNNER), "settle", str(run_dir)],
        capture_output=True,
        check=True,
    )
    state: dict[str, object] = json.loads(out.stdout)
    return state


def test_the_job_group_is_recorded(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    start(tmp_path, commands=gated(gate, "exit 0"))
    wait_for(lambda: (tmp_path / "pgid").exists())
    pgid = int((tmp_path / "pgid").read_text())
    assert os.getpgid(pgid) == pgid  # a group of its own, not the runner's
    gate.touch()
    assert wait_final(tmp_path)["status"] == "done"


def test_a_killed_runner_is_settled_from_the_jobs_exit_file(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    start(tmp_path, commands=gated(gate, "echo finished; exit 3"))
    wait_for(lambda: (tmp_path / "pgid").exists())
    kill_runner(tmp_path)
    # the job lives on: the state stays as it was, truthfully running
    assert settle(tmp_path)["status"] == "running"
    pgid = int((tmp_path / "pgid").read_text())
    gate.touch()
    wait_for(lambda: not runner._group_alive(pgid))
    state = settle(tmp_path)
    assert state["status"] == "failed" and state["exit_code"] == 3, state
    assert (tmp_path / "exit_code").read_text() == "3\n"
    log = (tmp_path / "log").read_text()
    assert "finished" in log and "the runner exited; the job goes on" in log


def test_a_killed_runner_with_a_job_that_succeeded_is_done(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    start(tmp_path, commands=gated(gate, "exit 0"))
    wait_for(lambda: (tmp_path / "pgid").exists())
    kill_runner(tmp_path)
    pgid = int((tmp_path / "pgid").read_text())
    gate.touch()
    wait_for(lambda: not runner._group_alive(pgid))
    state = settle(tmp_path)
    assert state["status"] == "done" and state["exit_code"] == 0


def test_stop_without_a_runner_ends_the_group(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    start(tmp_path, commands=gated(gate, "exit 0"))
    wait_for(lambda: (tmp_path / "pgid").exists())
    kill_runner(tmp_path)
    pgid = int((tmp_path / "pgid").read_text())
    done = subprocess.run(
        [sys.executable, str(RUNNER), "stop", str(tmp_path), "--reason", "stopped by user"],
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert not runner._group_alive(pgid)
    state = runner.RunFolder(str(tmp_path)).read_state()
    assert state["status"] == "terminated" and state["reason"] == "stopped by user"


def test_a_runner_killed_during_stop_still_ends_the_job(tmp_path: Path) -> None:
    # the job ignores SIGTERM, so the runner is caught inside its grace period
    start(
        tmp_path,
        commands=["trap 'echo got-term' TERM", "while true; do sleep 0.05 || true; done"],
        stop_duration=5,
    )
    wait_for(lambda: (tmp_path / "pgid").exists())
    pgid = int((tmp_path / "pgid").read_text())
    stopper = subprocess.Popen(
        [sys.executable, str(RUNNER), "stop", str(tmp_path), "--reason", "stopped by user"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    wait_for(lambda: "got-term" in (tmp_path / "log").read_text())
    kill_runner(tmp_path)  # within its 5s grace
    # the stopper takes over: SIGTERM again, the grace, then SIGKILL to the group
    _, err = stopper.communicate(timeout=60)
    assert stopper.returncode == 0, err
    assert not runner._group_alive(pgid)
    state = runner.RunFolder(str(tmp_path)).read_state()
    assert state["status"] == "terminated" and state["reason"] == "stopped by user"
    assert state["exit_code"] == 137  # it ignored SIGTERM: SIGKILL after the grace
