"""What the registry records: a run's status, the run as read back, and its history.

Records are lenient on the way in: a row written by an older or newer version still loads.
"""

from __future__ import annotations

import json
import time
from enum import StrEnum
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError, field_validator

from iacrun.orchestrator.host.transport import Host
from iacrun.orchestrator.models.runspec import RunSpec
from iacrun.orchestrator.offers.model import Offer


class RunStatus(StrEnum):
    """Where a run is. A run moves forward through the active ones and ends in a final one:

    submitted → provisioning ⇄ pending → running ⇄ pending → terminating → done|failed|terminated

    (`pending`: waiting for capacity, or between two attempts of a retried job).
    The runner (runner/runner.py) and the VM guard (stacks/vmguard.py) run on hosts without
    iacrun installed and keep their own copy of the final ones; a test holds them equal."""

    PENDING = "pending"
    SUBMITTED = "submitted"
    PROVISIONING = "provisioning"
    RUNNING = "running"
    TERMINATING = "terminating"
    DONE = "done"
    FAILED = "failed"
    TERMINATED = "terminated"

    @property
    def is_final(self) -> bool:
        return self in _FINAL

    @property
    def is_active(self) -> bool:
        return self not in _FINAL


_FINAL = frozenset({RunStatus.DONE, RunStatus.FAILED, RunStatus.TERMINATED})
#: the statuses as plain strings, for SQL and for compare-and-set transitions
ACTIVE_STATUSES: tuple[str, ...] = tuple(s.value for s in RunStatus if s.is_active)
FINAL_STATUSES: tuple[str, ...] = tuple(s.value for s in RunStatus if s.is_final)


class HostClaim(BaseModel):
    """One ssh host a multi-node run holds: the configured host's label and endpoint, and the
    GPUs it takes there (None: the whole host)."""

    label: str
    address: str
    port: int
    gpus: str | None = None


class RunRecord(BaseModel):
    """A run as the registry knows it. Lenient: it reads back what any version wrote.

    `spec`, `host` and `offer` are typed, but a stored value that no longer validates (an older
    or newer version wrote it) loses only the parts that do not: unknown keys are dropped, a
    missing or unreadable part takes its default, an unreadable host or offer reads as None."""

    id: int
    name: str
    status: RunStatus
    reason: str | None = None
    backend: str | None = None
    region: str | None = None
    instance_type: str | None = None
    spot: bool = False
    price: float | None = None
    offer: Offer | None = None
    host: Host | None = None
    spec: RunSpec
    stack_name: str | None = None
    local_dir: str = ""
    exit_code: int | None = None
    attempt: int = 0
    supervisor_pid: int | None = None
    #: the server user who submitted the run; None for a run submitted in embedded mode
    submitted_by: str | None = None
    #: the server that supervises the run (server/supervision.py), and until when
    lease_owner: str | None = None
    lease_expires: float | None = None
    #: the schedule that started the run (`iacrun server`), or None
    schedule_id: int | None = None
    #: the ssh hosts a multi-node run holds, rank by rank (`Registry.claim_hosts`), or None
    node_hosts: list[HostClaim] | None = None
    #: the stop asked of the run is an abort (`iacrun stop -x`): its job is killed at once,
    #: without its stop_duration grace
    abort: bool = False
    submitted_at: float
    started_at: float | None = None
    finished_at: float | None = None

    @field_validator("spec", mode="before")
    @classmethod
    def _read_spec(cls, value: Any) -> RunSpec:
        return read_spec(value)

    @field_validator("host", mode="before")
    @classmethod
    def _read_host(cls, value: Any) -> Host | None:
        return value if isinstance(value, Host) or value is None else _lenient(Host, _loaded(value))

    @field_validator("node_hosts", mode="before")
    @classmethod
    def _read_node_hosts(cls, value: Any) -> list[HostClaim] | None:
        data = _loaded(value)
        if not isinstance(data, list):
            return None
        claims = (_lenient(HostClaim, item) for item in data if isinstance(item, dict))
        return [claim for claim in claims if claim is not None]

    @field_validator("offer", mode="before")
    @classmethod
    def _read_offer(cls, value: Any) -> Offer | None:
        if isinstance(value, Offer) or value is None:
            return value
        return _lenient(Offer, _loaded(value))

    @property
    def active(self) -> bool:
        return self.status.is_active

    @property
    def duration(self) -> float | None:
        start = self.started_at or self.submitted_at
        end = self.finished_at or time.time()
        return max(0.0, end - start)

    @property
    def cost(self) -> float | None:
        if self.price is None or self.started_at is None:
            return None
        end = self.finished_at or time.time()
        return self.price * max(0.0, end - self.started_at) / 3600


class RunEvent(BaseModel):
    at: float
    status: RunStatus
    reason: str | None = None


def read_spec(value: Any) -> RunSpec:
    """A stored spec (JSON text or data) as a RunSpec, keeping what still validates."""
    if isinstance(value, RunSpec):
        return value
    data = _loaded(value)
    spec = _lenient(RunSpec, data if isinstance(data, dict) else {}, _SPEC_DEFAULTS)
    return spec or RunSpec.model_validate(_SPEC_DEFAULTS)


#: the columns that hold JSON (models and mappings)
JSON_COLUMNS = ("offer", "host", "spec", "node_hosts")

#: what a spec part that is missing from a stored row reads as
_SPEC_DEFAULTS: dict[str, Any] = {
    "run_name": None,
    "config_path": "",
    "repo_dir": "",
    "working_dir": ".",
    "image": None,
    "python": None,
    "commands": [],
    "env": {},
    "ports": [],
    "requirements": {},
    "retry": None,
    "max_duration": None,
    "stop_duration": 15,
    "files": [],
    "repos": [],
}

M = TypeVar("M", bound=BaseModel)


def _loaded(value: Any) -> Any:
    """A column's JSON as data; text that is not JSON reads as nothing."""
    if not isinstance(value, str | bytes):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return None


def _lenient(model: type[M], data: Any, defaults: dict[str, Any] | None = None) -> M | None:
    """`data` as `model`, dropping what does not validate (one offending key at a time).

    A nested key that is unknown or unreadable is removed; a missing one removes the mapping
    that needs it, which its own default then replaces (or which is removed in turn); a missing
    top-level key takes its value from `defaults`. None when nothing readable is left."""
    for _ in range(50):
        if defaults is not None and isinstance(data, dict):
            data = {**defaults, **data}
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            if not isinstance(data, dict) or not _drop(data, exc):
                return None
    return None


def _drop(data: dict[str, Any], exc: ValidationError) -> bool:
    """Remove the part of `data` the first error points at; False when it points at nothing."""
    for error in exc.errors():
        loc = [part for part in error["loc"] if isinstance(part, str | int)]
        if error["type"] == "missing":
            loc = loc[:-1]  # the container that lacks the key
        while loc:
            parent: Any = data
            for part in loc[:-1]:
                try:
                    parent = parent[part]
                except (KeyError, IndexError, TypeError):
                    parent = None
                    break
            key = loc[-1]
            if isinstance(parent, dict) and key in parent:
                del parent[key]
                return True
            if isinstance(parent, list) and isinstance(key, int) and key < len(parent):
                del parent[key]
                return True
            loc = loc[:-1]  # a tag of a union or an annotated type: look one level up
    return False
