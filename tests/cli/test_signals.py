"""SIGTERM and SIGHUP to a CLI that follows a run (how CI systems cancel a step): the run stops.

Real CLI processes without a terminal, the local backend, real jobs. The CLI must end with
128 + the signal's number inside the grace a CI system gives (GitHub Actions and GitLab CI send
SIGKILL some seconds after SIGTERM), and the run's job must be gone.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from iacrun.orchestrator.errors import RunNotFoundError
from iacrun.orchestrator.registry import Registry, RunRecord
from tests.conftest import Cli, write_task
from tests.orchestrator.host.test_e2e import pid_alive, wait_for

#: a job that starts a child in the background, says so, then prints a line now and then
TICKING = """
commands:
  - sleep 300 &
  - echo $! > "$IACRUN_RUN_DIR/child.pid"
  - echo started
  - while true; do echo tick; sleep 0.2; done
"""

#: what a CI system waits between SIGTERM and SIGKILL, at the shortest (GitHub Actions: 7.5 s)
CI_GRACE = 10


def record(cli: Cli, name: str) -> RunRecord:
    registry = Registry(Path(cli.env["IACRUN_HOME"]) / "registry.db")
    try:
        return registry.get(name)
    finally:
        registry.close()


def child_pid(cli: Cli, name: str) -> int:
    """The pid of the job's background child, once the job wrote it."""
    found: list[int] = []

    def written() -> bool:
        try:
            host = record(cli, name).host
        except RunNotFoundError:
            return False
        path = Path(host.run_dir) / "child.pid" if host else None
        if path is None or not path.exists() or not path.read_text().strip():
            return False
        found.append(int(path.read_text()))
        return True

    wait_for(written, timeout=60, what="the job started its child")
    return found[-1]


def read_until(proc: subprocess.Popen[bytes], marker: bytes) -> bytes:
    assert proc.stdout is not None
    seen = b""
    while marker not in seen:
        chunk = os.read(proc.stdout.fileno(), 65536)
        assert chunk, f"the CLI ended before printing {marker!r}"
        seen += chunk
    return seen


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_signal_to_an_attached_up_stops_the_run(
    cli: Cli, project: Path, sig: signal.Signals, code: int
) -> None:
    write_task(project, TICKING)
    attached = cli.popen("up", "-y", "-n", "ci-step", "task.dstack.yml")
    child = child_pid(cli, "ci-step")
    read_until(attached, b"tick\n")
    attached.send_signal(sig)
    assert attached.wait(timeout=CI_GRACE) == code
    assert attached.stderr is not None
    said = attached.stderr.read().decode()
    assert f"Got {sig.name}: stopping ci-step" in said, said
    wait_for(lambda: record(cli, "ci-step").status.is_final, timeout=60, what="the run ended")
    run = record(cli, "ci-step")
    assert (run.status, run.reason) == ("terminated", f"stopped: iacrun got {sig.name}")
    wait_for(lambda: not pid_alive(child), timeout=10, what="the job's child ended")


def test_sigterm_to_attach_stops_the_run(cli: Cli, project: Path) -> None:
    write_task(project, TICKING)
    assert cli("up", "-y", "-d", "-n", "later", "task.dstack.yml").returncode == 0
    child = child_pid(cli, "later")
    attached = cli.popen("attach", "later")
    read_until(attached, b"tick\n")
    attached.send_signal(signal.SIGTERM)
    assert attached.wait(timeout=CI_GRACE) == 143
    wait_for(lambda: record(cli, "later").status.is_final, timeout=60, what="the run ended")
    run = record(cli, "later")
    assert (run.status, run.reason) == ("terminated", "stopped: iacrun got SIGTERM")
    wait_for(lambda: not pid_alive(child), timeout=10, what="the job's child ended")


def test_sigterm_while_provisioning_leaves_nothing_running(
    cli: Cli, project: Path, tmp_path: Path
) -> None:
    # a working folder that takes seconds to pack keeps the run in `provisioning` meanwhile
    (project / "data.bin").write_bytes(os.urandom(300 * 1024 * 1024))
    home = Path(cli.env["IACRUN_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.yml").write_text("upload_limit: 1GB\n")
    started = tmp_path / "started"
    write_task(project, f"commands:\n  - touch {started}\n  - sleep 300\n")
    attached = cli.popen("up", "-y", "-n", "early", "task.dstack.yml")

    def provisioning() -> bool:
        try:
            return record(cli, "early").status == "provisioning"
        except RunNotFoundError:
            return False

    wait_for(provisioning, timeout=60, what="the run is provisioning")
    attached.send_signal(signal.SIGTERM)
    assert attached.wait(timeout=CI_GRACE) == 143
    wait_for(lambda: record(cli, "early").status.is_final, timeout=120, what="the run ended")
    run = record(cli, "early")
    assert (run.status, run.reason) == ("terminated", "stopped: iacrun got SIGTERM")
    assert not started.exists()  # the job never started


def test_signals_during_the_stop_do_not_abandon_it(cli: Cli, project: Path) -> None:
    # a job that ignores SIGTERM: its stop takes the whole stop_duration, then SIGKILL
    write_task(
        project,
        "stop_duration: 4s\n" + TICKING.replace("commands:\n", "commands:\n  - trap '' TERM\n"),
    )
    attached = cli.popen("up", "-y", "-n", "stubborn", "task.dstack.yml")
    child = child_pid(cli, "stubborn")
    read_until(attached, b"tick\n")
    attached.send_signal(signal.SIGTERM)
    wait_for(lambda: record(cli, "stubborn").status == "terminating", what="the stop recorded")
    attached.send_signal(signal.SIGINT)  # the CI's next signal: the stop goes on without us
    attached.send_signal(signal.SIGTERM)
    assert attached.wait(timeout=CI_GRACE) == 143
    wait_for(lambda: record(cli, "stubborn").status.is_final, timeout=60, what="the run ended")
    run = record(cli, "stubborn")
    assert (run.status, run.reason) == ("terminated", "stopped: iacrun got SIGTERM")
    wait_for(lambda: not pid_alive(child), timeout=10, what="the job's child ended")
