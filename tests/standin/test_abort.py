"""`iacrun stop -x` of a cloud run, on the stand-in cloud: the supervisor reaches the runner on
the VM over SSH and kills the job without its grace (its SIGTERM trap never runs), then the stack
is destroyed: no VM process, folder or stack is left."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from iacrun.orchestrator.models.runspec import build_run_spec
from iacrun.orchestrator.registry import RunRecord
from iacrun.stacks.engine import StackEngine
from tests.faults.test_standin_faults import _needs_tools  # noqa: F401 (pulumi and sshd, or skip)
from tests.standin.supervise import orchestrator
from tests.standin.vm import vm_pids

pytestmark = [pytest.mark.engine, pytest.mark.sshd]

TRAPPING = """type: task
stop_duration: 60
commands:
  - trap 'echo caught TERM; exit 3' TERM
  - echo started
  - sleep 600 & wait
"""


def wait_for(predicate: object, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def vm_log(run: RunRecord) -> str:
    try:
        return (Path(run.host.run_dir) / "log").read_text() if run.host else ""
    except OSError:
        return ""


def test_an_abort_of_a_cloud_run_kills_the_job_on_the_vm_then_destroys_it(
    tmp_path: Path,
) -> None:
    home, root = tmp_path / "home", tmp_path / "vm"
    home.mkdir()
    (tmp_path / "project").mkdir()
    task = tmp_path / "project" / "trapping.dstack.yml"
    task.write_text(TRAPPING)
    orch = orchestrator(home, root)
    spec = build_run_spec(task, environ={})
    run = orch.submit(spec, orch.plan(spec))
    wait_for(lambda: "started" in vm_log(orch.registry.get_by_id(run.id)))
    ended = orch.stop(run.name, reason="aborted by user", abort=True)
    assert (ended.status, ended.reason, ended.exit_code) == ("terminated", "aborted by user", 137)
    chunks: list[bytes] = []
    orch.logs(run.name, chunks.append)  # the copy kept at teardown: the VM is gone
    shown = b"".join(chunks).decode()
    assert "started" in shown and "caught TERM" not in shown
    assert "[iacrun] run terminated: aborted by user" in shown
    wait_for(lambda: not vm_pids(str(root)), timeout=30)
    assert StackEngine(home).stack_names() == [] and not root.exists()
    assert os.path.isdir(home)
