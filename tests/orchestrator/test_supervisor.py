"""The run's state machine in-process: a scripted backend, the real local transport and runner.

No pulumi and no sshd: the backend gives a local run folder as the run's host, and fails,
raises CapacityError or lets a stop in on cue. Teardown delays and sleeps are injected."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from iacrun.orchestrator.api import Orchestrator
from iacrun.orchestrator.backends.base import Backend, ProgressCallback
from iacrun.orchestrator.backends.failover import Backoff
from iacrun.orchestrator.errors import BackendError, CapacityError, NoOfferError
from iacrun.orchestrator.host.local import LocalTransport
from iacrun.orchestrator.host.runner_client import build_job, read_state, ship_and_start
from iacrun.orchestrator.host.transport import Host
from iacrun.orchestrator.host.workdir import pack
from iacrun.orchestrator.models.requirements import Requirements
from iacrun.orchestrator.models.runspec import RunSpec
from iacrun.orchestrator.models.settings import Settings
from iacrun.orchestrator.models.taskfile import RetrySpec
from iacrun.orchestrator.offers.model import InstanceResources, Offer
from iacrun.orchestrator.offers.plan import OfferPlan
from iacrun.orchestrator.registry import Registry, RunRecord, RunStatus
from iacrun.orchestrator.supervisor import EventLog, Supervisor
from tests.conftest import command_spec

Outcome = Exception | Callable[[RunRecord], None] | None


class Scripted(Backend):
    """Provisions a local run folder. Each call takes the next outcome of its script (the last
    repeats): an exception to raise, a function to call with the run first, or None."""

    name = "scripted"

    def __init__(self) -> None:
        self.provisions: list[Outcome] = [None]
        self.terminations: list[Outcome] = [None]
        self.provisioned: list[str] = []
        self.terminated: list[RunStatus] = []  # the run's status at each terminate call
        self.registry_path: Path | None = None
        #: per offers() call, the note of machines busy right now, or None for free (last repeats)
        self.busy: list[str | None] = [None]

    def offers(self, requirements: Requirements) -> list[Offer]:
        note = self.busy.pop(0) if len(self.busy) > 1 else self.busy[0]
        if note is not None:
            return [offer("box").model_copy(update={"available": False, "note": note})]
        return [offer("box"), offer("other")]

    def provision(self, run: RunRecord, offer: Offer, progress: ProgressCallback) -> Host:
        self.provisioned.append(offer.instance_type)
        _play(self.provisions, run)
        return Host(kind="local", run_dir=run.local_dir)

    def terminate(self, run: RunRecord) -> None:
        assert self.registry_path is not None
        registry = Registry(self.registry_path)  # called from any thread
        try:
            self.terminated.append(registry.get_by_id(run.id).status)
        finally:
            registry.close()
        _play(self.terminations, run)


def _play(script: list[Outcome], run: RunRecord) -> None:
    outcome = script.pop(0) if len(script) > 1 else script[0]
    if isinstance(outcome, Exception):
        raise outcome
    if outcome is not None:
        outcome(run)


def offer(instance_type: str) -> Offer:
    return Offer(
        backend="scripted",
        region="here",
        instance_type=instance_type,
        resources=InstanceResources(cpus=1, memory_gb=1),
        price=0.1 if instance_type == "box" else 0.2,
    )


class World:
    def __init__(self, tmp_path: Path) -> None:
        self.home = tmp_path / "iacrun"
        self.project = tmp_path / "project"
        self.project.mkdir()
        self.backend = Scripted()
        self.orch = Orchestrator(home=self.home, settings=Settings(), backends=[self.backend])
        self.backend.registry_path = self.home / "registry.db"
        self.slept: list[float] = []
        self.supervisor = self.make_supervisor(self.orch.registry)

    def make_supervisor(self, registry: Registry) -> Supervisor:
        return Supervisor(
            registry,
            [self.backend],
            home=self.home,
            upload_limit_gb=1.0,
            sleep=self.slept.append,
            teardown_retries=(5.0, 15.0),
            poll=0.05,
        )

    def submit(self, *commands: str, retry: RetrySpec | None = None) -> RunRecord:
        return self.orch.submit(self.spec(*commands, retry=retry), self.plan(), supervise=False)

    def plan(self) -> OfferPlan:
        return OfferPlan(offers=self.backend.offers(Requirements()))

    def spec(self, *commands: str, retry: RetrySpec | None = None) -> RunSpec:
        return command_spec(self.project, *commands, retry=retry)

    def record(self, run: RunRecord) -> RunRecord:
        return self.orch.registry.get_by_id(run.id)

    def waiting_supervisor(self, clock: FakeClock) -> Supervisor:
        """A supervisor whose waits for capacity pass on `clock` at once, without jitter."""
        return Supervisor(
            self.orch.registry,
            [self.backend],
            home=self.home,
            upload_limit_gb=1.0,
            sleep=clock.sleep,
            clock=clock,
            backoff=Backoff(first=5, most=60, jitter=0),
            poll=0.05,
        )

    def events(self, run: RunRecord) -> list[str]:
        return EventLog.of(run).read_from(0)[1]

    def history(self, run: RunRecord) -> list[tuple[str, str | None]]:
        return [(e.status.value, e.reason) for e in self.orch.registry.history(run.id)]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []
        self.on_sleep: Callable[[], None] = lambda: None

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        self.on_sleep()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    world = World(tmp_path)
    yield world
    world.orch.registry.close()


def job_pid(run: RunRecord) -> int | None:
    """The runner's process, as the runner recorded it in the run folder."""
    try:
        return int((Path(run.local_dir) / "pid").read_text())
    except (OSError, ValueError):
        return None


def test_a_run_goes_through_every_state(world: World) -> None:
    run = world.submit("echo hello from the job")
    world.supervisor.supervise(run.id)
    final = world.record(run)
    assert (final.status, final.reason, final.exit_code) == (RunStatus.DONE, "exited (0)", 0)
    assert final.host == Host(kind="local", run_dir=run.local_dir)
    assert final.offer == offer("box") and final.finished_at is not None
    assert [s for s, _ in world.history(run)] == [
        "submitted",
        "provisioning",
        "running",
        "terminating",
        "done",
    ]
    assert b"hello from the job" in (Path(run.local_dir) / "log").read_bytes()
    assert world.backend.terminated == [RunStatus.TERMINATING]


def test_a_teardown_that_fails_twice_then_succeeds(world: World) -> None:
    world.backend.terminations = [BackendError("api timeout"), BackendError("throttled"), None]
    run = world.submit("true")
    world.supervisor.supervise(run.id)
    # the run became final only after the third call gave the machine back
    assert world.backend.terminated == [RunStatus.TERMINATING] * 3
    assert world.slept == [5.0, 15.0]
    final = world.record(run)
    assert final.status is RunStatus.DONE and final.reason == "exited (0)"
    events = world.events(run)
    assert "teardown failed: api timeout" in events and "teardown failed: throttled" in events
    assert events[-1] == "done: exited (0)"


def test_a_teardown_that_keeps_failing_stays_visible(world: World) -> None:
    world.backend.terminations = [BackendError("gone wrong")]
    run = world.submit("true")
    world.supervisor.supervise(run.id)
    final = world.record(run)
    assert len(world.backend.terminated) == 3 and world.slept == [5.0, 15.0]
    assert final.status is RunStatus.TERMINATING and final.active
    assert final.reason == f"teardown failed: gone wrong; retry with iacrun down {run.name}"


def test_a_failure_during_provisioning(world: World) -> None:
    world.backend.provisions = [CapacityError("sold out"), BackendError("the API said no")]
    run = world.submit("true")
    world.supervisor.supervise(run.id)
    final = world.record(run)
    assert world.backend.provisioned == ["box", "other"]  # capacity moves on, an error stops
    assert (final.status, final.reason) == (RunStatus.FAILED, "the API said no")
    assert final.backend == "scripted" and final.instance_type == "other" and final.host is None
    assert world.backend.terminated == [RunStatus.TERMINATING]  # what it made is torn down
    assert world.history(run)[-2:] == [
        ("terminating", "the API said no"),
        ("failed", "the API said no"),
    ]
    assert not (Path(run.local_dir) / "state.json").exists()  # no job was started


def test_stop_racing_provisioning(world: World) -> None:
    """`iacrun stop` lands while the machine is being provisioned: nothing is left running."""
    stopper: list[RunRecord] = []
    threads: list[threading.Thread] = []

    def stop_meanwhile(run: RunRecord) -> None:
        # the supervisor is alive (this process): stop records why and waits for it
        world.orch.registry.update(run.id, supervisor_pid=os.getpid())
        other = Orchestrator(home=world.home, settings=Settings(), backends=[world.backend])
        thread = threading.Thread(target=lambda: stopper.append(other.stop(run.name, wait=30)))
        thread.start()
        threads.append(thread)
        end = time.monotonic() + 10
        while world.record(run).status != RunStatus.TERMINATING:
            assert time.monotonic() < end
            time.sleep(0.02)

    world.backend.provisions = [stop_meanwhile]
    run = world.submit("sleep 30")
    world.supervisor.supervise(run.id)
    threads[0].join(timeout=30)
    final = world.record(run)
    assert (final.status, final.reason) == (RunStatus.TERMINATED, "stopped by user")
    assert stopper and stopper[0].status is RunStatus.TERMINATED
    assert "running" not in [s for s, _ in world.history(run)]
    assert job_pid(final) is None  # stopped before its code was shipped: the job never started
    assert world.backend.terminated == [RunStatus.TERMINATING]


def test_stop_before_the_first_attempt_provisions_nothing(world: World) -> None:
    run = world.submit("true")
    world.orch.registry.update(run.id, status="terminating", reason="stopped by user")
    world.supervisor.supervise(run.id)
    assert world.backend.provisioned == []
    final = world.record(run)
    assert (final.status, final.reason) == (RunStatus.TERMINATED, "stopped by user")


def test_retry_after_error(world: World) -> None:
    marker = world.project / "attempts"
    run = world.submit(
        f"echo attempt >> {marker}",
        f"test $(wc -l < {marker}) -ge 2 || exit 5",
        "echo second time lucky",
        retry=RetrySpec(on_events=["error"], duration=60),
    )
    world.supervisor.supervise(run.id)
    final = world.record(run)
    assert (final.status, final.attempt, final.exit_code) == (RunStatus.DONE, 2, 0)
    assert marker.read_text().count("attempt") == 2
    assert ("pending", "attempt 1 exited (5); retrying") in world.history(run)
    assert b"second time lucky" in (Path(run.local_dir) / "log").read_bytes()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_dead_supervisor_is_taken_over_once(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run left `running` by a supervisor that died: refresh starts exactly one successor,
    which watches the job to its end and tears down."""
    run = world.submit("sleep 1", "echo survived")
    # what the dead supervisor had done: provisioned, started the job, recorded it running
    host = Host(kind="local", run_dir=run.local_dir)
    archive = Path(run.local_dir) / "code.tar.gz"
    pack(world.project, archive, 1.0)
    job = build_job(run.name, run.spec, host)
    asyncio.run(ship_and_start(LocalTransport(), host, job, str(archive)))
    registry = world.orch.registry
    registry.update(run.id, status="provisioning", backend="scripted", host=host)
    registry.update(run.id, status="running", supervisor_pid=_dead_pid())
    stale = world.record(run)

    spawned: list[tuple[int, bool]] = []

    def spawn(self: Orchestrator, run: RunRecord, *, resume: bool = False) -> None:
        spawned.append((run.id, resume))

    monkeypatch.setattr(Orchestrator, "_spawn_supervisor", spawn)
    others = [Orchestrator(home=world.home, settings=Settings()) for _ in range(3)]
    for orch in [world.orch, *others]:  # every `iacrun ps` notices; one takes the run over
        assert orch.refresh(stale).active
    assert spawned == [(run.id, True)]
    assert world.record(run).supervisor_pid == os.getpid()

    world.supervisor.resume(run.id)  # what the spawned `supervisor RUN_ID --resume` does
    final = world.record(run)
    assert (final.status, final.exit_code) == (RunStatus.DONE, 0)
    assert world.events(run)[0] == "the previous supervisor exited; taking the run over"
    assert b"survived" in (Path(run.local_dir) / "log").read_bytes()
    assert world.backend.terminated == [RunStatus.TERMINATING]
    state = asyncio.run(read_state(LocalTransport(), host))
    assert state["status"] == "done"
    for orch in others:
        orch.registry.close()


def test_attach_follows_a_live_run_then_resumes_from_where_it_stopped(world: World) -> None:
    run = world.submit("echo one", "sleep 0.5", "echo two")

    def supervise() -> None:  # as its own process would: its own registry
        registry = Registry(world.home / "registry.db")
        try:
            world.make_supervisor(registry).supervise(run.id)
        finally:
            registry.close()

    thread = threading.Thread(target=supervise)
    thread.start()
    shown: list[bytes] = []
    events: list[str] = []
    final = world.orch.attach(run.name, shown.append, on_event=events.append)
    thread.join(timeout=30)
    assert (final.status, final.exit_code) == (RunStatus.DONE, 0)
    log = (Path(run.local_dir) / "log").read_bytes()
    assert b"".join(shown) == log and b"one\n" in log and b"two\n" in log
    assert events[-1] == "done: exited (0)"
    offset_file = Path(run.local_dir) / "attach.offset"
    assert offset_file.read_text() == str(len(log))

    again: list[bytes] = []
    world.orch.attach(run.name, again.append)  # from the saved offset: nothing new
    assert again == []
    world.orch.attach(run.name, again.append, offset=4)  # or from where it is asked
    assert b"".join(again) == log[4:] and offset_file.read_text() == str(len(log))


# ----------------------------------------------------------------------------- waiting for capacity

NO_CAPACITY = RetrySpec(on_events=["no-capacity"], duration=600)


def test_no_capacity_waits_with_backoff_until_the_machine_is_free(world: World) -> None:
    world.backend.busy = ["busy with first", "busy with first", None]  # the plan, round 2
    run = world.submit("echo ran after waiting", retry=NO_CAPACITY)  # every offer busy
    assert world.record(run).status == RunStatus.SUBMITTED
    clock = FakeClock()
    world.waiting_supervisor(clock).supervise(run.id)
    final = world.record(run)
    assert (final.status, final.exit_code) == (RunStatus.DONE, 0)
    assert world.backend.provisioned == ["box"]  # re-planned before each round: free on the third
    waits = [e for e in world.events(run) if e.startswith("waiting")]
    assert [w.split()[1] for w in waits] == ["5s", "10s"] and sum(clock.slept) == 15
    assert waits[0].startswith(
        "waiting 5s for a machine: scripted box here: busy with first (retry until "
    )
    assert (
        "pending",
        "waiting for a machine: scripted box here: busy with first",
    ) in world.history(run)
    assert b"ran after waiting" in (Path(run.local_dir) / "log").read_bytes()


def test_no_capacity_fails_when_the_retry_duration_runs_out(world: World) -> None:
    world.backend.busy = ["busy with first"]
    run = world.submit("true", retry=RetrySpec(on_events=["no-capacity"], duration=30))
    clock = FakeClock()
    world.waiting_supervisor(clock).supervise(run.id)
    final = world.record(run)
    assert final.status == RunStatus.FAILED
    assert final.reason is not None and final.reason.startswith("no capacity"), final.reason
    assert "busy with first" in final.reason
    waits = [e.split()[1] for e in world.events(run) if e.startswith("waiting")]
    assert waits == ["5s", "10s", "15s"] and sum(clock.slept) == 30  # the last one cut short
    assert world.backend.provisioned == []


def test_a_stop_while_waiting_ends_the_run_at_once(world: World) -> None:
    world.backend.busy = ["busy with first"]
    run = world.submit("true", retry=NO_CAPACITY)
    clock = FakeClock()

    def stop() -> None:  # as `iacrun stop` records it from another process
        world.orch.registry.transition(run.id, None, status="terminating", reason="stopped by user")

    clock.on_sleep = stop
    world.waiting_supervisor(clock).supervise(run.id)
    final = world.record(run)
    assert (final.status, final.reason) == (RunStatus.TERMINATED, "stopped by user")
    assert clock.slept == [1.0] and world.backend.provisioned == []  # the stop ended the wait


def test_submit_with_every_offer_busy_needs_retry_on_no_capacity(world: World) -> None:
    world.backend.busy = ["busy with first"]
    with pytest.raises(NoOfferError, match="no offer is available"):
        world.orch.plan(world.spec("true"))
    spec = world.spec("true", retry=NO_CAPACITY)
    plan = world.orch.plan(spec)
    assert plan.offers and not plan.available
    world.orch.ready_offers(plan.available)  # nothing to check: no error
    run = world.orch.submit(spec, plan, supervise=False)
    assert world.record(run).status == RunStatus.SUBMITTED
