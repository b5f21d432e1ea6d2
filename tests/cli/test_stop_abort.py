"""`iacrun stop -x/--abort` (dstack's abort), `-a`, `-y`: real CLI processes, the local backend,
real jobs that trap SIGTERM.

A plain stop gives the job its `stop_duration`: SIGTERM first, so the job's trap runs. An abort
kills the job's whole process group at once: the trap never runs. Whoever carries the stop out
(the run's supervisor, its successor after it died, the CLI itself when none lives) reads the
abort from the registry. What is asserted is what happened (the trap's line, the processes),
never how long it took.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from iacrun.orchestrator.registry import RunRecord
from tests.cli.test_remote import server_log, server_record
from tests.cli.test_signals import child_pid, record
from tests.conftest import Cli, write_task
from tests.orchestrator.host.test_e2e import pid_alive, wait_for
from tests.server.conftest import ADMIN_TOKEN, Server

#: a job that traps SIGTERM (`{on_term}`), starts a child, says so, and waits; a plain stop gives
#: it `{grace}` between SIGTERM and SIGKILL
TRAPPING = """
stop_duration: {grace}
commands:
  - trap '{on_term}' TERM
  - sleep 600 &
  - echo $! > "$IACRUN_RUN_DIR/child.pid"
  - echo started
  - wait
"""
#: the trap of a job that ends cleanly on SIGTERM
EXITS = "echo caught TERM; exit 3"
#: the trap of a job that hangs on SIGTERM: only SIGKILL ends it
HANGS = "echo caught TERM; sleep 600; echo trap finished"


def group_alive(pgid: int) -> bool:
    """Whether a process of the group `pgid` lives (zombies do not count)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


class Job:
    """A started job of a run on this machine: its folder, its process group and child."""

    def __init__(self, cli: Cli, name: str) -> None:
        self.child = child_pid(cli, name)
        host = record(cli, name).host
        assert host is not None and host.run_dir
        self.dir = Path(host.run_dir)
        wait_for(lambda: "started" in self.log(), timeout=30, what="the job said it started")
        self.pgid = int((self.dir / "pgid").read_text())
        assert group_alive(self.pgid) and pid_alive(self.child)

    def log(self) -> str:
        path = self.dir / "log"
        return path.read_text() if path.exists() else ""

    def gone(self) -> bool:
        return not group_alive(self.pgid) and not pid_alive(self.child)


def start(cli: Cli, project: Path, name: str, grace: str, on_term: str) -> Job:
    write_task(project, TRAPPING.format(grace=grace, on_term=on_term))
    done = cli("up", "-y", "-d", "-n", name, "task.dstack.yml")
    assert done.returncode == 0, done.stderr
    return Job(cli, name)


def final(cli: Cli, name: str) -> RunRecord:
    wait_for(lambda: record(cli, name).status.is_final, timeout=90, what=f"{name} ended")
    return record(cli, name)


def test_stop_takes_dstacks_flags(cli: Cli) -> None:
    shown = cli("stop", "--help").stdout
    assert "-x, --abort" in shown and "-a, --all" in shown and "-y, --yes" in shown
    assert "iacrun stop never asks" in " ".join(shown.split())
    missing = cli("stop", "-x", "-y", "nosuch")
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines() == ["error: no run named 'nosuch'; see iacrun ps -a"]
    nothing = cli("stop", "-a", "-x", "-y")
    assert (nothing.returncode, nothing.stdout, nothing.stderr) == (0, "", "")


def test_a_plain_stop_gives_the_job_its_grace(cli: Cli, project: Path) -> None:
    job = start(cli, project, "graceful", "60s", EXITS)
    done = cli("stop", "graceful", timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "graceful: terminated (stopped by user)"
    assert "caught TERM" in job.log()  # SIGTERM came first: the job's trap ran
    run = record(cli, "graceful")
    assert (run.status, run.exit_code, run.abort) == ("terminated", 3, False)
    assert job.gone()


def test_an_abort_kills_the_job_at_once_and_its_trap_never_runs(cli: Cli, project: Path) -> None:
    job = start(cli, project, "aborted", "60s", EXITS)
    done = cli("stop", "-x", "aborted", timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "aborted: terminated (aborted by user)"
    assert "caught TERM" not in job.log()
    assert "[iacrun] run terminated: aborted by user" in job.log()
    run = record(cli, "aborted")
    assert (run.status, run.reason, run.exit_code, run.abort) == (
        "terminated",
        "aborted by user",
        128 + signal.SIGKILL,
        True,
    )
    assert job.gone()
    again = cli("stop", "-x", "aborted")  # safe to repeat
    assert again.returncode == 0 and again.stdout.strip() == done.stdout.strip()


def test_an_abort_cuts_short_a_stop_waiting_in_its_grace(cli: Cli, project: Path) -> None:
    # the job hangs in its trap; its grace is an hour: only the abort can end it in this test
    job = start(cli, project, "hung", "1h", HANGS)
    graceful = cli.popen("stop", "hung")
    wait_for(lambda: "caught TERM" in job.log(), timeout=60, what="the stop's SIGTERM")
    assert record(cli, "hung").active and not job.gone()
    done = cli("stop", "-x", "hung", timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "hung: terminated (aborted by user)"
    out, _ = graceful.communicate(timeout=120)  # the plain stop returns too, with the run's end
    assert graceful.returncode == 0
    assert out.decode().strip() == "hung: terminated (aborted by user)"
    assert "trap finished" not in job.log()
    assert job.gone()


def test_an_abort_whose_requester_was_killed_is_carried_out_by_the_supervisor(
    cli: Cli, project: Path
) -> None:
    job = start(cli, project, "orphan", "60s", EXITS)
    requester = cli.popen("stop", "-x", "orphan")
    wait_for(lambda: record(cli, "orphan").abort, timeout=60, what="the abort recorded")
    requester.kill()
    requester.wait(timeout=10)
    run = final(cli, "orphan")
    assert (run.status, run.reason, run.exit_code) == (
        "terminated",
        "aborted by user",
        128 + signal.SIGKILL,
    )
    assert "caught TERM" not in job.log()
    assert job.gone()


def _kill_supervisor(cli: Cli, name: str) -> None:
    pid = record(cli, name).supervisor_pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(pid), timeout=10, what="the supervisor died")


def _record_abort(cli: Cli, name: str) -> None:
    """Record an abort from a process that does nothing else (and starts no supervisor)."""
    code = (
        "import sys; from iacrun.orchestrator.api import Orchestrator; "
        "Orchestrator().request_stop(sys.argv[1], reason='aborted by user', abort=True)"
    )
    subprocess.run([sys.executable, "-c", code, name], env=cli.env, check=True, timeout=60)


def test_an_abort_is_carried_out_by_the_supervisor_that_takes_over(cli: Cli, project: Path) -> None:
    job = start(cli, project, "adopted", "60s", EXITS)
    _kill_supervisor(cli, "adopted")
    _record_abort(cli, "adopted")
    assert record(cli, "adopted").active and not job.gone()
    assert cli("ps").returncode == 0  # notices the dead supervisor: a new one takes the run over
    run = final(cli, "adopted")
    assert (run.status, run.reason, run.exit_code) == (
        "terminated",
        "aborted by user",
        128 + signal.SIGKILL,
    )
    assert "caught TERM" not in job.log()
    assert job.gone()


def test_with_no_supervisor_alive_the_cli_aborts_the_job_itself(cli: Cli, project: Path) -> None:
    job = start(cli, project, "unsupervised", "60s", EXITS)
    _kill_supervisor(cli, "unsupervised")
    done = cli("stop", "-x", "unsupervised", timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "unsupervised: terminated (aborted by user)"
    assert "caught TERM" not in job.log()
    assert job.gone()


def test_stop_a_x_aborts_every_run(cli: Cli, project: Path) -> None:
    jobs = [start(cli, project, name, "60s", EXITS) for name in ("first", "second")]
    done = cli("stop", "-a", "-x", timeout=180)
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.splitlines()) == [
        "first: terminated (aborted by user)",
        "second: terminated (aborted by user)",
    ]
    for job in jobs:
        assert "caught TERM" not in job.log()
        assert job.gone()


def test_a_plain_stop_after_an_abort_stays_an_abort(cli: Cli, project: Path) -> None:
    job = start(cli, project, "kept", "1h", HANGS)
    _kill_supervisor(cli, "kept")  # so that the abort waits here, recorded, for the next stop
    _record_abort(cli, "kept")
    done = cli("stop", "kept", timeout=120)  # plain: carries out the abort recorded before it
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "kept: terminated (aborted by user)"
    assert "caught TERM" not in job.log()
    assert job.gone()


@pytest.fixture
def remote(cli: Cli, server: Server) -> Cli:
    """The CLI logged in to a real `iacrun server` (tests/cli/conftest.py) as its admin."""
    out = cli("login", server.url, "--token-stdin", input=ADMIN_TOKEN + "\n")
    assert out.returncode == 0, out.stderr
    return cli


def test_stop_x_through_a_server(remote: Cli, server: Server, project: Path) -> None:
    write_task(project, TRAPPING.format(grace="60s", on_term=EXITS))
    for name in ("remote-graceful", "remote-aborted"):
        done = remote("up", "-y", "-d", "-n", name, "task.dstack.yml")
        assert done.returncode == 0, done.stderr
    logs = {}
    for name in ("remote-graceful", "remote-aborted"):
        wait_for(lambda name=name: b"started" in _server_log(server, name), timeout=60, what=name)
        logs[name] = server_record(server, name).host
    aborted = remote("stop", "-x", "remote-aborted", timeout=120)
    assert aborted.returncode == 0, aborted.stderr
    assert aborted.stdout.strip() == "remote-aborted: terminated (aborted by admin)"
    graceful = remote("stop", "-y", "remote-graceful", timeout=120)
    assert graceful.returncode == 0, graceful.stderr
    assert graceful.stdout.strip() == "remote-graceful: terminated (stopped by admin)"
    assert b"caught TERM" not in _server_log(server, "remote-aborted")
    assert b"caught TERM" in _server_log(server, "remote-graceful")
    run = server_record(server, "remote-aborted")
    assert (run.exit_code, run.abort) == (128 + signal.SIGKILL, True)
    for host in logs.values():
        assert host is not None
        pgid = int((Path(host.run_dir) / "pgid").read_text())
        child = int((Path(host.run_dir) / "child.pid").read_text())
        assert not group_alive(pgid) and not pid_alive(child)


def _server_log(server: Server, name: str) -> bytes:
    try:
        return server_log(server, name)
    except (AssertionError, FileNotFoundError):  # not started yet
        return b""
