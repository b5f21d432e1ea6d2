"""The runs and their history, in the registry's database, safe across processes.

Any number of `iacrun` processes (and a server's threads) may read and write at once: writes run
in transactions, and "one active run per name" is a partial unique index, so two processes
racing for the same name cannot both win.
"""

from __future__ import annotations

import contextvars
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
    HostClaim,
    RunEvent,
    RunRecord,
    RunStatus,
)

#: how long a run that ended stays in the default list (`iacrun ps` without -a), in seconds
RECENT = 3600


class LeaseLost(Exception):
    """The lease of the run this code acts for was taken by another owner (this server stalled
    past it): stop acting on the run at once, write nothing more to it. Not an `IacrunError`, so
    that no handler of failures (failover, the supervisor's own) takes it for one to record."""


class Lease:
    """The lease a server's supervising thread acts under (see `Registry.acting_for`): its
    owner, and `lost`, set by the server's heartbeat once a renewal no longer returns the run."""

    def __init__(self, run_id: int, owner: str) -> None:
        self.run_id = run_id
        self.owner = owner
        self.lost = threading.Event()


#: the lease the current thread (or task) acts under; None: no lease (the CLI's supervisor)
_acting: contextvars.ContextVar[Lease | None] = contextvars.ContextVar("acting", default=None)


class Registry:
    """Runs and their status history. `target`: an SQLite file, or a database URL
    (`paths.registry_target` says which a home uses). `clock`: the time leases are read
    against (epoch seconds; injected by tests)."""

    def __init__(self, target: Path | str, *, clock: Callable[[], float] = time.time) -> None:
        self.target = str(target)
        self.db = Database(self.target)
        self.clock = clock

    def close(self) -> None:
        self.db.close()

    def create(
        self,
        name: str,
        spec: RunSpec,
        local_dir_root: Path,
        *,
        submitted_by: str | None = None,
        supervisor_pid: int | None = None,
        schedule_id: int | None = None,
    ) -> RunRecord:
        """Record a new run as `submitted` (by a server's user, or None in embedded mode;
        started by the schedule `schedule_id`, if any); a
        name already active, or one that breaks the rule of names (it becomes a folder and a
        stack name), is refused. `supervisor_pid`: the process that starts its supervisor (then
        replaced by the supervisor's own), so that no server's pool takes the run meanwhile;
        None leaves it to a server's pool."""
        check_run_name(name)
        now = time.time()
        try:
            with self.db.transaction() as db:
                inserted = db.row(
                    "INSERT INTO runs (name, status, spec, submitted_at, submitted_by, "
                    "supervisor_pid, schedule_id) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                    (
                        name,
                        "submitted",
                        _column("spec", spec),
                        now,
                        submitted_by,
                        supervisor_pid,
                        schedule_id,
                    ),
                )
                assert inserted is not None
                run_id = int(inserted["id"])
                local_dir = str(local_dir_root / f"{name}-{run_id}")
                db.execute("UPDATE runs SET local_dir = ? WHERE id = ?", (local_dir, run_id))
                _record_event(db, run_id, "submitted", None, at=now)
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
        """Update only if the run's status is one of `expect` (compare-and-set across processes).
        Acting for the run's lease (`acting_for`), only while it is held: else `LeaseLost`."""
        _refuse_if_lost(run_id)
        with self.db.transaction() as db:
            row = db.row(
                f"SELECT status, reason, lease_owner FROM runs WHERE id = ?{db.for_update}",
                (run_id,),
            )
            if row is not None:
                _refuse_if_lost(run_id, row["lease_owner"])
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
                _record_event(db, run_id, _column("status", status), fields.get("reason"))
        return self.get_by_id(run_id)

    def request_stop(self, run_id: int, reason: str, *, abort: bool = False) -> RunRecord | None:
        """Record that the active run must stop (`terminating`, with `reason`), and whether as
        an abort; None when it is not active. In one transaction: a plain stop after an abort
        changes nothing (it stays an abort, with its reason); an abort after a plain stop makes
        it one (whoever carries the stop out sees it, even mid-grace)."""
        with self.db.transaction() as db:
            row = db.row(
                f"SELECT status, reason, abort FROM runs WHERE id = ?{db.for_update}", (run_id,)
            )
            if row is None or row["status"] not in ACTIVE_STATUSES:
                return None
            if not row["abort"] or abort:
                db.execute(
                    "UPDATE runs SET status = ?, reason = ?, abort = ? WHERE id = ?",
                    ("terminating", reason, int(abort), run_id),
                )
                if (row["status"], row["reason"]) != ("terminating", reason):
                    _record_event(db, run_id, "terminating", reason)
        return self.get_by_id(run_id)

    @contextmanager
    def acting_for(self, lease: Lease) -> Iterator[Lease]:
        """Inside, this thread acts for `lease`: every write to its run is a compare-and-set on
        the lease's owner, and `check_lease` raises `LeaseLost` once it is lost."""
        token = _acting.set(lease)
        try:
            yield lease
        finally:
            _acting.reset(token)

    def check_lease(self, run_id: int) -> None:
        """Raise `LeaseLost` if this thread acts for the run's lease and has lost it: its flag
        is set, or the registry names another owner. Before every action on the run's host."""
        lease = _acting.get()
        if lease is None or lease.run_id != run_id:
            return
        _refuse_if_lost(run_id)
        row = self.db.row("SELECT lease_owner FROM runs WHERE id = ?", (run_id,))
        if row is not None:
            _refuse_if_lost(run_id, row["lease_owner"])

    def claim_supervisor(self, run_id: int, old_pid: int | None, new_pid: int) -> bool:
        """Make `new_pid` the run's supervisor if `old_pid` still is: one process wins."""
        held = "supervisor_pid IS NULL" if old_pid is None else "supervisor_pid = ?"
        params = (new_pid, run_id) if old_pid is None else (new_pid, run_id, old_pid)
        return (
            self.db.execute(f"UPDATE runs SET supervisor_pid = ? WHERE id = ? AND {held}", params)
            == 1
        )

    def claim_hosts(
        self, run_id: int, choose: Callable[[list[RunRecord]], list[HostClaim]]
    ) -> list[HostClaim]:
        """Record the hosts `choose` picks as run `run_id`'s, in one transaction with reading
        every other active run (`choose` gets them, and says why none fits by raising): two
        runs claiming at once are serialized (SQLite's write lock; the rows locked FOR UPDATE
        on PostgreSQL, where a run recording its machine waits for the claim), so no host is
        given to both. A claim counts while its run is active."""
        with self.db.transaction() as db:
            rows = db.rows(
                f"SELECT * FROM runs WHERE status IN {ACTIVE_STATUSES!r} ORDER BY id{db.for_update}"
            )
            for row in rows:
                if row["id"] == run_id:  # written for this run: only while its lease is held
                    _refuse_if_lost(run_id, row["lease_owner"])
            others = [RunRecord.model_validate(row) for row in rows if row["id"] != run_id]
            claims = choose(others)
            db.execute(
                "UPDATE runs SET node_hosts = ? WHERE id = ?",
                (_column("node_hosts", claims), run_id),
            )
        return claims

    # -- leases: which server supervises a run (server/supervision.py) ------------------------

    def acquire_lease(self, run_id: int, owner: str, ttl: float) -> bool:
        """Make `owner` the run's supervisor for `ttl` seconds if the lease is free, expired or
        already its own, and the run is still active: one owner wins across processes."""
        now = self.clock()
        changed = self.db.execute(
            "UPDATE runs SET lease_owner = ?, lease_expires = ? WHERE id = ? "
            f"AND status IN {ACTIVE_STATUSES!r} "
            "AND (lease_owner IS NULL OR lease_owner = ? OR lease_expires < ?)",
            (owner, now + ttl, run_id, owner, now),
        )
        return changed == 1

    def renew_leases(self, owner: str, ttl: float) -> list[int]:
        """Extend every lease `owner` still holds by `ttl` seconds; the ids of those runs (a
        lease that another owner took after it expired is not among them)."""
        rows = self.db.rows(
            "UPDATE runs SET lease_expires = ? WHERE lease_owner = ? RETURNING id",
            (self.clock() + ttl, owner),
        )
        return sorted(int(row["id"]) for row in rows)

    def release_lease(self, run_id: int, owner: str) -> None:
        """Give the run's lease up, if `owner` holds it."""
        self.db.execute(
            "UPDATE runs SET lease_owner = NULL, lease_expires = NULL "
            "WHERE id = ? AND lease_owner = ?",
            (run_id, owner),
        )

    def unsupervised(self) -> list[RunRecord]:
        """Active runs that no one supervises: no supervisor process of the embedded mode, and
        no lease or an expired one (oldest first)."""
        rows = self.db.rows(
            f"SELECT * FROM runs WHERE status IN {ACTIVE_STATUSES!r} "
            "AND supervisor_pid IS NULL AND (lease_owner IS NULL OR lease_expires < ?) "
            "ORDER BY id",
            (self.clock(),),
        )
        return [RunRecord.model_validate(row) for row in rows]

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
        backend: str | None = None,
        active: bool | None = None,
        recent: bool = False,
        limit: int = 50,
        before: int | None = None,
    ) -> list[RunRecord]:
        """Runs newest first, filtered (status, submitting user, backend, active or final), at
        most `limit`, with ids below `before` (the paging a server's list uses: the next page
        starts below the last id of this one). `recent`: the
        runs `runs()` lists by default, active ones and those that ended in the last hour."""
        where: list[str] = []
        params: list[Any] = []
        if status is not None:
            where.append("status = ?")
            params.append(status)
        if user is not None:
            where.append("submitted_by = ?")
            params.append(user)
        if backend is not None:
            where.append("backend = ?")
            params.append(backend)
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


_UNREAD = object()


def _refuse_if_lost(run_id: int, lease_owner: object = _UNREAD) -> None:
    """Raise `LeaseLost` if this thread acts for run `run_id`'s lease (`Registry.acting_for`)
    and lost it: its flag is set, or `lease_owner` (as read inside the write's transaction, the
    row locked) names another owner."""
    lease = _acting.get()
    if lease is None or lease.run_id != run_id:
        return
    if lease_owner is not _UNREAD and lease_owner != lease.owner:
        lease.lost.set()
    if lease.lost.is_set():
        raise LeaseLost(f"run {run_id}: its lease was taken over by another server")


def name_taken(name: str) -> RunNameTakenError:
    """The one way of saying that an active run holds `name`."""
    return RunNameTakenError(
        f"a run named {name!r} is still active; stop it first (iacrun stop {name}) "
        "or choose another name with -n"
    )


def schedule_name_taken(name: str, schedule: str) -> RunNameTakenError:
    """The one way of saying that the active schedule `schedule` holds the run name `name`."""
    if name == schedule:
        return RunNameTakenError(
            f"{name!r} is an active schedule's name (iacrun stop {name} would end the "
            "schedule); choose another name with -n, or stop the schedule first"
        )
    return RunNameTakenError(
        f"{name!r} is a name the active schedule {schedule!r} gives its runs "
        f"({schedule}-YYYYmmddHHMM); choose another name with -n"
    )


def _record_event(
    db: Database, run_id: int, status: str, reason: str | None, *, at: float | None = None
) -> None:
    """Add a status change to the run's history (`run_events`), in the caller's transaction."""
    db.execute(
        "INSERT INTO run_events (run_id, at, status, reason) VALUES (?, ?, ?, ?)",
        (run_id, time.time() if at is None else at, status, reason),
    )


def _column(key: str, value: Any) -> Any:
    """A field as its column stores it: models and mappings as JSON, statuses as their name,
    booleans as 0/1."""
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    if key in JSON_COLUMNS and value is not None:
        return json.dumps(
            [v.model_dump(mode="json") if isinstance(v, BaseModel) else v for v in value]
            if isinstance(value, list)
            else value
        )
    if isinstance(value, RunStatus):
        return value.value
    if isinstance(value, bool):  # booleans are INTEGER 0/1: PostgreSQL refuses a bool there
        return int(value)
    return value
