"""The runs and their history, in the registry's database, safe across processes.

Any number of `iacrun` processes (and a server's threads) may read and write at once: writes run
in transactions, and "one active run per name" is a partial unique index, so two processes
racing for the same name cannot both win.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from iacrun.orchestrator.errors import RunNameTakenError, RunNotFoundError
from iacrun.orchestrator.models.names import check_run_name
from iacrun.orchestrator.models.runspec import RunSpec
from iacrun.orchestrator.registry.database import Database, UniqueViolation
from iacrun.orchestrator.registry.records import (
    ACTIVE_STATUSES,
    JSON_COLUMNS,
    RunEvent,
    RunRecord,
    RunStatus,
)

#: how long a run that ended stays in the default list (`iacrun ps` without -a), in seconds
RECENT = 3600


class Registry:
    """Runs and their status history. `target`: an SQLite file, or a database URL."""

    def __init__(self, target: Path | str) -> None:
        self.path = target if isinstance(target, Path) else Path(target)
        self.db = Database(str(target))

    def close(self) -> None:
        self.db.close()

    def create(
        self, name: str, spec: RunSpec, local_dir_root: Path, *, submitted_by: str | None = None
    ) -> RunRecord:
        """Record a new run as `submitted` (by a server's user, or None in embedded mode); a
        name already active, or one that breaks the rule of names (it becomes a folder and a
        stack name), is refused."""
        check_run_name(name)
        now = time.time()
        try:
            with self.db.transaction() as db:
                inserted = db.row(
                    "INSERT INTO runs (name, status, spec, submitted_at, submitted_by) "
                    "VALUES (?, ?, ?, ?, ?) RETURNING id",
                    (name, "submitted", _column("spec", spec), now, submitted_by),
                )
                assert inserted is not None
                run_id = int(inserted["id"])
                local_dir = str(local_dir_root / f"{name}-{run_id}")
                db.execute("UPDATE runs SET local_dir = ? WHERE id = ?", (local_dir, run_id))
                db.execute(
                    "INSERT INTO run_events (run_id, at, status) VALUES (?, ?, ?)",
                    (run_id, now, "submitted"),
                )
        except UniqueViolation:
            raise name_taken(name) from None
        return self.get_by_id(run_id)

    def update(self, run_id: int, **fields: Any) -> RunRecord:
        """Change fields; a change of status or reason is also written to the run's history."""
        record = self.transition(run_id, None, **fields)
        if record is None:
            raise RunNotFoundError(f"no run with id {run_id}")
        return record

    def transition(
        self, run_id: int, expect: tuple[str, ...] | None, **fields: Any
    ) -> RunRecord | None:
        """Update only if the run's status is one of `expect` (compare-and-set across processes)."""
        with self.db.transaction() as db:
            row = db.row(f"SELECT status, reason FROM runs WHERE id = ?{db.for_update}", (run_id,))
            if row is None or (expect is not None and row["status"] not in expect):
                return None
            if fields:
                values = [_column(k, v) for k, v in fields.items()]
                assignments = ", ".join(f"{key} = ?" for key in fields)
                db.execute(f"UPDATE runs SET {assignments} WHERE id = ?", (*values, run_id))
            status = fields.get("status")
            if status is not None and (status, fields.get("reason")) != (
                row["status"],
                row["reason"],
            ):
                db.execute(
                    "INSERT INTO run_events (run_id, at, status, reason) VALUES (?, ?, ?, ?)",
                    (run_id, time.time(), _column("status", status), fields.get("reason")),
                )
        return self.get_by_id(run_id)

    def claim_supervisor(self, run_id: int, old_pid: int | None, new_pid: int) -> bool:
        """Make `new_pid` the run's supervisor if `old_pid` still is: one process wins."""
        held = "supervisor_pid IS NULL" if old_pid is None else "supervisor_pid = ?"
        params = (new_pid, run_id) if old_pid is None else (new_pid, run_id, old_pid)
        return (
            self.db.execute(f"UPDATE runs SET supervisor_pid = ? WHERE id = ? AND {held}", params)
            == 1
        )

    def get_by_id(self, run_id: int) -> RunRecord:
        row = self.db.row("SELECT * FROM runs WHERE id = ?", (run_id,))
        if row is None:
            raise RunNotFoundError(f"no run with id {run_id}")
        return RunRecord.model_validate(row)

    def get(self, name: str) -> RunRecord:
        """The active run of that name, else its latest run."""
        row = self.db.row(
            "SELECT * FROM runs WHERE name = ? ORDER BY "
            f"(CASE WHEN status IN {ACTIVE_STATUSES!r} THEN 1 ELSE 0 END) DESC, id DESC LIMIT 1",
            (name,),
        )
        if row is None:
            raise RunNotFoundError(f"no run named {name!r}; see iacrun ps -a")
        return RunRecord.model_validate(row)

    def runs(self, *, all_runs: bool = False, limit: int | None = None) -> list[RunRecord]:
        query = "SELECT * FROM runs"
        params: list[Any] = []
        if not all_runs:
            query += f" WHERE status IN {ACTIVE_STATUSES!r} OR finished_at > ?"
            params.append(time.time() - RECENT)
        query += " ORDER BY id DESC"
        if limit is not None:
            query += f" LIMIT {int(limit)}"
        return [RunRecord.model_validate(row) for row in self.db.rows(query, params)]

    def page(
        self,
        *,
        status: str | None = None,
        user: str | None = None,
        active: bool | None = None,
        recent: bool = False,
        limit: int = 50,
        before: int | None = None,
    ) -> list[RunRecord]:
        """Runs newest first, filtered, at most `limit`, with ids below `before` (the paging a
        server's list uses: the next page starts below the last id of this one). `recent`: the
        runs `runs()` lists by default, active ones and those that ended in the last hour."""
        where: list[str] = []
        params: list[Any] = []
        if status is not None:
            where.append("status = ?")
            params.append(status)
        if user is not None:
            where.append("submitted_by = ?")
            params.append(user)
        if active is not None:
            where.append(f"status {'' if active else 'NOT '}IN {ACTIVE_STATUSES!r}")
        if recent:
            where.append(f"(status IN {ACTIVE_STATUSES!r} OR finished_at > ?)")
            params.append(time.time() - RECENT)
        if before is not None:
            where.append("id < ?")
            params.append(before)
        query = "SELECT * FROM runs"
        if where:
            query += " WHERE " + " AND ".join(where)
        query += f" ORDER BY id DESC LIMIT {int(limit)}"
        return [RunRecord.model_validate(row) for row in self.db.rows(query, params)]

    def names_in_use(self, prefix: str) -> set[str]:
        rows = self.db.rows("SELECT DISTINCT name FROM runs WHERE name LIKE ?", (prefix + "%",))
        return {row["name"] for row in rows}

    def history(self, run_id: int) -> list[RunEvent]:
        rows = self.db.rows(
            "SELECT at, status, reason FROM run_events WHERE run_id = ? ORDER BY id", (run_id,)
        )
        return [RunEvent.model_validate(row) for row in rows]


def name_taken(name: str) -> RunNameTakenError:
    """The one way of saying that an active run holds `name`."""
    return RunNameTakenError(
        f"a run named {name!r} is still active; stop it first (iacrun stop {name}) "
        "or choose another name with -n"
    )


def _column(key: str, value: Any) -> Any:
    """A field as its column stores it: models and mappings as JSON, statuses as their name."""
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    if key in JSON_COLUMNS and value is not None:
        return json.dumps(value)
    if isinstance(value, RunStatus):
        return value.value
    return value
