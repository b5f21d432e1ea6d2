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

import os
import re
import sqlite3
import threading
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
    `for_update` appended to the SELECT."""

    dialect: Dialect
    #: `SELECT ... {db.for_update}` locks the rows read inside a transaction (PostgreSQL);
    #: empty on SQLite, whose transactions already hold the write lock
    for_update: str

    def __init__(self, url: str) -> None:
        self.url = url
        self._lock = threading.RLock()
        self._depth = 0
        if url.startswith(("postgresql://", "postgres://")):
            raise NotImplementedError(
                "PostgreSQL support lands with the server"
            )  # pragma: no cover
        self.dialect = "sqlite"
        self.for_update = ""
        self.path = Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:") else Path(url)
        self._conn = _open_sqlite(self.path)
        self._ensure_schema()

    # -- statements ---------------------------------------------------------------------------

    def rows(self, sql: str, params: Params = ()) -> list[dict[str, Any]]:
        with self._lock, _translated_errors():
            return [dict(row) for row in self._conn.execute(sql, tuple(params))]

    def row(self, sql: str, params: Params = ()) -> dict[str, Any] | None:
        with self._lock, _translated_errors():
            found = self._conn.execute(sql, tuple(params)).fetchone()
        return None if found is None else dict(found)

    def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement; how many rows it changed."""
        with self._lock, _translated_errors():
            return self._conn.execute(sql, tuple(params)).rowcount

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
            self._conn.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield self
            except BaseException:
                self._depth = 0
                self._conn.execute("ROLLBACK")
                raise
            self._depth = 0
            with _translated_errors():
                self._conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # -- schema -------------------------------------------------------------------------------

    def schema_version(self) -> str | None:
        """The Alembic revision the database is at; None for a new (or pre-Alembic) one."""
        try:
            found = self.row("SELECT version_num FROM alembic_version")
        except sqlite3.OperationalError:
            return None
        return None if found is None else str(found["version_num"])

    def _ensure_schema(self) -> None:
        if self.schema_version() != SCHEMA_HEAD:
            upgrade(f"sqlite:///{self.path}", self.path, self.schema_version)


def _open_sqlite(path: Path) -> sqlite3.Connection:
    private_dir(path.parent)
    _private_file(path)  # SQLite gives its -wal and -shm files the database's mode
    conn = sqlite3.connect(str(path), timeout=30, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout = 30000")
    if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


@contextmanager
def _translated_errors() -> Iterator[None]:
    try:
        yield
    except sqlite3.IntegrityError as exc:
        if _UNIQUE.search(str(exc)):
            raise UniqueViolation(str(exc)) from None
        raise


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
