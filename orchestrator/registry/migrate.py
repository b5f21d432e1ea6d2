"""Bringing a registry database to the newest schema with Alembic (imported only when needed:
a database already at `SCHEMA_HEAD` costs one SELECT).

Several processes may open a new database at once: one migrates while the others wait on a lock
(a lock file beside an SQLite database, an advisory lock on PostgreSQL: see `Database`), then
find it done.
"""

from __future__ import annotations

from pathlib import Path

#: the newest Alembic revision (migrations/versions/); a test holds it equal to Alembic's head
SCHEMA_HEAD = "0006_stop_abort"
MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(url: str) -> object:
    """Alembic's configuration for the database at `url` (SQLAlchemy's spelling)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str) -> None:
    """Migrate the database at `url` (SQLAlchemy's spelling) to the head revision; the caller
    holds the lock that makes it happen once across processes."""
    from alembic import command

    command.upgrade(alembic_config(url), "head")  # type: ignore[arg-type]
