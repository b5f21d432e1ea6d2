"""The API's own shapes, besides the orchestrator's models it sends as they are (RunSpec,
RunRecord, RunEvent, Offer): requests, pages, accounts. The client reads the same classes
(this module imports only pydantic and the orchestrator's models, never FastAPI)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from iacrun.orchestrator.models.runspec import RunSpec
from iacrun.orchestrator.offers.model import Offer
from iacrun.orchestrator.registry import RunRecord
from iacrun.orchestrator.registry.schedules import ScheduleRecord

Role = Literal["admin", "member"]


class ServerInfo(BaseModel):
    version: str
    api: Literal["v1"] = "v1"
    database: Literal["sqlite", "postgresql"]


# -- runs ---------------------------------------------------------------------------------------


class PlanRequest(BaseModel):
    spec: RunSpec
    #: the upload's SHA-256 (PUT /uploads first): the plan then sees the server's copy
    upload: str | None = None
    #: also say what the first offer's backend would create (`iacrun up --dry-run`)
    dry_run: bool = False


class PlanResponse(BaseModel):
    offers: list[Offer]
    notes: list[str] = []
    #: what would be created, when the plan was asked with `dry_run`
    dry_run: str | None = None


class SubmitRequest(BaseModel):
    spec: RunSpec
    #: the SHA-256 of the run's upload (PUT /uploads/{sha256} first)
    upload: str


class RunPage(BaseModel):
    runs: list[RunRecord]
    #: pass as `before` for the next page; null on the last one
    next: int | None = None


#: the longest reason a stop request may give
MAX_STOP_REASON = 200


class StopRequest(BaseModel):
    #: dstack's abort (`iacrun stop -x`): the job is killed at once (SIGKILL to its processes
    #: and container), without its stop_duration grace, then the run is torn down; cuts short a
    #: graceful stop still in its grace. The call returns once the abort is recorded (the run's
    #: supervisor carries it out)
    abort: bool = False
    #: false: record a graceful stop and return at once (the run's supervisor stops the job and
    #: tears the run down); true (the default): return once the run has ended, as `iacrun stop`
    #: does. An abort always returns at once
    wait: bool = True
    #: why (a CI job cancelled, ...): recorded as the run's reason after who stopped it,
    #: `stopped by USER: REASON`; without it, `stopped by USER` (`aborted by USER` with abort)
    reason: str | None = Field(default=None, max_length=MAX_STOP_REASON)


class ScheduleStopRequest(BaseModel):
    #: dstack's abort (`iacrun stop -x SCHEDULE`): the schedule's active run is killed at once,
    #: without its stop_duration grace (as `StopRequest.abort`); the schedule ends either way
    abort: bool = False


class DownResponse(BaseModel):
    #: what was stopped and torn down, as `iacrun down` says it
    message: str


# -- schedules ----------------------------------------------------------------------------------


class ScheduleRequest(BaseModel):
    spec: RunSpec
    #: the SHA-256 of the task's upload (PUT /uploads/{sha256} first)
    upload: str


class ScheduleList(BaseModel):
    schedules: list[ScheduleRecord]


# -- backends and stacks --------------------------------------------------------------------------


class BackendStatus(BaseModel):
    name: str
    #: whether its preflight passed (credentials, tools, plugins); a backend without one: true
    ready: bool
    problem: str | None = None


class StackInfo(BaseModel):
    """One row of `iacrun stacks`."""

    name: str
    resources: int | None
    last_update: float | None
    result: str | None
    update_in_progress: bool
    run: str | None
    run_status: str | None
    owner: str
    leak: bool
    note: str


class Destroyed(BaseModel):
    message: str


# -- accounts -----------------------------------------------------------------------------------


class User(BaseModel):
    id: int
    name: str
    role: Role
    created_at: float


class TokenInfo(BaseModel):
    """A token as listed: never its secret."""

    id: int
    user: str
    name: str
    created_at: float
    expires_at: float | None = None
    revoked_at: float | None = None
    last_used_at: float | None = None


class NewToken(TokenInfo):
    """A token just made: the only time its secret is shown."""

    token: str


class NewUser(BaseModel):
    name: str
    role: Role = "member"
    #: also make a first token for the user, named so (its secret is in the answer, once)
    token_name: str | None = None


class CreatedUser(BaseModel):
    user: User
    token: NewToken | None = None


class TokenRequest(BaseModel):
    name: str
    #: whose token (an admin may make one for anyone; default: the caller's own)
    user: str | None = None
    #: when it stops working (epoch seconds); null: never
    expires_at: float | None = None
