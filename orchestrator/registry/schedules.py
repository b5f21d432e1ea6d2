"""Scheduled tasks: a task with `schedule:` submitted to `iacrun server`, kept in the registry's
database beside the runs it starts (`runs.schedule_id`).

A schedule is active until it is stopped (`stopped_at`); one active schedule per name, held by a
partial unique index as the runs' names are. `next_at` is the next time it fires (epoch seconds,
UTC); the scheduler moves it forward with a compare-and-set (`claim`), so an occurrence is
taken once even by two servers on one database.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from pydantic import BaseModel, field_validator

from iacrun.orchestrator.errors import InputError, RunNameTakenError, RunNotFoundError
from iacrun.orchestrator.models.names import run_name_problem
from iacrun.orchestrator.models.runspec import RunSpec
from iacrun.orchestrator.registry.database import Database, UniqueViolation
from iacrun.orchestrator.registry.records import (
    ACTIVE_STATUSES,
    RunRecord,
    RunStatus,
    read_spec,
)

#: a scheduled run's name: the schedule's name, a dash, the time it is for (UTC, to the minute)
OCCURRENCE_FORMAT = "%Y%m%d%H%M"
#: the longest schedule name whose runs' names still obey the rule of run names (41)
MAX_SCHEDULE_NAME = 41 - len("-202601010000")
#: a run name of the form a schedule's runs have: the schedule's name, then the time
_OCCURRENCE = re.compile(r"(.+)-\d{12}")


class ScheduleRecord(BaseModel):
    """A schedule as the registry knows it (lenient on the way in, as `RunRecord` is), with its
    latest run's name and status for listings."""

    id: int
    name: str
    spec: RunSpec
    crons: list[str]
    submitted_by: str | None = None
    upload: str | None = None
    created_at: float
    next_at: float
    last_run_id: int | None = None
    stopped_at: float | None = None
    concurrent: bool = False
    last_run_name: str | None = None
    last_run_status: RunStatus | None = None

    @field_validator("spec", mode="before")
    @classmethod
    def _read_spec(cls, value: Any) -> RunSpec:
        return read_spec(value)

    @field_validator("crons", mode="before")
    @classmethod
    def _read_crons(cls, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value

    @property
    def active(self) -> bool:
        return self.stopped_at is None


_SELECT = (
    "SELECT s.*, r.name AS last_run_name, r.status AS last_run_status FROM schedules s "
    "LEFT JOIN runs r ON r.id = s.last_run_id"
)


class Schedules:
    """The schedules in the registry's database `db` (`Registry.db`)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def create(
        self,
        name: str,
        spec: RunSpec,
        *,
        upload: str | None = None,
        submitted_by: str | None = None,
        now: float | None = None,
    ) -> ScheduleRecord:
        """Record `spec` (which has a `schedule`) as the active schedule `name`, first firing
        at its next time after `now`; a name an active schedule holds is refused."""
        schedule = spec.schedule
        if schedule is None:
            raise InputError(f"{name}: the task has no schedule")
        problem = run_name_problem(name)
        if problem is not None or len(name) > MAX_SCHEDULE_NAME:
            raise InputError(
                f"{name!r} cannot name a schedule; use lowercase letters, digits and dashes, "
                f"starting with a letter, at most {MAX_SCHEDULE_NAME} (its runs are named "
                "NAME-YYYYmmddHHMM, at most 41)"
            )
        now = time.time() if now is None else now
        spec = spec.model_copy(update={"run_name": name})
        try:
            inserted = self.db.row(
                "INSERT INTO schedules (name, spec, crons, submitted_by, upload, created_at, "
                "next_at, concurrent) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (
                    name,
                    spec.model_dump_json(),
                    json.dumps(schedule.cron),
                    submitted_by,
                    upload,
                    now,
                    schedule.next_time(now),
                    int(schedule.concurrent),
                ),
            )
        except UniqueViolation:
            raise RunNameTakenError(
                f"a schedule named {name!r} is active; stop it first (iacrun stop {name}) "
                "or choose another name with -n"
            ) from None
        assert inserted is not None
        return self.get_by_id(int(inserted["id"]))

    def get_by_id(self, schedule_id: int) -> ScheduleRecord:
        row = self.db.row(f"{_SELECT} WHERE s.id = ?", (schedule_id,))
        if row is None:
            raise RunNotFoundError(f"no schedule with id {schedule_id}")
        return ScheduleRecord.model_validate(row)

    def find(self, name: str) -> ScheduleRecord | None:
        """The active schedule of that name, else its latest one, else None."""
        row = self.db.row(
            f"{_SELECT} WHERE s.name = ? ORDER BY "
            "(CASE WHEN s.stopped_at IS NULL THEN 1 ELSE 0 END) DESC, s.id DESC LIMIT 1",
            (name,),
        )
        return None if row is None else ScheduleRecord.model_validate(row)

    def get(self, name: str) -> ScheduleRecord:
        found = self.find(name)
        if found is None:
            raise RunNotFoundError(f"no schedule named {name!r}; see iacrun ps -a")
        return found

    def listing(self, *, include_stopped: bool = False) -> list[ScheduleRecord]:
        """Active schedules (and stopped ones too), newest first."""
        where = "" if include_stopped else " WHERE s.stopped_at IS NULL"
        return [
            ScheduleRecord.model_validate(row)
            for row in self.db.rows(f"{_SELECT}{where} ORDER BY s.id DESC")
        ]

    def holding(self, name: str) -> ScheduleRecord | None:
        """The active schedule that holds the run name `name`: its own name (`iacrun stop
        NAME` ends the schedule), or the name of one of its runs (`NAME-YYYYmmddHHMM`: a run
        of that name would take its run's name at that time); None when none does."""
        candidates = [name]
        found = _OCCURRENCE.fullmatch(name)
        if found is not None:
            candidates.append(found.group(1))
        for candidate in candidates:
            record = self.find(candidate)
            if record is not None and record.active:
                return record
        return None

    def names_in_use(self, prefix: str) -> set[str]:
        rows = self.db.rows(
            "SELECT DISTINCT name FROM schedules WHERE name LIKE ?", (prefix + "%",)
        )
        return {row["name"] for row in rows}

    def due(self, now: float) -> list[ScheduleRecord]:
        """The active schedules whose next time is at or before `now`, earliest first."""
        rows = self.db.rows(
            f"{_SELECT} WHERE s.stopped_at IS NULL AND s.next_at <= ? ORDER BY s.next_at, s.id",
            (now,),
        )
        return [ScheduleRecord.model_validate(row) for row in rows]

    def next_due(self) -> float | None:
        """The earliest next time of the active schedules; None when there is none."""
        row = self.db.row("SELECT MIN(next_at) AS soonest FROM schedules WHERE stopped_at IS NULL")
        return None if row is None or row["soonest"] is None else float(row["soonest"])

    def claim(self, schedule_id: int, was: float, next_at: float) -> bool:
        """Move an active schedule's next time from `was` to `next_at`; False when another
        process moved it first (or the schedule was stopped): the occurrence is not ours."""
        return (
            self.db.execute(
                "UPDATE schedules SET next_at = ? "
                "WHERE id = ? AND next_at = ? AND stopped_at IS NULL",
                (next_at, schedule_id, was),
            )
            == 1
        )

    def record_run(self, schedule_id: int, run_id: int) -> None:
        self.db.execute("UPDATE schedules SET last_run_id = ? WHERE id = ?", (run_id, schedule_id))

    def active_runs(self, schedule_id: int) -> list[RunRecord]:
        rows = self.db.rows(
            f"SELECT * FROM runs WHERE schedule_id = ? AND status IN {ACTIVE_STATUSES!r} "
            "ORDER BY id",
            (schedule_id,),
        )
        return [RunRecord.model_validate(row) for row in rows]

    def stop(self, name: str, now: float | None = None) -> ScheduleRecord:
        """End the active schedule `name` (no run starts from it any more); a schedule already
        stopped is returned as it is. The runs it started are the caller's to stop."""
        found = self.get(name)
        if found.active:
            self.db.execute(
                "UPDATE schedules SET stopped_at = ? WHERE id = ? AND stopped_at IS NULL",
                (time.time() if now is None else now, found.id),
            )
        return self.get_by_id(found.id)
