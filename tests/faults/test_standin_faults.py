"""Fault injection on the stand-in cloud: `pulumi` killed (its process group) by whoever, while
the run's VM is being created. The supervisor's stack engine must destroy the VM the interrupted
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
from iacrun.stacks.engine import CALL_MARK, StackEngine
from tests.stacks.engine.support import skip_without_pulumi
from tests.stacks.engine.test_engine import descendants
from tests.standin.supervise import orchestrator
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


def marked_processes() -> list[int]:
    """Processes of any `pulumi` call of the engine (plugins included): none may outlive it."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                environ = Path(f"/proc/{entry}/environ").read_bytes()
                if f"{CALL_MARK}=".encode() in environ:
                    found.append(int(entry))
    return found


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
        [pulumi] = [
            p
            for p in descendants(supervisor.pid)
            if Path(f"/proc/{p}/comm").read_text().strip() == "pulumi"
        ]
        os.killpg(pulumi, signal.SIGKILL)  # `pulumi` and its process group
        assert supervisor.wait(timeout=300) is not None
    finally:
        hold.unlink(missing_ok=True)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(supervisor.pid, signal.SIGKILL)
        supervisor.wait()
    record = orch.registry.get_by_id(run.id)
    wait_for(lambda: not vm_pids(str(root)), timeout=30)
    left = [*vm_pids(str(root)), *marked_processes()]
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
