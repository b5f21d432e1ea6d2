"""Fault injection on the stand-in cloud: the supervisor or the runner on the VM killed while the
job runs or is stopped (the successor `refresh` starts settles the run and destroys the VM), and
`pulumi` killed (its process group) by whoever, while the run's VM is being created. The
supervisor's stack engine must destroy the VM the interrupted
update was making (issue 11 defect 1): the run ends failed with a reason saying why, no VM process
or folder, no stack and no plugin process is left, and `down` succeeds. Phases are held with a
gate (the VM's create is held open while a file exists), never sleeps."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from iacrun.orchestrator.models.runspec import build_run_spec
from iacrun.orchestrator.registry import RunRecord
from iacrun.stacks.engine import CALL_MARK, StackEngine
from tests.stacks.engine.support import skip_without_pulumi
from tests.stacks.engine.test_engine import descendants
from tests.standin.supervise import StandinOrchestrator, orchestrator
from tests.standin.test_orchestrated import write_project
from tests.standin.vm import SSHD, free_port, vm_pids

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.engine, pytest.mark.sshd]


@pytest.fixture(autouse=True)
def _needs_tools(request: pytest.FixtureRequest) -> None:
    skip_without_pulumi(request)
    if not os.path.exists(SSHD):
        pytest.skip(f"{SSHD} is missing: apt-get install openssh-server")


def wait_for(predicate: object, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def marked_processes(home: Path) -> list[int]:
    """Processes of any `pulumi` call of the engine of `home` (plugins included): none may
    outlive it. (Only this home's: other tests on the machine run engines of their own.)"""
    found = []
    mine = f"PULUMI_HOME={home / 'pulumi'}".encode()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
                if mine in environ and any(v.startswith(f"{CALL_MARK}=".encode()) for v in environ):
                    found.append(int(entry))
    return found


def dead(pid: int) -> bool:
    """The process has exited: gone, or a zombie its parent has not reaped yet (whatever its
    name: `python` or `python3`, as the venv that started it spells it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def comm(pid: int) -> str:
    """The process's name; "" once it has exited (a short-lived helper of `pulumi`)."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def test_pulumi_killed_while_the_vm_is_created(
    tmp_path: Path, outcomes: list[dict[str, str]]
) -> None:
    home, root, hold = tmp_path / "home", tmp_path / "vm", tmp_path / "hold"
    home.mkdir()
    hold.touch()
    task = write_project(tmp_path / "project", free_port())
    orch = orchestrator(home, root, hold=hold)
    spec = build_run_spec(task, environ={})
    run = orch.submit(spec, orch.plan(spec), supervise=False)
    supervisor = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.standin.supervise",
            str(home),
            str(root),
            str(run.id),
            "0",
            str(hold),
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for(lambda: Path(f"{hold}.reached").exists())
        assert vm_pids(str(root)), "the VM runs while its create is held open"
        [pulumi] = [p for p in descendants(supervisor.pid) if comm(p) == "pulumi"]
        os.killpg(pulumi, signal.SIGKILL)  # `pulumi` and its process group
        assert supervisor.wait(timeout=300) is not None
    finally:
        hold.unlink(missing_ok=True)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(supervisor.pid, signal.SIGKILL)
        supervisor.wait()
    record = orch.registry.get_by_id(run.id)
    wait_for(lambda: not vm_pids(str(root)), timeout=30)
    left = [*vm_pids(str(root)), *marked_processes(home)]
    stacks = StackEngine(home).stack_names()
    message = orch.down(run.name)
    outcomes.append(
        {
            "backend": "standin",
            "phase": "provisioning",
            "victim": "pulumi",
            "status": str(record.status),
            "exit": str(record.exit_code),
            "left over": "none" if not (left or stacks or root.exists()) else f"{left} {stacks}",
            "stop+down": "ok" if message.startswith(f"{run.name}: failed") else "FAILED",
        }
    )
    assert record.status == "failed", record
    assert "stack update" in (record.reason or "") or "pulumi" in (record.reason or ""), record
    assert not left and stacks == [] and not root.exists()
    assert message.startswith(f"{run.name}: failed"), message


GATED_TASK = """type: task
stop_duration: 3
commands:
  - trap 'echo got-term' TERM
  - echo started
  - while [ ! -e {gate} ]; do sleep 0.05 || true; done
  - echo finished
"""


def vm_log(run: RunRecord) -> str:
    try:
        return (Path(run.host.run_dir) / "log").read_text() if run.host else ""
    except OSError:
        return ""


@pytest.mark.parametrize("victim", ["supervisor", "runner"])
@pytest.mark.parametrize("phase", ["running", "stopping"])
def test_kill_on_the_standin_vm(
    tmp_path: Path, phase: str, victim: str, outcomes: list[dict[str, str]]
) -> None:
    """kill -9 of the supervisor or of the runner on the VM while the job runs or is stopped;
    the successor the next command starts (here `refresh`, as `iacrun ps` does) settles the run
    and destroys the VM."""
    home, root, gate = tmp_path / "home", tmp_path / "vm", tmp_path / "gate"
    home.mkdir()
    (tmp_path / "project").mkdir()
    task = tmp_path / "project" / "gated.dstack.yml"
    task.write_text(GATED_TASK.format(gate=gate))
    orch = orchestrator(home, root)
    spec = build_run_spec(task, environ={})
    run = orch.submit(spec, orch.plan(spec))
    first = orch.registry.get_by_id(run.id).supervisor_pid
    try:
        wait_for(lambda: "started" in vm_log(orch.registry.get_by_id(run.id)))
        run = orch.registry.get_by_id(run.id)
        assert run.supervisor_pid == first  # it replaced itself (exec): the same process
        assert first is not None and "cygrpc" not in Path(f"/proc/{first}/maps").read_text()
        if phase == "stopping":
            orch.request_stop(run.name)
            wait_for(lambda: "got-term" in vm_log(run))  # inside the job's 3s grace
        assert run.host is not None
        pid = first if victim == "supervisor" else int(Path(run.host.run_dir, "pid").read_text())
        os.kill(pid, signal.SIGKILL)
        if phase == "running":
            gate.touch()

        def final() -> bool:
            return orch.refresh(orch.registry.get_by_id(run.id)).status.is_final

        wait_for(final, timeout=180)
    finally:
        gate.touch()
    record = orch.registry.get_by_id(run.id)
    wait_for(lambda: not vm_pids(str(root)), timeout=30)
    left = [*vm_pids(str(root)), *marked_processes(home)]
    stacks = StackEngine(home).stack_names()
    chunks: list[bytes] = []
    orch.logs(run.name, chunks.append)  # the copy kept at teardown: the VM is gone
    shown = b"".join(chunks).decode()
    message = orch.down(run.name)
    expect = ("done", 0) if phase == "running" else ("terminated", None)
    outcomes.append(
        {
            "backend": "standin",
            "phase": phase,
            "victim": victim,
            "status": str(record.status),
            "exit": str(record.exit_code),
            "left over": "none" if not (left or stacks or root.exists()) else f"{left} {stacks}",
            "stop+down": "ok" if message.startswith(f"{run.name}: {expect[0]}") else "FAILED",
        }
    )
    if phase == "running":
        assert (record.status, record.exit_code) == expect, record.reason
    else:  # the VM's deletion may be what ended the job: then no exit code was seen
        assert record.status == "terminated" and record.exit_code in (137, None), record
    assert not left and stacks == [] and not root.exists()
    if phase == "running":
        assert "started\nfinished\n" in shown
    assert message.startswith(f"{run.name}: {expect[0]}"), message


SHORT_TASK = """type: task
commands:
  - echo started
  - echo finished
"""


def settled(orch: StandinOrchestrator, run: RunRecord, root: Path, home: Path) -> RunRecord:
    """The run once final (`refresh`, as `iacrun ps` does, replaces a dead supervisor), after
    the VM's processes are gone."""
    wait_for(lambda: orch.refresh(orch.registry.get_by_id(run.id)).status.is_final, timeout=180)
    wait_for(lambda: not vm_pids(str(root)), timeout=30)
    with contextlib.suppress(AssertionError):  # the engine's last plugins exiting
        wait_for(lambda: not marked_processes(home), timeout=10)
    return orch.registry.get_by_id(run.id)


def leftovers(root: Path, home: Path) -> str:
    left = [*vm_pids(str(root)), *marked_processes(home)]
    stacks = StackEngine(home).stack_names()
    found = [
        *(f"{len(left)} processes ({' '.join(sorted({comm(p) for p in left}))})" for _ in left[:1]),
        *(f"stack {s}" for s in stacks),
        *(["VM folder"] if root.exists() else []),
    ]
    return ", ".join(found) or "none"


@pytest.mark.parametrize("victim", ["pulumi", "supervisor"])
def test_kill_while_the_vm_is_deleted(
    tmp_path: Path, victim: str, outcomes: list[dict[str, str]]
) -> None:
    """kill -9 of `pulumi` (its process group) or of the supervisor while the VM's delete is held
    open at teardown. `pulumi`: the dynamic provider midway through the delete (in a process
    group of its own) must not be orphaned, and the pending delete must not be forgotten (the
    supervisor's retry deletes the VM). The supervisor: its `pulumi` goes on or dies without it,
    and the successor finishes the destroy, reaping whatever the dead one's call left. Either
    way the run ends as its job did, and nothing is left."""
    home, root, gate = tmp_path / "home", tmp_path / "vm", tmp_path / "gate"
    home.mkdir()
    gate.touch()
    (tmp_path / "project").mkdir()
    task = tmp_path / "project" / "short.dstack.yml"
    task.write_text(SHORT_TASK)
    orch = orchestrator(home, root, hold_delete=gate)
    spec = build_run_spec(task, environ={})
    run = orch.submit(spec, orch.plan(spec))
    try:
        reached = Path(f"{gate}.reached")
        wait_for(
            lambda: reached.exists() or orch.registry.get_by_id(run.id).status.is_final,
            timeout=180,
        )
        assert reached.exists(), (Path(run.local_dir) / "events").read_text()
        provider = int(reached.read_text())
        record = orch.registry.get_by_id(run.id)
        assert record.status == "terminating" and vm_pids(str(root)), record
        assert record.supervisor_pid is not None
        [pulumi] = [p for p in descendants(record.supervisor_pid) if comm(p) == "pulumi"]
        assert os.getpgid(provider) != os.getpgid(pulumi)  # out of reach of a killpg
        if victim == "pulumi":
            os.killpg(pulumi, signal.SIGKILL)
            # the engine reaps the provider of its killed call: while the gate exists, an
            # orphaned one would stay (its delete held open, the VM running) for 300s
            wait_for(lambda: comm(provider) == "", timeout=30)
        else:
            os.kill(record.supervisor_pid, signal.SIGKILL)
            wait_for(lambda: dead(record.supervisor_pid), timeout=30)
    finally:
        gate.unlink(missing_ok=True)
    record = settled(orch, run, root, home)
    left = leftovers(root, home)
    events = (Path(record.local_dir) / "events").read_text()
    message = orch.down(run.name)
    outcomes.append(
        {
            "backend": "standin",
            "phase": "teardown",
            "victim": victim,
            "status": str(record.status),
            "exit": str(record.exit_code),
            "left over": left,
            "stop+down": "ok" if message.startswith(f"{run.name}: done") else "FAILED",
        }
    )
    assert (record.status, record.exit_code) == ("done", 0), events
    assert left == "none", events
    assert message.startswith(f"{run.name}: done"), message
    chunks: list[bytes] = []
    orch.logs(run.name, chunks.append)
    assert b"started\nfinished\n" in b"".join(chunks)


def follower(home: Path, root: Path, name: str, out: Path) -> subprocess.Popen[bytes]:
    """An attached CLI following the run (tests/standin/follow.py), its output in `out`."""
    with open(out, "wb") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.standin.follow", str(home), str(root), name],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@pytest.mark.parametrize(
    ("phase", "victim"),
    [("provisioning", "cli"), ("provisioning", "supervisor"), ("running", "cli")],
)
def test_kill_attached_or_supervisor_on_the_standin(
    tmp_path: Path, phase: str, victim: str, outcomes: list[dict[str, str]]
) -> None:
    """kill -9 of the attached CLI (following the run) while the VM is created or the job runs,
    or of the supervisor while the VM is created (its create held open, the VM running). The
    run goes on without its follower (done, the whole log kept); without its supervisor, the
    successor fails it as interrupted and destroys the VM. Nothing is left either way."""
    home, root, hold, gate = (
        tmp_path / "home",
        tmp_path / "vm",
        tmp_path / "hold",
        tmp_path / "gate",
    )
    home.mkdir()
    (tmp_path / "project").mkdir()
    task = tmp_path / "project" / "gated.dstack.yml"
    task.write_text(GATED_TASK.format(gate=gate))
    if phase == "provisioning":
        hold.touch()
    orch = orchestrator(home, root, hold=hold)
    spec = build_run_spec(task, environ={})
    run = orch.submit(spec, orch.plan(spec))
    out = tmp_path / "attached.out"
    attached = follower(home, root, run.name, out)
    try:
        if phase == "provisioning":
            wait_for(Path(f"{hold}.reached").exists, timeout=180)
            assert vm_pids(str(root)), "the VM runs while its create is held open"
            wait_for(lambda: b"[iacrun] creating stack" in out.read_bytes(), timeout=60)
        else:
            wait_for(lambda: b"started\n" in out.read_bytes(), timeout=180)
        if victim == "cli":
            os.kill(attached.pid, signal.SIGKILL)
        else:
            supervisor = orch.registry.get_by_id(run.id).supervisor_pid
            assert supervisor is not None
            os.kill(supervisor, signal.SIGKILL)
        assert attached.wait(timeout=180) is not None  # a follower of a failed run ends too
    finally:
        hold.unlink(missing_ok=True)
        gate.touch()
        if attached.poll() is None:
            attached.kill()
            attached.wait()
    record = settled(orch, run, root, home)
    left = leftovers(root, home)
    chunks: list[bytes] = []
    orch.logs(run.name, chunks.append)  # the copy kept at teardown: the VM is gone
    message = orch.down(run.name)
    expect = "done" if victim == "cli" else "failed"
    outcomes.append(
        {
            "backend": "standin",
            "phase": phase,
            "victim": victim,
            "status": str(record.status),
            "exit": str(record.exit_code),
            "left over": left,
            "stop+down": "ok" if message.startswith(f"{run.name}: {expect}") else "FAILED",
        }
    )
    events = (Path(record.local_dir) / "events").read_text()
    if victim == "cli":
        assert (record.status, record.exit_code) == ("done", 0), events
        assert b"started\nfinished\n" in b"".join(chunks)
    else:
        assert record.status == "failed", events
        assert "interrupted while provisioning" in (record.reason or ""), events
        assert b"started" not in b"".join(chunks)
    assert left == "none", events
    assert message.startswith(f"{run.name}: {expect}"), message
