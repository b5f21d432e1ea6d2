"""`runner.py stop --grace 0`: an abort, SIGKILL to the job's whole group with no SIGTERM first
(so no trap of the job runs), with the runner alive or gone; a grace only ever lowered, so an
abort cuts short a stop already in its grace and a later plain stop leaves an abort one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from iacrun.orchestrator.runner import runner
from tests.orchestrator.runner.test_runner import RUNNER, start, wait_final
from tests.orchestrator.runner.test_runner_lost import kill_runner, wait_for

#: a job that says when SIGTERM reached it, then hangs there: only SIGKILL ends it
HANGS_ON_TERM = [
    "trap 'echo got-term; sleep 600; echo trap-finished' TERM",
    "echo started",
    "sleep 600 & wait",
]


def stop(run_dir: Path, reason: str, *grace: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(RUNNER), "stop", str(run_dir), "--reason", reason, *grace],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def started(run_dir: Path) -> int:
    """The job's process group, once the job said it started."""
    wait_for(lambda: "started" in _log(run_dir))
    return int((run_dir / "pgid").read_text())


def _log(run_dir: Path) -> str:
    path = run_dir / "log"
    return path.read_text() if path.exists() else ""


def test_an_abort_sends_no_sigterm(tmp_path: Path) -> None:
    start(tmp_path, commands=HANGS_ON_TERM, stop_duration=3600)
    pgid = started(tmp_path)
    _, err = stop(tmp_path, "aborted by user", "--grace", "0").communicate(timeout=60)
    state = wait_final(tmp_path)
    assert (state["status"], state["reason"], state["exit_code"]) == (
        "terminated",
        "aborted by user",
        137,
    ), err
    assert "got-term" not in _log(tmp_path)
    assert not runner._group_alive(pgid)


def test_an_abort_cuts_short_a_stop_in_its_grace(tmp_path: Path) -> None:
    start(tmp_path, commands=HANGS_ON_TERM, stop_duration=3600)
    pgid = started(tmp_path)
    graceful = stop(tmp_path, "stopped by user")
    wait_for(lambda: "got-term" in _log(tmp_path))  # in its hour of grace
    assert runner._group_alive(pgid)
    _, err = stop(tmp_path, "aborted by user", "--grace", "0").communicate(timeout=60)
    graceful.communicate(timeout=60)  # the first stop returns too: the run is final
    assert graceful.returncode == 0
    state = wait_final(tmp_path)
    assert (state["status"], state["reason"], state["exit_code"]) == (
        "terminated",
        "aborted by user",
        137,
    ), err
    assert "trap-finished" not in _log(tmp_path)
    assert not runner._group_alive(pgid)


def test_a_plain_stop_after_an_abort_leaves_it_an_abort(tmp_path: Path) -> None:
    start(tmp_path, commands=HANGS_ON_TERM, stop_duration=3600)
    pgid = started(tmp_path)
    kill_runner(tmp_path)  # the stops end the group themselves
    (tmp_path / "stop_grace").write_text("0\n")  # as an abort that was then killed wrote it
    (tmp_path / "stop_request").write_text("aborted by user\n")
    _, err = stop(tmp_path, "stopped by user").communicate(timeout=60)
    state = runner.RunFolder(str(tmp_path)).read_state()
    assert (state["status"], state["reason"], state["exit_code"]) == (
        "terminated",
        "aborted by user",
        137,
    ), err
    assert "got-term" not in _log(tmp_path)
    assert not runner._group_alive(pgid)


def test_without_its_runner_an_abort_cuts_short_the_stop_ending_the_group(tmp_path: Path) -> None:
    start(tmp_path, commands=HANGS_ON_TERM, stop_duration=3600)
    pgid = started(tmp_path)
    kill_runner(tmp_path)
    graceful = stop(tmp_path, "stopped by user")  # ends the group itself: SIGTERM, an hour
    wait_for(lambda: "got-term" in _log(tmp_path))
    _, err = stop(tmp_path, "aborted by user", "--grace", "0").communicate(timeout=60)
    graceful.communicate(timeout=60)
    assert graceful.returncode == 0
    state = runner.RunFolder(str(tmp_path)).read_state()
    assert (state["status"], state["reason"], state["exit_code"]) == (
        "terminated",
        "aborted by user",
        137,
    ), err
    assert "trap-finished" not in _log(tmp_path)
    assert not runner._group_alive(pgid)


def test_a_grace_asked_is_only_ever_lowered(tmp_path: Path) -> None:
    folder = runner.RunFolder(str(tmp_path))
    job = {"stop_duration": 30}
    assert runner.stop_grace(folder, job) == 30
    (tmp_path / "stop_grace").write_text("0\n")
    assert runner.stop_grace(folder, job) == 0
    (tmp_path / "stop_grace").write_text("90\n")  # never above the job's own
    assert runner.stop_grace(folder, job) == 30
    (tmp_path / "stop_grace").write_text("not a number\n")
    assert runner.stop_grace(folder, job) == 30


def test_an_abort_kills_an_image_jobs_container_through_its_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a stand-in `docker`: `run` is the container (it traps SIGTERM), `kill` is recorded; a real
    # container outlives its client's SIGKILL, so the engine must be told
    bin_dir, run_dir = tmp_path / "bin", tmp_path / "run"
    bin_dir.mkdir()
    calls = tmp_path / "engine-calls"
    fake = bin_dir / "docker"
    fake.write_text(
        "#!/bin/sh\n"
        f'echo "$1 $2" >> {calls}\n'
        'if [ "$1" = run ]; then\n'
        "  trap 'echo container-got-term' TERM\n"
        "  echo started\n"
        "  sleep 600 & wait\n"
        "fi\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    start(run_dir, image="alpine", commands=["true"], container_engine="docker", stop_duration=60)
    pgid = started(run_dir)
    _, err = stop(run_dir, "aborted by user", "--grace", "0").communicate(timeout=60)
    state = wait_final(run_dir)
    assert (state["status"], state["exit_code"]) == ("terminated", 137), err
    assert "kill iacrun-t" in calls.read_text().splitlines()
    assert "container-got-term" not in _log(run_dir)
    assert not runner._group_alive(pgid)
