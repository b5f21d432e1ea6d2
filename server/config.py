"""What a server is started with: where it listens, its home, its database, its first admin, how
long its leases last and how long unused uploads are kept."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from iacrun.orchestrator.paths import iacrun_home, registry_target

#: where a server listens unless told: loopback only (put TLS in front to share it, see README)
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 3000
#: hours an upload no run or schedule uses is kept after a client last named it
UPLOAD_GRACE_HOURS = 24.0
#: the environment variable that changes it
UPLOAD_GRACE_ENV = "IACRUN_SERVER_UPLOAD_GRACE_HOURS"


@dataclass(frozen=True)
class ServerConfig:
    """`home`: iacrun's home (the registry, the runs' folders and the uploads live there).
    `database`: the registry's target, as `paths.registry_target` decides it for the home
    (`IACRUN_DATABASE_URL`, else the SQLite file in the home) unless given.
    `admin_token`: `IACRUN_SERVER_ADMIN_TOKEN`, the first admin's token (else one is made).
    `lease_seconds`: how long a run's lease lasts (`IACRUN_SERVER_LEASE_SECONDS`, 30 s; None:
    that variable, read when the pool starts). `upload_grace_hours`: how long an upload no
    active run or schedule uses is kept (`IACRUN_SERVER_UPLOAD_GRACE_HOURS`, 24 h)."""

    home: Path
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    database: str = ""
    admin_token: str | None = None
    lease_seconds: float | None = None
    upload_grace_hours: float = UPLOAD_GRACE_HOURS

    def __post_init__(self) -> None:
        if not self.database:
            object.__setattr__(self, "database", str(registry_target(self.home)))
        if self.lease_seconds is not None and self.lease_seconds <= 0:
            from iacrun.orchestrator.errors import ConfigError

            raise ConfigError(f"a lease of {self.lease_seconds:g} s: give a number of seconds > 0")

    @classmethod
    def from_env(
        cls,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        home: Path | None = None,
        lease_seconds: float | None = None,
    ) -> ServerConfig:
        from iacrun.server.supervision import lease_seconds as lease_from_env

        return cls(
            home=home or iacrun_home(),
            host=host,
            port=port,
            admin_token=os.environ.get("IACRUN_SERVER_ADMIN_TOKEN") or None,
            lease_seconds=lease_seconds if lease_seconds is not None else lease_from_env(),
            upload_grace_hours=_upload_grace_from_env(),
        )

    @property
    def database_kind(self) -> str:
        from iacrun.orchestrator.registry.database import is_postgres

        return "postgresql" if is_postgres(self.database) else "sqlite"

    @property
    def shown_database(self) -> str:
        """The database as said at start: its kind and where (a URL's password left out)."""
        if self.database_kind == "sqlite":
            return f"sqlite {self.database}"
        from urllib.parse import urlsplit

        parts = urlsplit(self.database)
        where = f"{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{parts.path}"
        return f"{self.database_kind} {where}"


def _upload_grace_from_env() -> float:
    raw = os.environ.get(UPLOAD_GRACE_ENV, "").strip()
    if not raw:
        return UPLOAD_GRACE_HOURS
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value < 0:
        from iacrun.orchestrator.errors import ConfigError

        raise ConfigError(f"{UPLOAD_GRACE_ENV}={raw!r} is not a number of hours of 0 or more")
    return value
