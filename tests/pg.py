"""A real PostgreSQL for the tests: Debian's `postgresql` binaries, a cluster made by `initdb` in a
temporary folder, a server on 127.0.0.1 (a free port, its unix socket in that folder), stopped by
PID at the end. PostgreSQL refuses to run as root: as root, it runs as the `postgres` user, who
owns the folder. Tests that need it skip, saying why, when the binaries are missing.

    registry_target   "sqlite" and "postgresql": an SQLite file, or a fresh database's URL
    postgres          the session's server (PostgresServer); `pg_url` a fresh database on it
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

#: where Debian puts each major version's server binaries
BIN_GLOB = "/usr/lib/postgresql/*/bin"


INITDB_ARGS = ("-U", "postgres", "--auth=trust", "--encoding=UTF8", "--no-sync")
#: a throw-away cluster: durability off (faster), room for many servers' connections
SERVER_ARGS = ("-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
SERVER_ARGS += ("-c", "max_connections=400")


def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL's bin folder (initdb and postgres), or None."""
    found = [
        Path(p)
        for p in glob.glob(BIN_GLOB)
        if (Path(p) / "initdb").exists() and (Path(p) / "postgres").exists()
    ]
    found.sort(key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    return found[-1] if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """One throw-away PostgreSQL cluster and its server process (see the module's docstring)."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.folder = Path(tempfile.mkdtemp(prefix="iacrun-pg-"))
        self.data = self.folder / "data"
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._as: list[str] = []
        if os.getuid() == 0:  # postgres refuses root: the `postgres` user runs it
            try:
                user = pwd.getpwnam("postgres")
            except KeyError:
                pytest.skip("running as root and there is no `postgres` user to run PostgreSQL")
            os.chown(self.folder, user.pw_uid, user.pw_gid)
            self._as = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}"]
            self._as += ["--init-groups", "--"]
        subprocess.run(
            [*self._as, str(bindir / "initdb"), "-D", str(self.data), *INITDB_ARGS],
            check=True,
            capture_output=True,
        )

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        log = open(self.folder / "server.log", "ab")  # noqa: SIM115 (kept by the child)
        if os.getuid() == 0:
            pwent = pwd.getpwnam("postgres")
            os.chown(log.name, pwent.pw_uid, pwent.pw_gid)
        self.process = subprocess.Popen(
            [
                *self._as,
                str(self.bindir / "postgres"),
                "-D",
                str(self.data),
                *SERVER_ARGS,
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-k",
                str(self.folder),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        self._wait_ready()

    def _wait_ready(self) -> None:
        import psycopg

        deadline = time.monotonic() + 60
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(
                    "postgres exited: " + (self.folder / "server.log").read_text()[-2000:]
                )
            try:
                psycopg.connect(self.url(), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        """Fast shutdown (SIGINT to the postmaster, by PID), SIGKILL if it hangs."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def create_database(self) -> str:
        """A new empty database; its URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        import psycopg

        name = url.rsplit("/", 1)[1]
        with (
            contextlib.suppress(psycopg.Error),
            psycopg.connect(self.url(), autocommit=True) as conn,
        ):
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


def new_server() -> PostgresServer:
    """A started server of its own (a test that restarts or kills it); skips without binaries."""
    bindir = postgres_bin()
    if bindir is None:
        pytest.skip(f"PostgreSQL is not installed (no initdb/postgres under {BIN_GLOB})")
    server = PostgresServer(bindir)
    server.start()
    return server


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = new_server()
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture
def pg_url(postgres: PostgresServer) -> Iterator[str]:
    """A fresh, empty database on the session's server."""
    url = postgres.create_database()
    yield url
    postgres.drop_database(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def registry_target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Where a registry lives, once per database: an SQLite file, then a PostgreSQL URL."""
    if request.param == "sqlite":
        yield str(tmp_path / "registry.db")
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    url = server.create_database()
    yield url
    server.drop_database(url)
