"""Scheduled tasks on a real registry and orchestrator, local backend: the clock is injected,
so a schedule every minute fires twice without a minute waited."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from iacrun.orchestrator.api import Orchestrator
from iacrun.orchestrator.errors import InputError, NoOfferError, RunNameTakenError
from iacrun.orchestrator.models.runspec import Overrides, RunSpec, build_run_spec
from iacrun.orchestrator.models.settings import Settings
from iacrun.orchestrator.registry import RunRecord
from iacrun.orchestrator.registry.schedules import ScheduleRecord, Schedules
from iacrun.server.scheduler import ScaledClock, Scheduler, clock_from_env
from tests.conftest import write_task

#: 2026-12-01 14:30:10 UTC
T0 = datetime(2026, 12, 1, 14, 30, 10, tzinfo=UTC).timestamp()
MINUTE = 60.0


def _minute(hhmm: str) -> float:
    return datetime.fromisoformat(f"2026-12-01T{hhmm}:00").replace(tzinfo=UTC).timestamp()


class World:
    def __init__(self, tmp_path: Path) -> None:
        self.home = tmp_path / "iacrun"
        self.project = tmp_path / "project"
        self.project.mkdir(exist_ok=True)
        self.orch = Orchestrator(home=self.home, settings=Settings())
        self.scheduler = Scheduler(self.orch)

    def spec(self, command: str = "echo hi", *, concurrent: bool = False) -> RunSpec:
        write_task(
            self.project,
            f"commands: ['{command}']\n"
            f"schedule:\n  cron: '* * * * *'\n  concurrent: {str(concurrent).lower()}\n",
        )
        return build_run_spec(self.project / "task.dstack.yml")

    def schedule(self, name: str = "tick", **kwargs: object) -> ScheduleRecord:
        spec = self.spec(**kwargs)  # type: ignore[arg-type]
        return self.scheduler.schedules.create(name, spec, now=T0)

    def wait_final(self, name: str, timeout: float = 60) -> RunRecord:
        deadline = time.monotonic() + timeout
        run = self.orch.get(name)
        while run.active and time.monotonic() < deadline:
            time.sleep(0.2)
            run = self.orch.get(name)
        return run

    def wait_running(self, name: str, timeout: float = 60) -> RunRecord:
        deadline = time.monotonic() + timeout
        run = self.orch.get(name)
        while run.status != "running" and run.active and time.monotonic() < deadline:
            time.sleep(0.2)
            run = self.orch.get(name)
        return run

    def stop_all(self) -> None:
        for run in self.orch.runs():
            if run.active:
                self.orch.stop(run.name, wait=30)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    made = World(tmp_path)
    yield made
    made.stop_all()  # no run left behind, whatever the test did


def test_a_schedule_every_minute_fires_twice_and_both_runs_end_done(world: World) -> None:
    record = world.schedule()
    assert record.next_at == _minute("14:31")
    assert world.scheduler.tick(T0 + 20) == []  # not due yet
    first = world.scheduler.tick(_minute("14:31") + 1)
    assert [r.name for r in first] == ["tick-202612011431"]
    assert world.wait_final("tick-202612011431").status == "done"
    second = world.scheduler.tick(_minute("14:32") + 3)
    assert [r.name for r in second] == ["tick-202612011432"]
    final = world.wait_final("tick-202612011432")
    assert final.status == "done" and final.exit_code == 0
    assert final.schedule_id == record.id and final.spec.schedule is None
    listed = world.scheduler.schedules.get("tick")
    assert listed.next_at == _minute("14:33")
    assert (listed.last_run_name, listed.last_run_status) == ("tick-202612011432", "done")
    log = Path(final.local_dir, "log").read_bytes()
    assert log.startswith(b"hi\n")


def test_a_time_that_comes_while_the_previous_run_is_active_starts_nothing(
    world: World,
) -> None:
    world.schedule(command="sleep 300")
    [first] = world.scheduler.tick(_minute("14:31"))
    assert world.wait_running(first.name).status == "running"
    assert world.scheduler.tick(_minute("14:32")) == []  # still running: skipped
    assert world.scheduler.schedules.get("tick").next_at == _minute("14:33")
    assert [r.name for r in world.orch.runs() if r.active] == [first.name]


def test_a_concurrent_schedule_starts_a_run_beside_the_active_one(world: World) -> None:
    world.schedule(command="sleep 300", concurrent=True)
    [first] = world.scheduler.tick(_minute("14:31"))
    assert world.wait_running(first.name).status == "running"
    [second] = world.scheduler.tick(_minute("14:32"))
    assert second.name == "tick-202612011432"
    assert {r.name for r in world.orch.runs() if r.active} == {first.name, second.name}


def test_times_missed_while_down_give_one_run_for_the_latest(world: World) -> None:
    world.schedule()
    started = world.scheduler.tick(_minute("14:37") + 30)  # 14:31 .. 14:37 all missed
    assert [r.name for r in started] == ["tick-202612011437"]
    assert world.scheduler.schedules.get("tick").next_at == _minute("14:38")
    assert world.wait_final(started[0].name).status == "done"
    late = world.scheduler.tick(T0 + 9 * 86400)  # nine days down: still one run
    assert [r.name for r in late] == ["tick-202612101430"]


def test_stop_ends_the_schedule_and_its_active_run(world: World) -> None:
    world.schedule(command="sleep 300")
    [run] = world.scheduler.tick(_minute("14:31"))
    assert world.wait_running(run.name).status == "running"
    stopped = world.scheduler.stop("tick")
    assert stopped.stopped_at is not None and not stopped.active
    final = world.wait_final(run.name)
    assert final.status == "terminated" and final.reason == "schedule tick stopped"
    assert world.scheduler.tick(_minute("14:40")) == []
    assert world.scheduler.schedules.listing() == []
    [listed] = world.scheduler.schedules.listing(include_stopped=True)
    assert listed.name == "tick" and listed.stopped_at is not None
    # the name is free again for a new schedule
    assert world.schedule().active


def test_a_schedule_survives_a_restart_with_its_next_time_from_the_database(
    world: World, tmp_path: Path
) -> None:
    record = world.schedule()
    world.orch.registry.close()
    again = Scheduler(Orchestrator(home=world.home, settings=Settings()))
    [found] = again.schedules.listing()
    assert (found.id, found.next_at, found.crons) == (record.id, _minute("14:31"), ["* * * * *"])
    [run] = again.tick(_minute("14:31"))
    world.orch = again.orchestrator
    assert world.wait_final(run.name).status == "done"


def test_one_active_schedule_per_name_and_names_that_leave_room_for_the_time(
    world: World,
) -> None:
    world.schedule()
    with pytest.raises(RunNameTakenError, match="a schedule named 'tick' is active"):
        world.schedule()
    with pytest.raises(InputError, match="at most 28"):
        world.schedule(name="a" * 29)


def test_two_schedulers_on_one_database_take_each_time_once(world: World) -> None:
    world.schedule()
    other = Scheduler(Orchestrator(home=world.home, settings=Settings()))
    record = world.scheduler.schedules.get("tick")
    assert Schedules(other.orchestrator.registry.db).claim(record.id, record.next_at, 1e10)
    assert world.scheduler.tick(_minute("14:31")) == []  # the time was taken by the other


def test_the_servers_loop_fires_at_the_injected_clocks_times(world: World) -> None:
    world.schedule(concurrent=True)  # a slow run must not make the loop skip a time
    # one clock minute per real second, starting 14:30:10: 14:31 and 14:32 come within ~2 s
    world.scheduler.clock = ScaledClock(T0, speed=60)

    async def until_two_runs() -> None:
        world.scheduler.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            runs = [r for r in world.orch.runs() if r.schedule_id is not None]
            if len(runs) >= 2:
                break
            await asyncio.sleep(0.1)
        await world.scheduler.stop_serving()

    asyncio.run(until_two_runs())
    names = sorted(r.name for r in world.orch.runs() if r.schedule_id is not None)
    assert names[:2] == ["tick-202612011431", "tick-202612011432"]


def test_the_test_clock_comes_only_from_its_variable() -> None:
    assert clock_from_env({}).real_seconds(60) == 60
    clock = clock_from_env({"IACRUN_TEST_CLOCK": f"{T0}x60"})
    assert clock.real_seconds(60) == 1 and abs(clock.now() - T0) < 60
    with pytest.raises(InputError, match="START or STARTxSPEED"):
        clock_from_env({"IACRUN_TEST_CLOCK": "soon"})


def test_ps_lists_schedules_with_their_next_time_and_latest_run(world: World) -> None:
    from iacrun.cli.render import schedules_table

    world.schedule()
    [run] = world.scheduler.tick(_minute("14:31"))
    world.wait_final(run.name)
    world.scheduler.schedules.create("later", world.spec(), submitted_by="alice", now=T0)
    world.scheduler.stop("later")
    table = schedules_table(world.scheduler.schedules.listing(include_stopped=True))
    assert table.splitlines() == [
        "SCHEDULE  CRON (UTC)  NEXT                  LAST RUN                  BY",
        "later     * * * * *   stopped               -                         alice",
        "tick      * * * * *   2026-12-01 14:32 UTC  tick-202612011431 (done)  -",
    ]


def test_create_checks_the_task_now_and_names_it_when_the_task_does_not(world: World) -> None:
    spec = world.spec().model_copy(update={"run_name": None})
    created = world.scheduler.create(spec, submitted_by="alice")
    assert created.name == created.spec.run_name and created.submitted_by == "alice"
    assert created.next_at > world.scheduler.clock.now()
    write_task(
        world.project,
        "commands: [x]\nresources: {gpu: H100:8}\nschedule: {cron: '0 3 * * *'}\n",
    )
    impossible = build_run_spec(world.project / "task.dstack.yml", Overrides(name="big"))
    with pytest.raises(NoOfferError):
        world.scheduler.create(impossible)
    assert [s.name for s in world.scheduler.schedules.listing()] == [created.name]


def test_a_schedule_stopped_from_another_process_on_its_database_starts_nothing(
    world: World,
) -> None:
    world.schedule()
    elsewhere = Orchestrator(home=world.home, settings=Settings())  # e.g. the CLI on the host
    assert elsewhere.stop_schedule("nope") is None
    stopped = elsewhere.stop_schedule("tick", by="alice")
    assert stopped is not None and stopped.stopped_at is not None
    assert elsewhere.stop_schedule("tick") is None  # already ended
    assert world.scheduler.tick(_minute("14:35")) == []


def test_in_process_a_schedule_is_refused_and_the_list_is_the_databases(world: World) -> None:
    from iacrun.orchestrator.errors import ConfigError

    with pytest.raises(ConfigError, match="started at each of its times by `iacrun server`"):
        world.orch.schedule(world.spec())
    assert world.orch.schedules() == []
    world.schedule()  # as a server on this home's database would
    assert [s.name for s in world.orch.schedules()] == ["tick"]
    world.orch.stop_schedule("tick")
    assert world.orch.schedules() == []
    assert [s.name for s in world.orch.schedules(all_schedules=True)] == ["tick"]


def test_a_run_that_cannot_start_at_its_time_leaves_the_schedule_going(world: World) -> None:
    from iacrun.orchestrator.errors import BackendError

    calls: list[str] = []

    def down_then_up(schedule: ScheduleRecord, spec: RunSpec) -> RunRecord:
        calls.append(str(spec.run_name))
        if len(calls) == 1:
            raise BackendError("the backend is down")  # as a cloud outage would
        return world.orch.submit(spec, world.orch.plan(spec), schedule_id=schedule.id)

    world.scheduler = Scheduler(world.orch, start=down_then_up)
    world.schedule()
    assert world.scheduler.tick(_minute("14:31")) == []
    [run] = world.scheduler.tick(_minute("14:32"))
    assert calls == ["tick-202612011431", "tick-202612011432"] and run.name == calls[1]
    assert world.wait_final(run.name).status == "done"
