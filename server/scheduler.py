"""The scheduler: starts the runs of scheduled tasks (`schedule: {cron: ...}`) at their times.

`tick(now)` starts every active schedule due at or before `now`; the server calls it in a loop
(`serve`, an asyncio task of the app's lifespan) that sleeps until the next due time or until
woken (`wake`, after a schedule is created). The clock is injected, so tests move time
without waiting for it.

What a time does:
- one run per time, named `<schedule>-<YYYYmmddHHMM>` (the time, UTC), the schedule's spec
  without its `schedule`, recorded with the schedule's id (`runs.schedule_id`);
- times missed while the server was down give one run, for the latest of them, not a burst;
- a time that comes while the schedule's previous run is still active is skipped (the next
  time is recorded, no run starts), unless the schedule says `concurrent: true`;
- each time is taken by moving `next_at` with a compare-and-set before the run is submitted,
  so two servers on one database never start the same time twice; a server that dies between
  the two loses that time (at most one run per time, never two).
- a run that cannot start (no offer, a backend down) is logged; the schedule goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Protocol

from iacrun.orchestrator.api import Orchestrator
from iacrun.orchestrator.errors import InputError
from iacrun.orchestrator.models.names import generate_name
from iacrun.orchestrator.models.runspec import RunSpec
from iacrun.orchestrator.registry import RunRecord
from iacrun.orchestrator.registry.schedules import OCCURRENCE_FORMAT, ScheduleRecord

log = logging.getLogger("iacrun.server.scheduler")

#: the longest the loop sleeps without looking (a schedule another server created meanwhile)
MAX_SLEEP = 60.0
#: set only by tests: the server's clock starts at this epoch and runs this many times faster
#: (`START` or `STARTxSPEED`, e.g. `1796140800x60`: one minute a second)
TEST_CLOCK_ENV = "IACRUN_TEST_CLOCK"


class Clock(Protocol):
    def now(self) -> float:
        """The time, epoch seconds."""
        ...

    def real_seconds(self, seconds: float) -> float:
        """How long `seconds` of this clock last in real time."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    def real_seconds(self, seconds: float) -> float:
        return seconds


class ScaledClock:
    """A clock that starts at `start` and runs `speed` times faster than real time (tests)."""

    def __init__(self, start: float, speed: float = 1.0) -> None:
        if speed <= 0:
            raise InputError(f"{TEST_CLOCK_ENV}: the speed must be above 0")
        self.start, self.speed, self._origin = start, speed, time.monotonic()

    def now(self) -> float:
        return self.start + (time.monotonic() - self._origin) * self.speed

    def real_seconds(self, seconds: float) -> float:
        return seconds / self.speed


def clock_from_env(environ: Mapping[str, str] | None = None) -> Clock:
    """The system clock, or the test clock `IACRUN_TEST_CLOCK` describes (tests only)."""
    text = (os.environ if environ is None else environ).get(TEST_CLOCK_ENV, "").strip()
    if not text:
        return SystemClock()
    start, _, speed = text.partition("x")
    try:
        return ScaledClock(float(start), float(speed or 1))
    except ValueError:
        raise InputError(f"{TEST_CLOCK_ENV}={text!r}: write START or STARTxSPEED") from None


class StartRun(Protocol):
    def __call__(self, schedule: ScheduleRecord, spec: RunSpec) -> RunRecord:
        """Plan and submit `spec` as a run of `schedule` (its `schedule_id`)."""
        ...


def occurrence_name(schedule: str, at: float) -> str:
    return f"{schedule}-{datetime.fromtimestamp(at, UTC).strftime(OCCURRENCE_FORMAT)}"


def latest_time(record: ScheduleRecord, now: float) -> float:
    """The schedule's latest time at or before `now` (its `next_at` is one, and is due)."""
    assert record.spec.schedule is not None
    schedule = record.spec.schedule
    latest = record.next_at
    for window in (60.0, 3600.0, 86400.0, 31 * 86400.0, 366 * 86400.0):
        if now - window <= latest:
            break
        candidate = schedule.next_time(now - window)
        if candidate <= now:
            latest = candidate
            break
    while (following := schedule.next_time(latest)) <= now:
        latest = following
    return latest


class Scheduler:
    def __init__(
        self,
        orchestrator: Orchestrator,
        *,
        clock: Clock | None = None,
        start: StartRun | None = None,
    ) -> None:
        self.orchestrator = orchestrator
        self.schedules = orchestrator.schedule_store
        self.clock = clock or SystemClock()
        self._start = start or self._submit
        self._lock = threading.Lock()  # one tick at a time in this process
        self._wakeup: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ one look at the clock

    def tick(self, now: float | None = None) -> list[RunRecord]:
        """Start the runs of every schedule due at or before `now`; the runs started."""
        now = self.clock.now() if now is None else now
        started = []
        with self._lock:
            for record in self.schedules.due(now):
                run = self._fire(record, now)
                if run is not None:
                    started.append(run)
        return started

    def _fire(self, record: ScheduleRecord, now: float) -> RunRecord | None:
        assert record.spec.schedule is not None
        at = latest_time(record, now)
        if not self.schedules.claim(record.id, record.next_at, record.spec.schedule.next_time(at)):
            return None  # another server took this time, or the schedule was stopped
        if at > record.next_at:
            log.info("%s: times missed since %s; one run for the latest", record.name, at)
        if not record.concurrent:
            running = self.schedules.active_runs(record.id)
            if running:
                log.info(
                    "%s: skipped the time %s: %s is still active (schedule.concurrent: false)",
                    record.name,
                    occurrence_name(record.name, at),
                    running[0].name,
                )
                return None
        spec = record.spec.model_copy(
            update={"run_name": occurrence_name(record.name, at), "schedule": None}
        )
        try:
            run = self._start(record, spec)
        except Exception:  # the schedule goes on at its next time
            log.exception("%s: could not start %s", record.name, spec.run_name)
            return None
        self.schedules.record_run(record.id, run.id)
        return run

    def _submit(self, schedule: ScheduleRecord, spec: RunSpec) -> RunRecord:
        orch = self.orchestrator
        return orch.submit(spec, orch.plan(spec), schedule_id=schedule.id)

    # ------------------------------------------------------------------ keeping a schedule

    def create(
        self, spec: RunSpec, *, upload: str | None = None, submitted_by: str | None = None
    ) -> ScheduleRecord:
        """Keep `spec` (which has a `schedule`; on a server, pointed at its copy of the upload)
        as an active schedule, after the checks a run gets now (its upload's size, its offers):
        a task that cannot run is refused when it is submitted, not at its first time. Named
        as the task says, else generated; 409 (RunNameTakenError) when an active schedule or
        an active run holds the name."""
        orch = self.orchestrator
        if spec.run_name is not None:  # nor a name an active run holds (`stop NAME` ends both)
            orch.ensure_no_active_run(spec.run_name)
        orch.check_upload(spec)
        orch.plan(spec)  # NoOfferError when nothing could run it now
        created = self.schedules.create(
            spec.run_name or self.free_name(),
            spec,
            upload=upload,
            submitted_by=submitted_by,
            now=self.clock.now(),
        )
        self.wake()
        return created

    # ------------------------------------------------------------------ ending a schedule

    def stop(self, name: str, *, by: str | None = None, abort: bool = False) -> ScheduleRecord:
        """End the schedule `name` and stop its active runs (Orchestrator.stop_schedule; killed
        at once with `abort`); a schedule already stopped is returned as it is. Stopping one of
        its runs by the run's own name leaves the schedule going."""
        stopped = self.orchestrator.stop_schedule(name, by=by, now=self.clock.now(), abort=abort)
        self.wake()
        return stopped or self.schedules.get(name)

    def free_name(self) -> str:
        """A generated name (`brave-otter-1`) no run or schedule has used."""

        def in_use(prefix: str) -> set[str]:
            runs = self.orchestrator.registry.names_in_use(prefix)
            return runs | self.schedules.names_in_use(prefix)

        return generate_name(in_use)

    # ------------------------------------------------------------------ the server's loop

    def wake(self) -> None:
        """Look at the schedules now (one was created or stopped); safe from any thread."""
        loop, event = self._loop, self._wakeup
        if loop is not None and event is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(event.set)

    async def serve(self) -> None:
        """Tick, then sleep until the next due time (at most MAX_SLEEP, real seconds) or a
        wake-up; until cancelled. Ticks run in a thread: planning and submitting block."""
        self._loop, self._wakeup = asyncio.get_running_loop(), asyncio.Event()
        while True:
            self._wakeup.clear()
            delay = MAX_SLEEP
            try:
                await asyncio.to_thread(self.tick)
                due = await asyncio.to_thread(self.schedules.next_due)
            except Exception:  # the database busy or gone a moment: look again later
                log.exception("scheduler tick failed; trying again")
                due = None
            if due is not None:
                delay = min(MAX_SLEEP, max(0.0, self.clock.real_seconds(due - self.clock.now())))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=max(delay, 0.05))

    def start(self) -> None:
        """Run `serve` as a task of the running event loop (the app's lifespan)."""
        self._task = asyncio.get_running_loop().create_task(self.serve(), name="scheduler")

    async def stop_serving(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
