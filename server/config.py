"""What a server is started with: where it listens, its home, its database and its first admin."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from iacrun.orchestrator.paths import iacrun_home, registry_file

#: where a server listens unless told: loopback only (put TLS in front to share it, see README)
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 3000


@dataclass(frozen=True)
class ServerConfig:
    """`home`: iacrun's home (the registry, the runs' folders and the uploads live there).
    `database_url`: `IACRUN_DATABASE_URL`, else the SQLite file in the home.
    `admin_token`: `IACRUN_SERVER_ADMIN_TOKEN`, the first admin's token (else one is made)."""

    home: Path
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    database_url: str | None = None
    admin_token: str | None = None

    @classmethod
    def from_env(
        cls, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, home: Path | None = None
    ) -> ServerConfig:
        return cls(
            home=home or iacrun_home(),
            host=host,
            port=port,
            database_url=os.environ.get("IACRUN_DATABASE_URL") or None,
            admin_token=os.environ.get("IACRUN_SERVER_ADMIN_TOKEN") or None,
        )

    @property
    def database(self) -> str:
        """The registry's target: the database URL, or the SQLite file in the home."""
        return self.database_url or str(registry_file(self.home))

    @property
    def database_kind(self) -> str:
        url = self.database_url or ""
        return "postgresql" if url.startswith(("postgresql://", "postgres://")) else "sqlite"

    @property
    def shown_database(self) -> str:
        """The database as said at start: its kind and where (a URL's password left out)."""
        if self.database_url is None:
            return f"sqlite {registry_file(self.home)}"
        from urllib.parse import urlsplit

        parts = urlsplit(self.database_url)
        where = f"{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{parts.path}"
        return f"{self.database_kind} {where}"
