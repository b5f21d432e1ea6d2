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
from iacrun.orchestrator.registry.runs import (
    Lease,
    LeaseLost,
    Registry,
    name_taken,
    schedule_name_taken,
)

__all__ = [
    "ACTIVE_STATUSES",
    "FINAL_STATUSES",
    "HostClaim",
    "Lease",
    "LeaseLost",
    "Registry",
    "RunEvent",
    "RunRecord",
    "RunStatus",
    "name_taken",
    "schedule_name_taken",
]
