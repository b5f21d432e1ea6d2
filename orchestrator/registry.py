"""The registry of runs and their history: SQLite under `~/.iacrun`, safe across processes.

Any number of `iacrun` processes may read and write it at once: the database runs in WAL mode with
a busy timeout, and "one active run per name" is a partial unique index, so two processes racing
for the same name cannot both win.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from iacrun.orchestrator.errors import RunNameTakenError, RunNotFoundError

ACTIVE_STATUSES = ("pending", "submitted", "provisioning", "running", "terminating")
FINAL_STATUSES = ("done", "failed", "terminated")

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    backend TEXT,
    region TEXT,
    instance_type TEXT,
    spot INTEGER NOT NULL DEFAULT 0,
    price REAL,
    offer TEXT,
    host TEXT,
    spec TEXT NOT NULL,
    stack_name TEXT,
    local_dir TEXT NOT NULL DEFAULT '',
    exit_code INTEGER,
    attempt INTEGER NOT NULL DEFAULT 0,
    supervisor_pid INTEGER,
    submitted_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL
);
CREATE UNIQUE INDEX IF NOT EXISTS runs_active_name ON runs(name)
    WHERE status IN {ACTIVE_STATUSES!r};
CREATE INDEX IF NOT EXISTS runs_submitted ON runs(submitted_at);
CREATE TABLE IF NOT EXISTS run_events (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    at REAL NOT NULL,
    status TEXT NOT NULL,
    reason TEXT
);
CREATE INDEX IF NOT EXISTS run_events_run ON run_events(run_id);
"""


class RunRecord(BaseModel):
    """A run as the registry knows it. Lenient: it reads back what any version wrote."""

    id: int
    name: str
    status: str
    reason: str | None = None
    backend: str | None = None
    region: str | None = None
    instance_type: str | None = None
    spot: bool = False
    price: float | None = None
    offer: dict[str, Any] | None = None
    host: dict[str, Any] | None = None
    spec: dict[str, Any]
    stack_name: str | None = None
    local_dir: str = ""
    exit_code: int | None = None
    attempt: int = 0
    supervisor_pid: int | None = None
    submitted_at: float
    started_at: float | None = None
    finished_at: float | None = None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def duration(self) -> float | None:
        start = self.started_at or self.submitted_at
        end = self.finished_at or time.time()
        return max(0.0, end - start)

    @property
    def cost(self) -> float | None:
        if self.price is None or self.started_at is None:
            return None
        end = self.finished_at or time.time()
        return self.price * max(0.0, end - self.started_at) / 3600


class RunEvent(BaseModel):
    at: float
    status: str
    reason: str | None = None


_JSON_COLUMNS = ("offer", "host", "spec")


class Registry:
    """Runs and their status history in one SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(path), timeout=30, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA busy_timeout = 30000")
        if self._conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = NORMAL")
        self._conn.executescript(_SCHEMA)

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def create(self, name: str, spec: dict[str, Any], local_dir_root: Path) -> RunRecord:
        """Record a new run as `submitted`; a name already active is refused."""
        now = time.time()
        try:
            with self._write() as db:
                cur = db.execute(
                    "INSERT INTO runs (name, status, spec, submitted_at) VALUES (?, ?, ?, ?)",
                    (name, "submitted", json.dumps(spec), now),
                )
                run_id = int(cur.lastrowid or 0)
                local_dir = str(local_dir_root / f"{name}-{run_id}")
                db.execute("UPDATE runs SET local_dir = ? WHERE id = ?", (local_dir, run_id))
                db.execute(
                    "INSERT INTO run_events (run_id, at, status) VALUES (?, ?, ?)",
                    (run_id, now, "submitted"),
                )
        except sqlite3.IntegrityError:
            raise RunNameTakenError(
                f"a run named {name!r} is still active; stop it first (iacrun stop {name}) "
                "or choose another name with -n"
            ) from None
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
        with self._write() as db:
            row = db.execute("SELECT status, reason FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None or (expect is not None and row["status"] not in expect):
                return None
            if fields:
                values = [
                    json.dumps(v) if k in _JSON_COLUMNS and v is not None else v
                    for k, v in fields.items()
                ]
                assignments = ", ".join(f"{key} = ?" for key in fields)
                db.execute(f"UPDATE runs SET {assignments} WHERE id = ?", (*values, run_id))
            status = fields.get("status")
            if status is not None and (status, fields.get("reason")) != tuple(row):
                db.execute(
                    "INSERT INTO run_events (run_id, at, status, reason) VALUES (?, ?, ?, ?)",
                    (run_id, time.time(), status, fields.get("reason")),
                )
        return self.get_by_id(run_id)

    def claim_supervisor(self, run_id: int, old_pid: int | None, new_pid: int) -> bool:
        """Make `new_pid` the run's supervisor if `old_pid` still is: one process wins."""
        with self._write() as db:
            cur = db.execute(
                "UPDATE runs SET supervisor_pid = ? WHERE id = ? AND supervisor_pid IS ?",
                (new_pid, run_id, old_pid),
            )
            return cur.rowcount == 1

    def get_by_id(self, run_id: int) -> RunRecord:
        row = self._conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise RunNotFoundError(f"no run with id {run_id}")
        return _record(row)

    def get(self, name: str) -> RunRecord:
        """The active run of that name, else its latest run."""
        row = self._conn.execute(
            "SELECT * FROM runs WHERE name = ? ORDER BY "
            f"(status IN {ACTIVE_STATUSES!r}) DESC, id DESC LIMIT 1",
            (name,),
        ).fetchone()
        if row is None:
            raise RunNotFoundError(f"no run named {name!r}; see iacrun ps -a")
        return _record(row)

    def runs(self, *, all_runs: bool = False, limit: int | None = None) -> list[RunRecord]:
        query = "SELECT * FROM runs"
        if not all_runs:
            query += f" WHERE status IN {ACTIVE_STATUSES!r} OR finished_at > {time.time() - 3600}"
        query += " ORDER BY id DESC"
        if limit is not None:
            query += f" LIMIT {int(limit)}"
        return [_record(row) for row in self._conn.execute(query)]

    def names_in_use(self, prefix: str) -> set[str]:
        rows = self._conn.execute(
            "SELECT DISTINCT name FROM runs WHERE name LIKE ?", (prefix + "%",)
        )
        return {row[0] for row in rows}

    def history(self, run_id: int) -> list[RunEvent]:
        rows = self._conn.execute(
            "SELECT at, status, reason FROM run_events WHERE run_id = ? ORDER BY rowid", (run_id,)
        )
        return [RunEvent(at=r["at"], status=r["status"], reason=r["reason"]) for r in rows]


def _record(row: sqlite3.Row) -> RunRecord:
    data = dict(row)
    for key in _JSON_COLUMNS:
        if data.get(key) is not None:
            data[key] = json.loads(data[key])
    return RunRecord.model_validate(data)
