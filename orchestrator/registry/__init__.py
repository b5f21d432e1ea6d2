"""The registry: every run, its status and its history, in a database shared by processes.

`records` (what a run is as recorded: `RunStatus`, `RunRecord`, `RunEvent`, `HostClaim`),
`runs` (the `Registry` of runs), `database` (the portable layer over SQLite and PostgreSQL),
`migrate` and `migrations/` (the schema, owned by Alembic).
"""

from iacrun.orchestrator.registry.records import (
    ACTIVE_STATUSES,
    FINAL_STATUSES,
    HostClaim,
    RunEvent,
    RunRecord,
    RunStatus,
)
from iacrun.orchestrator.registry.runs import Registry, name_taken

__all__ = [
    "ACTIVE_STATUSES",
    "FINAL_STATUSES",
    "HostClaim",
    "Registry",
    "RunEvent",
    "RunRecord",
    "RunStatus",
    "name_taken",
]
