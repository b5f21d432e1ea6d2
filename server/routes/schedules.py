"""Schedules: a task with `schedule:` submitted to the server (here, or `POST /runs`, which
keeps such a spec as a schedule too) is started by the server at each of its times
(server/scheduler.py); listed with their next time, stopped by name."""

from __future__ import annotations

from fastapi import APIRouter, Request

from iacrun.orchestrator.errors import InputError
from iacrun.orchestrator.registry.schedules import ScheduleRecord
from iacrun.server.auth import User
from iacrun.server.errors import RESPONSES
from iacrun.server.routes.runs import server_spec
from iacrun.server.schema import ScheduleList, ScheduleRequest, ScheduleStopRequest
from iacrun.server.state import state_of
from iacrun.server.visibility import as_seen_by

router = APIRouter(tags=["schedules"], responses=RESPONSES)


@router.post("/schedules", status_code=201)
def submit_schedule(body: ScheduleRequest, request: Request, principal: User) -> ScheduleRecord:
    """Keep a scheduled task (checked now: its upload, its offers); its first run starts at its
    next time. 409 when an active schedule has the name."""
    if body.spec.schedule is None:
        raise InputError("the task has no schedule: submit it as a run (POST /api/v1/runs)")
    state = state_of(request)
    spec = server_spec(state, body.spec, body.upload)
    return state.scheduler.create(spec, upload=body.upload, submitted_by=principal.user)


@router.get("/schedules")
def list_schedules(request: Request, principal: User, all: bool = False) -> ScheduleList:
    """The active schedules with their next time (`next_at`) and latest run, newest first;
    `?all=true` adds the stopped ones."""
    schedules = state_of(request).scheduler.schedules
    listing = schedules.listing(include_stopped=all)
    return ScheduleList(schedules=[as_seen_by(principal, s) for s in listing])


@router.get("/schedules/{name}")
def get_schedule(name: str, request: Request, principal: User) -> ScheduleRecord:
    return as_seen_by(principal, state_of(request).scheduler.schedules.get(name))


@router.post("/schedules/{name}/stop")
def stop_schedule(
    name: str, request: Request, principal: User, body: ScheduleStopRequest | None = None
) -> ScheduleRecord:
    """End the schedule (no run starts from it any more) and stop its active run, as
    `iacrun stop NAME` does (`abort`: killed at once, as `iacrun stop -x NAME`); safe to
    repeat."""
    abort = body is not None and body.abort
    stopped = state_of(request).scheduler.stop(name, by=principal.user, abort=abort)
    return as_seen_by(principal, stopped)
