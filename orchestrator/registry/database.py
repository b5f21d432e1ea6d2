"""The registry's database: one small portable layer over SQLite and PostgreSQL.

SQLite is the default (a file in iacrun's home, WAL mode, safe across processes); PostgreSQL is
used when the target is a `postgresql://` URL (a server shared by a team). Every query in the
registry is written once, in SQL that both read: `?` placeholders (translated for PostgreSQL),
`RETURNING`, partial indexes, `ON CONFLICT`; times are REAL epoch seconds, JSON is TEXT,
booleans are INTEGER 0/1. A row comes back as a plain `dict`.

The schema belongs to Alembic (`migrations/`). Opening a database brings it to the newest
revision first; a database already there costs one SELECT, so a CLI command that reads the
registry never imports SQLAlchemy or Alembic (`iacrun ps` stays fast).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from iacrun.orchestrator.paths import private_dir
from iacrun.orchestrator.registry.migrate import SCHEMA_HEAD, upgrade

Dialect = Literal["sqlite", "postgresql"]
Params = Sequence[Any]


class UniqueViolation(Exception):
    """A row broke a unique rule (e.g. two active runs of one name): the caller says what."""


class Database:
    """One connection to the registry's database, usable from several threads (one at a time).

    `rows`/`row`/`execute` run one statement; `transaction()` runs several atomically and, on
    SQLite, takes the write lock up front (`BEGIN IMMEDIATE`) so a read-then-write inside it is a
    compare-and-set across processes. On PostgreSQL, lock the rows read for a later write with
    `for_update` appended to the SELECT.

    PostgreSQL is reached through psycopg (imported only for a `postgresql://` URL), over one
    connection in autocommit mode shared under the lock: a statement takes a fraction of a
    millisecond, so one connection serves a server's threads (tests/bench/bench_registry.py).
    A connection the server dropped (a restart) is made again before the next statement; a
    statement cut off in the middle of a transaction fails, and the transaction with it."""

    dialect: Dialect
    #: `SELECT ... {db.for_update}` locks the rows read inside a transaction (PostgreSQL);
    #: empty on SQLite, whose transactions already hold the write lock
    for_update: str

    def __init__(self, url: str) -> None:
        self.url = url
        self._lock = threading.RLock()
        self._depth = 0
        self._conn: Any
        if is_postgres(url):
            self.dialect = "postgresql"
            self.for_update = " FOR UPDATE"
            self._conn = _open_postgres(url)
        else:
            self.dialect = "sqlite"
            self.for_update = ""
            self.path = (
                Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:") else Path(url)
            )
            self._conn = _open_sqlite(self.path)
        self._ensure_schema()

    # -- statements ---------------------------------------------------------------------------

    def rows(self, sql: str, params: Params = ()) -> list[dict[str, Any]]:
        with self._lock, self._translated_errors():
            return [dict(row) for row in self._run(sql, params)]

    def row(self, sql: str, params: Params = ()) -> dict[str, Any] | None:
        with self._lock, self._translated_errors():
            found = self._run(sql, params).fetchone()
        return None if found is None else dict(found)

    def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement; how many rows it changed."""
        with self._lock, self._translated_errors():
            return int(self._run(sql, params).rowcount)

    @contextmanager
    def transaction(self) -> Iterator[Database]:
        """Statements inside run atomically: all or none. Nested uses join the outer one."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self
                finally:
                    self._depth -= 1
                return
            with self._translated_errors():
                self._run("BEGIN" if self.dialect == "postgresql" else "BEGIN IMMEDIATE", ())
            self._depth = 1
            try:
                yield self
            except BaseException:
                self._depth = 0
                with contextlib.suppress(Exception):  # a dropped connection rolled back already
                    self._conn.execute("ROLLBACK")
                raise
            self._depth = 0
            with self._translated_errors():
                self._conn.execute("COMMIT")

    def serialize(self, key: int) -> None:
        """Inside a transaction: wait until no other transaction holds `key`, then hold it until
        this one ends (a check-then-insert that processes on PostgreSQL may race on, e.g. the
        first admin). SQLite's transactions already hold the write lock: nothing to do."""
        assert self._depth, "serialize() is for inside a transaction"
        if self.dialect == "postgresql":
            self.row("SELECT pg_advisory_xact_lock(?)", (key,))

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _run(self, sql: str, params: Params) -> Any:
        """The cursor of one statement, on this database's driver (the lock is held)."""
        if self.dialect == "sqlite":
            return self._conn.execute(sql, tuple(params))
        import psycopg

        query = postgres_sql(sql)
        if self._conn.closed or self._conn.broken:
            if self._depth:  # the transaction died with its connection
                raise psycopg.OperationalError("the connection to PostgreSQL was lost")
            self._reconnect()
        try:
            return self._conn.execute(query, tuple(params))
        except psycopg.OperationalError:
            if self._depth or not self._conn.broken:
                raise
            # the server dropped the connection (a restart) before this statement was run by
            # it: connect again and run it once more
            self._reconnect()
            return self._conn.execute(query, tuple(params))

    def _reconnect(self) -> None:
        """Connect to PostgreSQL again, waiting up to `RECONNECT_SECONDS` for a server that is
        restarting (its supervisors' threads wait with it rather than fail their runs)."""
        import psycopg

        deadline = time.monotonic() + RECONNECT_SECONDS
        while True:
            try:
                self._conn = _open_postgres(self.url)
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    @contextmanager
    def _translated_errors(self) -> Iterator[None]:
        """A unique rule broken, on either database, raised as `UniqueViolation`."""
        try:
            yield
        except sqlite3.IntegrityError as exc:
            if _UNIQUE.search(str(exc)):
                raise UniqueViolation(str(exc)) from None
            raise
        except Exception as exc:
            if self.dialect == "postgresql" and type(exc).__name__ == "UniqueViolation":
                raise UniqueViolation(str(exc).splitlines()[0]) from None
            raise

    # -- schema -------------------------------------------------------------------------------

    def schema_version(self) -> str | None:
        """The Alembic revision the database is at; None for a new (or pre-Alembic) one."""
        if self.dialect == "postgresql":
            found = self.row(
                "SELECT to_regclass('alembic_version') IS NOT NULL AS present"
            )  # asking first keeps a missing table from being an error in the server's log
            if not (found and found["present"]):
                return None
        try:
            found = self.row("SELECT version_num FROM alembic_version")
        except sqlite3.OperationalError:
            return None
        return None if found is None else str(found["version_num"])

    def _ensure_schema(self) -> None:
        if self.schema_version() == SCHEMA_HEAD:
            return
        if self.dialect == "postgresql":
            with self._advisory_lock():
                if self.schema_version() != SCHEMA_HEAD:
                    upgrade(sqlalchemy_url(self.url))
        else:
            with _file_lock(self.path.with_name(self.path.name + ".migrate.lock")):
                if self.schema_version() != SCHEMA_HEAD:
                    upgrade(f"sqlite:///{self.path}")

    @contextmanager
    def _advisory_lock(self) -> Iterator[None]:
        """PostgreSQL's session lock that one migrating process holds while the others wait."""
        self.row("SELECT pg_advisory_lock(?)", (MIGRATION_LOCK_KEY,))
        try:
            yield
        finally:
            self.row("SELECT pg_advisory_unlock(?)", (MIGRATION_LOCK_KEY,))


#: seconds a lost PostgreSQL connection is tried again before the statement fails
RECONNECT_SECONDS = 30.0

#: the key of the advisory lock migrations run under (any number: it only has to be the same)
MIGRATION_LOCK_KEY = 0x1AC2_0001


def is_postgres(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://"))


def sqlalchemy_url(url: str) -> str:
    """A PostgreSQL URL as SQLAlchemy spells it for psycopg 3."""
    _, rest = url.split("://", 1)
    return f"postgresql+psycopg://{rest}"


def postgres_sql(sql: str) -> str:
    """`sql` with `?` placeholders written as psycopg's `%s`, and every `%` doubled (psycopg
    reads `%` as a placeholder wherever it is, so `LIKE 'a%'` becomes `LIKE 'a%%'`, which it
    sends as written). A `?` inside a quoted string or name is left alone."""
    out: list[str] = []
    quote: str | None = None
    for char in sql:
        if char == "%":
            out.append("%%")
        elif quote is not None:
            out.append(char)
            if char == quote:  # a doubled quote closes and reopens: the same either way
                quote = None
        elif char in ("'", '"'):
            quote = char
            out.append(char)
        elif char == "?":
            out.append("%s")
        else:
            out.append(char)
    return "".join(out)


def _open_postgres(url: str) -> Any:
    import psycopg
    from psycopg.rows import dict_row

    _, rest = url.split("://", 1)
    return psycopg.connect(f"postgresql://{rest}", autocommit=True, row_factory=dict_row)


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` (made 0600), across processes and threads alike."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _open_sqlite(path: Path) -> sqlite3.Connection:
    private_dir(path.parent)
    _private_file(path)  # SQLite gives its -wal and -shm files the database's mode
    conn = sqlite3.connect(str(path), timeout=30, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout = 30000")
    _use_wal(conn)
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def _use_wal(conn: sqlite3.Connection, wait: float = 30.0) -> None:
    """Put a new database in WAL mode. The switch needs the database to itself and SQLite
    answers "database is locked" at once, busy timeout or not, while another process opening the
    same new file holds it (two `iacrun up` on a fresh home): try again until `wait` is spent."""
    end = time.monotonic() + wait
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > end:
                raise
            time.sleep(0.05)


_UNIQUE = re.compile(r"UNIQUE constraint failed", re.IGNORECASE)


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
