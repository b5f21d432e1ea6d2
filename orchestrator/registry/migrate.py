"""Bringing a registry database to the newest schema with Alembic (imported only when needed:
a database already at `SCHEMA_HEAD` costs one SELECT).

Several processes may open a new database at once: one migrates while the others wait on a lock
(a lock file beside an SQLite database), then find it done.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from pathlib import Path

#: the newest Alembic revision (migrations/versions/); a test holds it equal to Alembic's head
SCHEMA_HEAD = "0003_accounts"
MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(url: str) -> object:
    """Alembic's configuration for the database at `url` (SQLAlchemy's spelling)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, path: Path, version: Callable[[], str | None]) -> None:
    """Migrate the database at `url` (SQLAlchemy's spelling; an SQLite file at `path`) to the
    head revision, once across processes; `version` reads the revision it is at."""
    from alembic import command

    lock_path = path.with_name(path.name + ".migrate.lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if version() == SCHEMA_HEAD:
            return
        command.upgrade(alembic_config(url), "head")  # type: ignore[arg-type]
    finally:
        os.close(fd)
