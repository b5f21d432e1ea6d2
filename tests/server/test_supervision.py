"""The server's supervision pool: runs supervised by threads of one process under leases, on
SQLite and on a real PostgreSQL, with the real local transport and runner."""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from iacrun.orchestrator.api import Orchestrator
from iacrun.orchestrator.backends.base import Backend, ProgressCallback
from iacrun.orchestrator.host.transport import Host
from iacrun.orchestrator.models.requirements import Requirements
from iacrun.orchestrator.models.settings import Settings
from iacrun.orchestrator.offers.model import InstanceResources, Offer
from iacrun.orchestrator.offers.plan import OfferPlan
from iacrun.orchestrator.paths import UMASK_ENV
from iacrun.orchestrator.registry import RunRecord
from iacrun.server.supervision import SupervisionPool, new_owner
from tests.conftest import command_spec


class Here(Backend):
    """This machine, through a run folder of its own (the local transport and runner)."""

    name = "here"

    def offers(self, requirements: Requirements) -> list[Offer]:
        return [
            Offer(
                backend="here",
                region="here",
                instance_type="box",
                resources=InstanceResources(cpus=1, memory_gb=1),
                price=0.0,
            )
        ]

    def provision(self, run: RunRecord, offer: Offer, progress: ProgressCallback) -> Host:
        return Host(kind="local", run_dir=run.local_dir)

    def terminate(self, run: RunRecord) -> None:
        pass


class Server:
    def __init__(self, home: Path, project: Path) -> None:
        self.project = project
        self.backend = Here()
        self.orch = Orchestrator(home=home, settings=Settings(), backends=[self.backend])
        self.pools: list[SupervisionPool] = []

    def pool(self, **kwargs: object) -> SupervisionPool:
        pool = SupervisionPool(self.orch, **kwargs)  # type: ignore[arg-type]
        self.pools.append(pool)
        return pool

    def submit(self, *commands: str, name: str | None = None) -> RunRecord:
        spec = command_spec(self.project, *commands, name=name)
        plan = OfferPlan(offers=self.backend.offers(Requirements()))
        return self.orch.submit(spec, plan, supervise=False)

    def get(self, run: RunRecord) -> RunRecord:
        return self.orch.registry.get_by_id(run.id)

    def wait(self, until: Callable[[], bool], timeout: float = 60) -> None:
        end = time.monotonic() + timeout
        while not until():
            if time.monotonic() > end:
                raise AssertionError("timed out waiting")
            time.sleep(0.05)


@pytest.fixture
def server(
    registry_target: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Server]:
    if registry_target.startswith("postgresql://"):
        monkeypatch.setenv("IACRUN_DATABASE_URL", registry_target)
    else:
        monkeypatch.delenv("IACRUN_DATABASE_URL", raising=False)
    # the pool sets the process's umask (as a detached supervisor does): give the test's back
    umask = os.umask(0o022)
    os.umask(umask)
    monkeypatch.delenv(UMASK_ENV, raising=False)
    project = tmp_path / "project"
    project.mkdir()
    server = Server(tmp_path / "home", project)
    yield server
    for pool in server.pools:
        pool.stop()
    os.umask(umask)


def test_runs_are_supervised_by_threads_of_one_process(server: Server) -> None:
    runs = [server.submit(f"echo hello {i}", "sleep 0.5") for i in range(6)]
    pool = server.pool(ttl=5)
    pool.start()
    server.wait(lambda: all(not server.get(r).active for r in runs))
    for i, run in enumerate(runs):
        done = server.get(run)
        assert (done.status, done.exit_code) == ("done", 0), done.reason
        assert done.supervisor_pid is None  # no process of its own
        assert done.lease_owner is None  # released when it ended
        assert f"hello {i}" in (Path(done.local_dir) / "log").read_text()
        assert [e.status for e in server.orch.registry.history(run.id)] == [
            "submitted",
            "provisioning",
            "running",
            "terminating",
            "done",
        ]
    assert pool.supervising() == []


def test_a_submit_is_picked_up_at_once_when_woken(server: Server) -> None:
    pool = server.pool(ttl=600, scan_every=600)  # no heartbeat during the test
    pool.start()
    time.sleep(0.2)  # the first beat found nothing
    run = server.submit("true")
    pool.wake()
    server.wait(lambda: not server.get(run).active, timeout=30)
    assert server.get(run).status == "done"


def test_what_the_threads_write_is_private(server: Server) -> None:
    os.umask(0o022)  # a shell's usual umask
    pool = server.pool(ttl=5)
    pool.start()  # as the server starts: before any submit
    run = server.submit("echo private")
    pool.wake()
    server.wait(lambda: not server.get(run).active)
    assert os.environ[UMASK_ENV] == "022"  # the job gets the user's umask back
    for name in ("events", "offers.json", "final"):
        mode = stat.S_IMODE((Path(run.local_dir) / name).stat().st_mode)
        assert mode == 0o600, f"{name}: {mode:o}"


def test_a_run_whose_lease_expired_is_taken_over(server: Server) -> None:
    registry = server.orch.registry
    run = server.submit("true")
    # a server died while the run was provisioning: its lease ran out
    registry.update(run.id, status="provisioning")
    registry.db.execute(
        "UPDATE runs SET lease_owner = ?, lease_expires = ? WHERE id = ?",
        ("dead-server", time.time() - 1, run.id),
    )
    live = server.submit("sleep 30")
    assert registry.acquire_lease(live.id, "live-server", ttl=600)
    pool = server.pool(ttl=5)
    pool.start()
    server.wait(lambda: not server.get(run).active)
    # taken over with `resume`, as the CLI takes over a supervisor that died
    assert (server.get(run).status, server.get(run).reason) == (
        "failed",
        "interrupted while provisioning",
    )
    assert "taking the run over" in (Path(run.local_dir) / "events").read_text()
    assert live.id not in pool.supervising()
    assert server.get(live).lease_owner == "live-server"  # a live lease is left alone
    registry.release_lease(live.id, "live-server")
    server.orch.request_stop(live.name)


def test_a_stop_goes_to_the_pool_that_supervises_the_run(server: Server) -> None:
    run = server.submit("echo started", "sleep 60")
    pool = server.pool(ttl=5)
    pool.start()
    server.wait(lambda: server.get(run).status == "running")
    assert server.orch.supervised(server.get(run))  # its lease says a pool acts on a stop
    stopped = server.orch.stop(run.name, wait=30)
    assert stopped.status == "terminated"
    assert "stopped by user" in (stopped.reason or "")
    server.wait(lambda: pool.supervising() == [])


def test_stop_leaves_the_runs_running_and_their_leases_to_expire(server: Server) -> None:
    run = server.submit("sleep 60")
    pool = server.pool(ttl=3)
    pool.start()
    server.wait(lambda: server.get(run).status == "running")
    pool.stop()
    held = server.get(run)
    assert held.active and held.lease_owner == pool.owner
    time.sleep(1.5)  # past a heartbeat: nothing renews it any more
    assert server.get(run).lease_expires == held.lease_expires
    server.orch.request_stop(run.name)  # the thread (still alive here) ends it
    server.wait(lambda: not server.get(run).active)


def test_a_lease_taken_by_another_server_is_not_released(server: Server) -> None:
    registry = server.orch.registry
    run = server.submit("sleep 2")
    pool = server.pool(ttl=600, scan_every=600)
    pool.start()
    server.wait(lambda: server.get(run).status == "running")
    # this process stalled past its lease, and another server took the run
    registry.db.execute("UPDATE runs SET lease_owner = ? WHERE id = ?", ("thief", run.id))
    pool.renew()
    assert pool.lost == {run.id}
    server.wait(lambda: pool.supervising() == [])
    assert server.get(run).lease_owner == "thief"


def test_owner_ids_are_unique_per_process() -> None:
    first, second = new_owner(), new_owner()
    assert first != second
    host, pid, _ = first.split(":")
    assert int(pid) == os.getpid() and host


def test_a_thread_never_sheds_the_engine_by_exec(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a detached supervisor that loaded the Pulumi engine exec's itself anew; a pool's thread
    # doing so would replace the whole server process
    import sys
    import types

    from iacrun.orchestrator.supervisor import Supervisor

    monkeypatch.setitem(sys.modules, "pulumi", types.ModuleType("pulumi"))
    shed: list[int] = []

    def make() -> Supervisor:
        supervisor = server.orch.supervisor()
        supervisor.shed = shed.append
        return supervisor

    pool = server.pool(ttl=5, supervisor=make)
    pool.start()
    run = server.submit("true")
    pool.wake()
    server.wait(lambda: not server.get(run).active)
    assert server.get(run).status == "done"
    assert shed == []


class Clock:
    """The registry's clock, moved by the test (leases expire when it says)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _take_over(server: Server, run: RunRecord, clock: Clock, ttl: float) -> None:
    """This server stalled past its lease, and another server took the run over."""
    clock.now += ttl + 1
    assert server.orch.registry.acquire_lease(run.id, "other-server", ttl=600)


def test_a_thread_that_lost_its_lease_never_writes_the_run_again(server: Server) -> None:
    # the server stalls past its lease and the run ends meanwhile: when it wakes, the run belongs
    # to the other server, which records how it ended; this one must not
    clock = Clock()
    server.orch.registry.clock = clock
    ttl = 600.0
    run = server.submit("echo started", "sleep 1")
    pool = server.pool(ttl=ttl, scan_every=600)  # no heartbeat notices the loss
    pool.start()
    server.wait(lambda: server.get(run).status == "running")
    _take_over(server, run, clock, ttl)
    seen = [e.status for e in server.orch.registry.history(run.id)]
    server.wait(lambda: pool.supervising() == [])  # the job ended, the thread went on to it
    after = server.get(run)
    assert (after.status, after.lease_owner) == ("running", "other-server")
    assert [e.status for e in server.orch.registry.history(run.id)] == seen
    events = (Path(run.local_dir) / "events").read_text()
    assert "lost the run's lease to another server" in events
    # the run's new supervisor settles it from where the job is
    server.orch.registry.release_lease(run.id, "other-server")
    taker = server.pool(ttl=ttl, scan_every=600)
    taker.start()
    server.wait(lambda: not server.get(run).active)
    assert server.get(run).status == "done"


def test_a_lost_lease_stops_the_thread_at_once_and_leaves_the_job_alone(
    server: Server,
) -> None:
    clock = Clock()
    server.orch.registry.clock = clock
    ttl = 600.0
    run = server.submit("echo started", "sleep 60")
    pool = server.pool(ttl=ttl, scan_every=600)
    pool.start()
    server.wait(lambda: server.get(run).status == "running")
    _take_over(server, run, clock, ttl)
    pool.renew()  # the heartbeat after the stall: the run is no longer this server's
    assert pool.lost == {run.id}
    server.wait(lambda: pool.supervising() == [])  # long before the job's 60 s
    state = json.loads((Path(server.get(run).local_dir) / "state.json").read_text())
    assert state["status"] == "running"  # the job was not stopped by the server that lost it
    assert server.get(run).status == "running"
    # the other server stops it (here: a pool with another owner, after the lease is free)
    server.orch.registry.release_lease(run.id, "other-server")
    taker = server.pool(ttl=ttl, scan_every=600)
    taker.start()
    server.wait(lambda: server.get(run).lease_owner == taker.owner)
    server.orch.request_stop(run.name)
    server.wait(lambda: not server.get(run).active)
    assert server.get(run).status == "terminated"
