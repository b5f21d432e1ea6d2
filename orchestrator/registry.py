"""The registry of runs and their history: SQLite under `~/.iacrun`, safe across processes.

Any number of `iacrun` processes may read and write it at once: the database runs in WAL mode with
a busy timeout, and "one active run per name" is a partial unique index, so two processes racing
for the same name cannot both win.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError, field_validator

from iacrun.orchestrator.errors import RunNameTakenError, RunNotFoundError
from iacrun.orchestrator.host.transport import Host
from iacrun.orchestrator.models.names import check_run_name
from iacrun.orchestrator.models.runspec import RunSpec
from iacrun.orchestrator.offers.model import Offer
from iacrun.orchestrator.paths import private_dir


class RunStatus(StrEnum):
    """Where a run is. A run moves forward through the active ones and ends in a final one:

    submitted → provisioning ⇄ pending → running ⇄ pending → terminating → done|failed|terminated

    (`pending`: waiting for capacity, or between two attempts of a retried job).
    The runner (runner/runner.py) and the VM guard (stacks/vmguard.py) run on hosts without
    iacrun installed and keep their own copy of the final ones; a test holds them equal."""

    PENDING = "pending"
    SUBMITTED = "submitted"
    PROVISIONING = "provisioning"
    RUNNING = "running"
    TERMINATING = "terminating"
    DONE = "done"
    FAILED = "failed"
    TERMINATED = "terminated"

    @property
    def is_final(self) -> bool:
        return self in _FINAL

    @property
    def is_active(self) -> bool:
        return self not in _FINAL


_FINAL = frozenset({RunStatus.DONE, RunStatus.FAILED, RunStatus.TERMINATED})
#: the statuses as plain strings, for SQL and for compare-and-set transitions
ACTIVE_STATUSES: tuple[str, ...] = tuple(s.value for s in RunStatus if s.is_active)
FINAL_STATUSES: tuple[str, ...] = tuple(s.value for s in RunStatus if s.is_final)

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
    """A run as the registry knows it. Lenient: it reads back what any version wrote.

    `spec`, `host` and `offer` are typed, but a stored value that no longer validates (an older
    or newer version wrote it) loses only the parts that do not: unknown keys are dropped, a
    missing or unreadable part takes its default, an unreadable host or offer reads as None."""

    id: int
    name: str
    status: RunStatus
    reason: str | None = None
    backend: str | None = None
    region: str | None = None
    instance_type: str | None = None
    spot: bool = False
    price: float | None = None
    offer: Offer | None = None
    host: Host | None = None
    spec: RunSpec
    stack_name: str | None = None
    local_dir: str = ""
    exit_code: int | None = None
    attempt: int = 0
    supervisor_pid: int | None = None
    submitted_at: float
    started_at: float | None = None
    finished_at: float | None = None

    @field_validator("spec", mode="before")
    @classmethod
    def _read_spec(cls, value: Any) -> RunSpec:
        if isinstance(value, RunSpec):
            return value
        data = _loaded(value)
        spec = _lenient(RunSpec, data if isinstance(data, dict) else {}, _SPEC_DEFAULTS)
        return spec or RunSpec.model_validate(_SPEC_DEFAULTS)

    @field_validator("host", mode="before")
    @classmethod
    def _read_host(cls, value: Any) -> Host | None:
        return value if isinstance(value, Host) or value is None else _lenient(Host, _loaded(value))

    @field_validator("offer", mode="before")
    @classmethod
    def _read_offer(cls, value: Any) -> Offer | None:
        if isinstance(value, Offer) or value is None:
            return value
        return _lenient(Offer, _loaded(value))

    @property
    def active(self) -> bool:
        return self.status.is_active

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
    status: RunStatus
    reason: str | None = None


_JSON_COLUMNS = ("offer", "host", "spec")

#: what a spec part that is missing from a stored row reads as
_SPEC_DEFAULTS: dict[str, Any] = {
    "run_name": None,
    "config_path": "",
    "repo_dir": "",
    "working_dir": ".",
    "image": None,
    "python": None,
    "commands": [],
    "env": {},
    "ports": [],
    "requirements": {},
    "retry": None,
    "max_duration": None,
    "stop_duration": 15,
    "files": [],
    "repos": [],
}

M = TypeVar("M", bound=BaseModel)


def _loaded(value: Any) -> Any:
    """A column's JSON as data; text that is not JSON reads as nothing."""
    if not isinstance(value, str | bytes):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return None


def _lenient(model: type[M], data: Any, defaults: dict[str, Any] | None = None) -> M | None:
    """`data` as `model`, dropping what does not validate (one offending key at a time).

    A nested key that is unknown or unreadable is removed; a missing one removes the mapping
    that needs it, which its own default then replaces (or which is removed in turn); a missing
    top-level key takes its value from `defaults`. None when nothing readable is left."""
    for _ in range(50):
        if defaults is not None and isinstance(data, dict):
            data = {**defaults, **data}
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            if not isinstance(data, dict) or not _drop(data, exc):
                return None
    return None


def _drop(data: dict[str, Any], exc: ValidationError) -> bool:
    """Remove the part of `data` the first error points at; False when it points at nothing."""
    for error in exc.errors():
        loc = [part for part in error["loc"] if isinstance(part, str | int)]
        if error["type"] == "missing":
            loc = loc[:-1]  # the container that lacks the key
        while loc:
            parent: Any = data
            for part in loc[:-1]:
                try:
                    parent = parent[part]
                except (KeyError, IndexError, TypeError):
                    parent = None
                    break
            key = loc[-1]
            if isinstance(parent, dict) and key in parent:
                del parent[key]
                return True
            if isinstance(parent, list) and isinstance(key, int) and key < len(parent):
                del parent[key]
                return True
            loc = loc[:-1]  # a tag of a union or an annotated type: look one level up
    return False


class Registry:
    """Runs and their status history in one SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        private_dir(path.parent)
        _private_file(path)  # SQLite gives its -wal and -shm files the database's mode
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

    def create(self, name: str, spec: RunSpec, local_dir_root: Path) -> RunRecord:
        """Record a new run as `submitted`; a name already active, or one that breaks the rule
        of names (it becomes a folder and a stack name), is refused."""
        check_run_name(name)
        now = time.time()
        try:
            with self._write() as db:
                cur = db.execute(
                    "INSERT INTO runs (name, status, spec, submitted_at) VALUES (?, ?, ?, ?)",
                    (name, "submitted", _column("spec", spec), now),
                )
                run_id = int(cur.lastrowid or 0)
                local_dir = str(local_dir_root / f"{name}-{run_id}")
                db.execute("UPDATE runs SET local_dir = ? WHERE id = ?", (local_dir, run_id))
                db.execute(
                    "INSERT INTO run_events (run_id, at, status) VALUES (?, ?, ?)",
                    (run_id, now, "submitted"),
                )
        except sqlite3.IntegrityError:
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
        with self._write() as db:
            row = db.execute("SELECT status, reason FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None or (expect is not None and row["status"] not in expect):
                return None
            if fields:
                values = [_column(k, v) for k, v in fields.items()]
                assignments = ", ".join(f"{key} = ?" for key in fields)
                db.execute(f"UPDATE runs SET {assignments} WHERE id = ?", (*values, run_id))
            status = fields.get("status")
            if status is not None and (status, fields.get("reason")) != tuple(row):
                db.execute(
                    "INSERT INTO run_events (run_id, at, status, reason) VALUES (?, ?, ?, ?)",
                    (run_id, time.time(), _column("status", status), fields.get("reason")),
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


def _private_file(path: Path) -> None:
    """`path` exists and is 0600 (env values are stored in clear), whatever the umask."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    for suffix in ("-wal", "-shm"):
        other = path.with_name(path.name + suffix)
        if other.exists() and other.stat().st_mode & 0o077:
            os.chmod(other, 0o600)


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
    if key in _JSON_COLUMNS and value is not None:
        return json.dumps(value)
    if isinstance(value, RunStatus):
        return value.value
    return value


def _record(row: sqlite3.Row) -> RunRecord:
    return RunRecord.model_validate(dict(row))
