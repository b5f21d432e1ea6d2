"""A supervisor killed during teardown (or after a stop, before it stopped anything): its
successor resumes from the stack's state and never reconnects to a machine that may be gone."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from iacrun.orchestrator import supervisor as supervisor_module
from iacrun.orchestrator.host.transport import Host
from iacrun.orchestrator.registry import RunRecord, RunStatus
from tests.orchestrator.test_supervisor import Scripted, World


class StackScripted(Scripted):
    """The scripted backend as a cloud: its runs are stacks, deleting one ends the job."""

    def stack_name(self, run: RunRecord) -> str:
        return f"iacrun-{run.name}"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    world = World(tmp_path)
    yield world
    world.orch.registry.close()


@pytest.fixture
def no_reconnect(monkeypatch: pytest.MonkeyPatch) -> None:
    async def refuse(host: Host, **_: Any) -> Any:
        raise AssertionError(f"reconnected to {host.address} while resuming a teardown")

    monkeypatch.setattr(supervisor_module, "open_transport", refuse)


def deleted_vm(world: World) -> RunRecord:
    """A cloud run whose supervisor was killed in teardown: the VM's address answers no more."""
    run = world.submit("true")
    host = Host(kind="ssh", address="192.0.2.1", port=22, run_dir="/opt/iacrun/run")
    registry = world.orch.registry
    registry.update(run.id, status="provisioning", backend="scripted", host=host)
    registry.update(run.id, status="running")
    return run


def test_killed_during_teardown_resumes_from_the_stack(world: World, no_reconnect: None) -> None:
    run = deleted_vm(world)
    world.supervisor.finish(run.id, "done", None, 0)  # the job ended; teardown began
    world.supervisor.resume(run.id)
    final = world.record(run)
    assert (final.status, final.exit_code) == (RunStatus.DONE, 0)
    assert world.backend.terminated == [RunStatus.TERMINATING]


def test_a_teardown_that_failed_before_is_resumed_too(world: World, no_reconnect: None) -> None:
    run = deleted_vm(world)
    world.supervisor.finish(run.id, "failed", "exited (3)", 3)
    world.orch.registry.update(run.id, reason="teardown failed: boom; retry with iacrun down x")
    world.supervisor.resume(run.id)
    final = world.record(run)
    assert (final.status, final.reason, final.exit_code) == (RunStatus.FAILED, "exited (3)", 3)


def test_a_stopped_cloud_run_is_torn_down_without_the_host(
    world: World, no_reconnect: None
) -> None:
    backend = StackScripted()
    backend.registry_path = world.backend.registry_path
    world.backend = backend  # the supervisor's backend is a cloud's
    world.supervisor = world.make_supervisor(world.orch.registry)
    run = deleted_vm(world)
    world.orch.request_stop(run.name, reason="stopped by user")
    world.supervisor.resume(run.id)
    final = world.record(run)
    assert (final.status, final.reason) == (RunStatus.TERMINATED, "stopped by user")
    assert backend.terminated == [RunStatus.TERMINATING]
    assert json.loads((Path(run.local_dir) / "final").read_text())["status"] == "terminated"


def test_a_supervisor_killed_after_starting_the_job_is_followed_not_failed(world: World) -> None:
    """Killed between starting the job and recording `running`: its successor finds the job's
    state on the host and watches it to its end (the fault harness caught this window)."""
    import asyncio

    from iacrun.orchestrator.host.local import LocalTransport
    from iacrun.orchestrator.host.payload import pack_run
    from iacrun.orchestrator.host.runner_client import build_job, ship_and_start

    run = world.submit("echo started", "echo finished")
    host = Host(kind="local", run_dir=run.local_dir)
    world.orch.registry.update(run.id, status="provisioning", backend="scripted", host=host)
    archive, _, _, _ = pack_run(run.spec, Path(run.local_dir), 1.0)
    job = build_job(run.name, run.spec, host)
    asyncio.run(ship_and_start(LocalTransport(), host, job, str(archive)))
    world.supervisor.resume(run.id)
    final = world.record(run)
    assert (final.status, final.exit_code) == (RunStatus.DONE, 0), final.reason
    assert "finished" in (Path(run.local_dir) / "log").read_text()


def test_a_supervisor_killed_before_starting_the_job_fails_the_run(world: World) -> None:
    run = world.submit("echo never")
    host = Host(kind="local", run_dir=run.local_dir)
    world.orch.registry.update(run.id, status="provisioning", backend="scripted", host=host)
    packed = Path(run.local_dir) / "code.tar.gz"
    packed.write_bytes(b"half an archive")  # it died while shipping it
    world.supervisor.resume(run.id)
    assert not packed.exists()
    final = world.record(run)
    # its machine was recorded: it died while shipping the code (the fault harness's upload row)
    why = "interrupted while uploading the code; the job never started"
    assert (final.status, final.reason) == (RunStatus.FAILED, why)
