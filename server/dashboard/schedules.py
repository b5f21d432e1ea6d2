"""The schedules page: the server's scheduled tasks (name, cron in UTC, next time, latest run,
who), live like the runs list (its script polls `schedules.json` for the rows, rendered by the
same template), each with a Stop-schedule form that does what `POST /api/v1/schedules/{name}/stop`
does (the same user check, plus the session's CSRF token)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import JSONResponse, Response

from iacrun.orchestrator.registry.schedules import ScheduleRecord
from iacrun.server.dashboard import questions
from iacrun.server.dashboard.render import fragment, page
from iacrun.server.dashboard.session import (
    FormUser,
    JsonUser,
    PageUser,
    ask,
    back,
    session_csrf,
)
from iacrun.server.state import state_of

router = APIRouter(include_in_schema=False)


def _listing(request: Request, stopped: bool) -> list[ScheduleRecord]:
    return state_of(request).scheduler.schedules.listing(include_stopped=stopped)


def _next_path(stopped: bool) -> str:
    return "/schedules?stopped=true" if stopped else "/schedules"


@router.get("/schedules")
def schedules_page(request: Request, principal: PageUser, stopped: bool = False) -> Response:
    return page(
        request,
        "schedules.html",
        principal,
        schedules=_listing(request, stopped),
        stopped=stopped,
        next_path=_next_path(stopped),
        now=state_of(request).scheduler.clock.now(),
    )


@router.get("/schedules.json")
def schedules_json(request: Request, principal: JsonUser, stopped: bool = False) -> Response:
    """The table's rows (the page's own template) for live updates."""
    schedules = _listing(request, stopped)
    html = fragment(
        "schedule_rows.html",
        schedules=schedules,
        csrf=session_csrf(request),
        next_path=_next_path(stopped),
        now=state_of(request).scheduler.clock.now(),
    )
    return JSONResponse({"html": html, "count": len(schedules)})


@router.post("/schedules/{name}/stop")
def stop_schedule(
    name: str,
    request: Request,
    principal: FormUser,
    next: Annotated[str, Form()] = "/schedules",
    confirmed: questions.Confirmed = "",
) -> Response:
    """End the schedule and stop its active run, as `iacrun stop NAME` and the API do (asked
    first when unconfirmed)."""
    scheduler = state_of(request).scheduler
    if not questions.answered(confirmed):
        schedule = scheduler.schedules.get(name)
        question = questions.stop_schedule(schedule.name)
        return ask(request, principal, question, "Stop the schedule", next)
    scheduler.stop(name, by=principal.user)
    return back(next)
