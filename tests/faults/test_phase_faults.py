"""Fault injection at the phases around the job, on the local and ssh backends: kill -9 of the
attached CLI or of the supervisor while the machine is being provisioned, while the code is
uploaded, and while the machine is given back.

Each phase is held open by a fault point (tests/faults/inject/sitecustomize.py: the supervisor
waits at the phase while a gate file exists, after saying it got there), never by a sleep. Every
case ends with no process of the run left, no ssh config entry, archive or partial file, a
truthful status and reason in `ps`, an events log that ends with that status, and `stop` and
`down` succeeding; each adds a row to the table printed after the tests."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from iacrun.orchestrator.host.sshconfig import SSHConfigEntries
from iacrun.orchestrator.registry import RunRecord
from iacrun.orchestrator.runner.runner import pid_alive
from tests.conftest import Cli, write_task
from tests.faults.test_local_faults import FINAL, kill9, processes_of, ps_row, record, wait_for
from tests.faults.test_ssh_faults import configure, events, unique

INJECT = Path(__file__).parent / "inject"
#: the harness's phase → the fault point that holds the supervisor in it
POINTS = {"provisioning": "provision", "upload": "upload", "teardown": "teardown"}

TASK = """
commands:
  - echo started
  - echo finished
"""


def held_at(cli: Cli, phase: str, gate: Path) -> None:
    """Every process `cli` starts (and the supervisors they spawn) stops at `phase` while
    `gate` exists."""
    gate.touch()
    paths = [str(INJECT), *filter(None, [cli.env.get("PYTHONPATH")])]
    cli.env["PYTHONPATH"] = os.pathsep.join(paths)
    cli.env["IACRUN_FAULT_HOLD"] = f"{POINTS[phase]}:{gate}"


def never_started(run: RunRecord) -> bool:
    """The run's folder on its host is there without the runner's state: its job never ran."""
    if run.host is None:
        return False
    folder = Path(run.host.run_dir)
    return folder.exists() and not (folder / "state.json").exists()


def expected(phase: str, victim: str) -> tuple[str, str | None]:
    """The status and the words of the reason a run must end with."""
    if victim == "cli" or phase == "teardown":  # the run goes on without the one killed
        return "done", None
    if phase == "provisioning":
        return "failed", "interrupted while provisioning"
    return "failed", "interrupted while uploading"


@pytest.mark.parametrize("victim", ["cli", "supervisor"])
@pytest.mark.parametrize("phase", list(POINTS))
@pytest.mark.parametrize("backend", ["local", "ssh"])
def test_kill_at_phase(
    request: pytest.FixtureRequest,
    cli: Cli,
    project: Path,
    tmp_path: Path,
    backend: str,
    phase: str,
    victim: str,
    outcomes: list[dict[str, str]],
) -> None:
    if backend == "ssh":
        configure(cli, request.getfixturevalue("sshd"))
    gate = tmp_path / "gate"
    held_at(cli, phase, gate)
    write_task(project, TASK)
    name = unique(f"{phase}-{victim}")
    attached = None
    if victim == "cli":
        attached = cli.popen("up", "-y", "-n", name, "task.dstack.yml")
    else:
        assert cli("up", "-y", "-d", "-n", name, "task.dstack.yml").returncode == 0
    reached = Path(f"{gate}.reached")
    wait_for(reached.exists, timeout=60)
    supervisor = int(reached.read_text())
    assert supervisor == record(cli, name).supervisor_pid
    kill9(attached.pid if attached is not None else supervisor)
    if attached is not None:
        attached.communicate()
    gate.unlink()  # the held supervisor, or the successor `ps` starts, goes on

    wait_for(lambda: ps_row(cli, name)["status"] in FINAL, timeout=90)
    row = ps_row(cli, name)
    run = record(cli, name)
    folders = [run.local_dir, *([run.host.run_dir] if run.host is not None else [])]
    wait_for(lambda: not any(processes_of(f) for f in folders), timeout=30)
    left = [p for f in folders for p in processes_of(f)]
    left += [p for p in (run.supervisor_pid, supervisor) if p and pid_alive(p)]
    entries = SSHConfigEntries(iacrun_dir=Path(cli.env["IACRUN_HOME"])).names()
    leftovers = [
        *(f"{len(left)} processes" for _ in left[:1]),
        *("ssh entry" for n in entries if n == name),
        *(str(p.name) for p in Path(run.local_dir).glob("*.tar.gz")),
        *(str(p.name) for p in Path(run.local_dir).glob("**/*.tmp*")),
        # on a host, the folder of a job that never started (partly shipped code, no state):
        # nothing in it is worth keeping, and no later clean-up would ever remove it
        *(["run folder on the host"] if backend == "ssh" and never_started(run) else []),
    ]
    stop = cli("stop", name)
    down = cli("down", name)
    outcomes.append(
        {
            "backend": backend,
            "phase": phase,
            "victim": victim,
            "status": str(row["status"]),
            "exit": str(row.get("exit_code")),
            "left over": ", ".join(leftovers) or "none",
            "stop+down": "ok" if stop.returncode == down.returncode == 0 else "FAILED",
        }
    )
    status, reason = expected(phase, victim)
    assert row["status"] == status, row
    if status == "done":
        assert row["exit_code"] == 0, row
        assert cli("logs", name).stdout.startswith("started\nfinished\n")  # the whole log
    else:
        assert reason in str(row["reason"]), row
        assert "started" not in cli("logs", name).stdout  # nothing ran
    assert events(cli, name).splitlines()[-1].split(" ", 1)[1].startswith(f"{status}:")
    assert not leftovers, leftovers
    assert stop.returncode == 0, stop.stderr
    assert down.returncode == 0, down.stderr
    assert json.loads(cli("ps", "-a", "--json").stdout)[0]["status"] == status
    if run.host is not None and backend == "ssh":
        shutil.rmtree(run.host.run_dir, ignore_errors=True)


def test_following_the_log_of_a_run_still_provisioning_waits_for_its_machine(
    cli: Cli, project: Path, tmp_path: Path
) -> None:
    """`logs -f` (and `--all-nodes -f`) on a run whose machine is not up yet waits for it and
    follows the job to its end, as through a server; it used to print nothing and exit 0."""
    gate = tmp_path / "gate"
    held_at(cli, "provisioning", gate)
    write_task(project, TASK)
    name = unique("follow-early")
    assert cli("up", "-y", "-d", "-n", name, "task.dstack.yml").returncode == 0
    wait_for(Path(f"{gate}.reached").exists, timeout=60)
    followers = [cli.popen("logs", "-f", name), cli.popen("logs", "-f", "--all-nodes", name)]
    for follower in followers:  # still waiting, not ended at once
        with pytest.raises(subprocess.TimeoutExpired):
            follower.wait(timeout=3)
    gate.unlink()
    outs = []
    for follower in followers:
        out, err = follower.communicate(timeout=90)
        assert follower.returncode == 0, err
        outs.append(out.decode().splitlines())
    assert outs[0][:2] == ["started", "finished"]
    assert outs[1][:2] == ["[0] started", "[0] finished"]
