"""Faults of ssh-backend runs against a real sshd on 127.0.0.1: the host freezing mid-run.

An outage is made by SIGSTOP of the sshd and of its session processes (every process whose
parent chain leads to the sshd), never of the runner or the job (detached with setsid: they go
on, as on a host whose network went away). Phases are gated on what the run shows (an event
line, a log line, a file), never on sleeps."""

from __future__ import annotations

import os
import shutil
import signal
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from iacrun.orchestrator.runner.runner import pid_alive
from tests.conftest import Cli, write_task
from tests.faults.test_local_faults import (
    FINAL,
    GATED,
    kill9,
    log_has,
    processes_of,
    record,
    run_dir,
    settle_and_check,
    victim_pid,
    wait_for,
)
from tests.orchestrator.host.sshd import Sshd

TICKING = """
commands:
  - echo started
  - i=0; while [ ! -e {gate} ]; do i=$((i+1)); echo tick $i; sleep 0.2; done
  - echo finished
"""


def configure(cli: Cli, sshd: Sshd, **ssh: Any) -> None:
    home = Path(cli.env["IACRUN_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    entry = sshd.host_settings(name="loop").model_dump(exclude_none=True)
    config = {"backends": {"local": {"enabled": False}, "ssh": {"hosts": [entry], **ssh}}}
    (home / "config.yml").write_text(yaml.safe_dump(config))


def sshd_tree(sshd: Sshd, spare: list[int]) -> list[int]:
    """The sshd and every process whose parent chain leads to it, less `spare`."""
    assert sshd._proc is not None
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    tree = [sshd._proc.pid]
    for pid in parents:
        walk = pid
        while walk in parents and walk > 1:
            walk = parents[walk]
            if walk == sshd._proc.pid:
                tree.append(pid)
                break
    return [pid for pid in tree if pid not in spare]


def freeze(sshd: Sshd, folder: str) -> list[int]:
    job = processes_of(folder)
    assert job, "the runner and the job run before the outage"
    frozen = sshd_tree(sshd, spare=job)
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)
    return frozen


def thaw(pids: list[int]) -> None:
    for pid in pids:
        if pid_alive(pid):
            os.kill(pid, signal.SIGCONT)


def with_sshd_running(sshd: Sshd) -> None:
    if sshd._proc is not None:
        thaw(sshd_tree(sshd, spare=[]))


def unique(name: str) -> str:
    """A run name no earlier test used, so that a run's events and folders are told apart from
    those of the tests before it at a glance."""
    return f"{name}-{uuid.uuid4().hex[:6]}"


def events(cli: Cli, name: str) -> str:
    try:
        return (Path(record(cli, name).local_dir) / "events").read_text()
    except OSError:
        return ""


def status(cli: Cli, name: str) -> str:
    return str(record(cli, name).status)


def test_an_outage_within_the_limit_is_waited_out_and_the_log_is_whole(
    cli: Cli, sshd: Sshd, project: Path, tmp_path: Path, outcomes: list[dict[str, str]]
) -> None:
    configure(cli, sshd, unreachable_after="10m")
    gate = tmp_path / "gate"
    write_task(project, TICKING.format(gate=gate))
    name = unique("outage")
    assert cli("up", "-y", "-d", "-n", name, "task.dstack.yml").returncode == 0
    wait_for(lambda: log_has(cli, name, "tick 3"))
    folder = run_dir(cli, name)
    frozen = freeze(sshd, folder)
    try:
        # the supervisor gives the frozen host 20s to answer, then says it waits for it
        wait_for(lambda: "host unreachable since" in events(cli, name), timeout=120)
        assert status(cli, name) == "running"
        assert "waiting until" in str(record(cli, name).reason)
        gate.touch()  # the job ends while its host does not answer
        wait_for(lambda: "finished" in (Path(folder) / "log").read_text(), timeout=30)
    finally:
        thaw(frozen)
    wait_for(lambda: status(cli, name) in FINAL, timeout=120)
    row = record(cli, name)
    assert row.status == "done", row
    assert row.exit_code == 0
    assert "host answers again" in events(cli, name)
    shown = cli("logs", name).stdout
    assert shown == (Path(folder) / "log").read_text()  # every byte the host logged
    assert "finished" in shown
    assert not processes_of(folder)
    outcomes.append(outage_row("host frozen >20s (limit 10m)", cli, name, "none", "ok"))
    shutil.rmtree(folder, ignore_errors=True)


def outage_row(victim: str, cli: Cli, name: str, left: str, stop: str) -> dict[str, str]:
    row = record(cli, name)
    return {
        "backend": "ssh",
        "phase": "running",
        "victim": victim,
        "status": str(row.status),
        "exit": str(row.exit_code),
        "left over": left,
        "stop+down": stop,
    }


def test_an_outage_past_the_limit_fails_the_run_and_stop_ends_the_job_later(
    cli: Cli, sshd: Sshd, project: Path, tmp_path: Path, outcomes: list[dict[str, str]]
) -> None:
    configure(cli, sshd, unreachable_after="5s")
    gate = tmp_path / "gate"  # never opened: only a stop ends the job
    write_task(project, TICKING.format(gate=gate))
    name = unique("lost")
    assert cli("up", "-y", "-d", "-n", name, "task.dstack.yml").returncode == 0
    wait_for(lambda: log_has(cli, name, "tick 3"))
    folder = run_dir(cli, name)
    frozen = freeze(sshd, folder)
    try:
        wait_for(lambda: status(cli, name) in FINAL, timeout=180)
        row = record(cli, name)
        assert row.status == "failed", row
        assert "unreachable since" in str(row.reason), row.reason
        assert "unreachable_after (5s)" in str(row.reason), row.reason
        assert processes_of(folder), "the job goes on while its host is out of reach"
        # while the host still does not answer, stop says so and keeps the job to stop later
        refused = cli("stop", name, timeout=120)
        assert refused.returncode != 0
        assert "still does not answer" in refused.stderr
        assert "Traceback" not in refused.stderr
    finally:
        thaw(frozen)
    stop = cli("stop", name, timeout=120)
    assert stop.returncode == 0, stop.stderr
    wait_for(lambda: not processes_of(folder), timeout=30)
    assert status(cli, name) == "failed"  # how the run ended stays as it was
    shown = cli("logs", name).stdout
    assert "tick" in shown and shown == (Path(folder) / "log").read_text()
    assert cli("down", name).returncode == 0
    again = cli("stop", name)  # nothing left to stop: a no-op
    assert again.returncode == 0, again.stderr
    outcomes.append(outage_row("host frozen past limit (5s)", cli, name, "none", "ok"))
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("victim", ["cli", "supervisor", "runner"])
def test_kill_while_running(
    cli: Cli, sshd: Sshd, project: Path, tmp_path: Path, victim: str, outcomes: list[dict[str, str]]
) -> None:
    configure(cli, sshd)
    gate = tmp_path / "gate"
    write_task(project, GATED.format(gate=gate))
    name = unique(f"run-{victim}")
    attached = None
    if victim == "cli":
        attached = cli.popen("up", "-y", "-n", name, "task.dstack.yml")
    else:
        assert cli("up", "-y", "-d", "-n", name, "task.dstack.yml").returncode == 0
    wait_for(lambda: log_has(cli, name, "started"))
    kill9(victim_pid(cli, name, victim, attached))
    if attached is not None:
        attached.communicate()
    gate.touch()
    settle_and_check(cli, name, outcomes, "running", victim, "done", backend="ssh")
    if victim != "cli":  # `logs -f` of a run whose runner or supervisor died returns
        assert "finished" in cli("logs", "-f", name, timeout=60).stdout
    shutil.rmtree(run_dir(cli, name), ignore_errors=True)


@pytest.mark.parametrize("victim", ["cli", "supervisor", "runner"])
def test_kill_while_stopping(
    cli: Cli, sshd: Sshd, project: Path, tmp_path: Path, victim: str, outcomes: list[dict[str, str]]
) -> None:
    configure(cli, sshd)
    gate = tmp_path / "gate"  # never opened: the job runs until stopped
    write_task(project, GATED.format(gate=gate))
    name = unique(f"stop-{victim}")
    assert cli("up", "-y", "-d", "-n", name, "task.dstack.yml").returncode == 0
    wait_for(lambda: log_has(cli, name, "started"))
    stopper = cli.popen("stop", name)
    wait_for(lambda: log_has(cli, name, "got-term"))  # inside the job's 3s grace now
    kill9(victim_pid(cli, name, victim, stopper))
    stopper.communicate()
    settle_and_check(cli, name, outcomes, "stopping", victim, "terminated", backend="ssh")
    shutil.rmtree(run_dir(cli, name), ignore_errors=True)


def cut_off(sshd: Sshd, folder: str) -> None:
    """The host goes off the network: its sshd and every session end (connections drop, new
    ones are refused) while the runner and the job, detached, run on."""
    for pid in sshd_tree(sshd, spare=processes_of(folder)):
        os.kill(pid, signal.SIGKILL)


def test_a_host_off_the_network_past_20s_is_waited_for_by_default(
    cli: Cli, sshd: Sshd, project: Path, tmp_path: Path, outcomes: list[dict[str, str]]
) -> None:
    """Issue 11 defect 4, as a user met it: no limit configured, the host drops off for longer
    than one reconnection window (20s); the run must not fail behind a job that runs on, and
    once the host is back the run ends as its job did, with every line the job logged."""
    configure(cli, sshd)
    gate = tmp_path / "gate"
    write_task(project, TICKING.format(gate=gate))
    name = unique("offline")
    assert cli("up", "-y", "-d", "-n", name, "task.dstack.yml").returncode == 0
    wait_for(lambda: log_has(cli, name, "tick 3"))
    folder = run_dir(cli, name)
    cut_off(sshd, folder)
    # the supervisor's reconnection window (20s) runs out: it says so, or gives up on the run
    wait_for(
        lambda: "host unreachable since" in events(cli, name) or status(cli, name) in FINAL,
        timeout=120,
    )
    assert status(cli, name) == "running", record(cli, name).reason
    gate.touch()  # the job ends while its host is out of reach
    wait_for(lambda: "finished" in (Path(folder) / "log").read_text(), timeout=30)
    sshd.restart()  # the same port and keys: the host is back
    wait_for(lambda: status(cli, name) in FINAL, timeout=120)
    row = record(cli, name)
    assert (row.status, row.exit_code) == ("done", 0), row.reason
    shown = cli("logs", name).stdout
    assert shown == (Path(folder) / "log").read_text()  # what the host logged meanwhile too
    assert "finished" in shown
    assert not processes_of(folder)
    assert cli("stop", name).returncode == 0
    assert cli("down", name).returncode == 0
    outcomes.append(outage_row("host off the network >20s (default)", cli, name, "none", "ok"))
    shutil.rmtree(folder, ignore_errors=True)
