"""The runs list and a run's page.

The list is paged on the server (`PAGE` runs, newest first, `before=<id>` for the next page) so
its first screen costs the same with ten or ten thousand runs recorded; its script polls
`runs.json` (the same filters) and swaps the table's rows, rendered by the same template. A
run's page follows the log through the API's SSE stream (static/log.js)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Any

import yaml
from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from iacrun.orchestrator.errors import IacrunError
from iacrun.orchestrator.offers.model import is_cloud
from iacrun.orchestrator.registry import RunRecord, RunStatus
from iacrun.server.accounts import Principal
from iacrun.server.dashboard import questions
from iacrun.server.dashboard.consoles import console_link
from iacrun.server.dashboard.render import SECURITY_HEADERS, fragment, page
from iacrun.server.dashboard.session import (
    FormUser,
    JsonUser,
    PageUser,
    ask,
    back,
    session_csrf,
)
from iacrun.server.state import ServerState, state_of
from iacrun.server.visibility import masked_spec, masked_text

router = APIRouter(include_in_schema=False)

#: runs on one page of the list
PAGE = 50
#: the most bytes of a task file shown on a run's page
TASK_FILE_LIMIT = 256 * 1024


Show = Annotated[str, Query(pattern="^(all|active)$")]


@dataclass
class RunsQuery:
    """The runs list's filters and place in the list, as the page and its `runs.json` both take
    them from the query string."""

    show: Show = "all"
    mine: bool = False
    status: str = ""
    backend: str = ""
    before: int | None = None

    def page(self, state: ServerState, principal: Principal) -> tuple[list[RunRecord], int | None]:
        """One page of the list, newest first, and the id the next page starts before (None at
        the end). An unknown status filters nothing."""
        runs = state.registry.page(
            active=True if self.show == "active" else None,
            user=principal.user if self.mine else None,
            status=self.status if self.status in RunStatus.__members__.values() else None,
            backend=self.backend or None,
            limit=PAGE + 1,
            before=self.before,
        )
        more = len(runs) > PAGE
        runs = runs[:PAGE]
        return runs, runs[-1].id if more else None


Listing = Annotated[RunsQuery, Depends()]


@router.get("/")
def home() -> Response:
    return RedirectResponse("/runs", status_code=303, headers=SECURITY_HEADERS)


@router.get("/runs")
def runs_page(request: Request, principal: PageUser, query: Listing) -> Response:
    state = state_of(request)
    runs, next_id = query.page(state, principal)
    return page(
        request,
        "runs.html",
        principal,
        runs=runs,
        next_id=next_id,
        now=time.time(),
        show=query.show,
        mine=query.mine,
        status=query.status,
        backend=query.backend,
        before=query.before,
        statuses=[s.value for s in RunStatus],
        backends=[b.name for b in state.orchestrator.backends()],
    )


@router.get("/runs.json")
def runs_json(request: Request, principal: JsonUser, query: Listing) -> Response:
    """The list's rows (the table's HTML, from the page's own template) for live updates."""
    runs, next_id = query.page(state_of(request), principal)
    html = fragment(
        "run_rows.html",
        runs=runs,
        now=time.time(),
        csrf=session_csrf(request),
        next_path=_next(request),
    )
    return JSONResponse({"html": html, "count": len(runs), "next": next_id})


def _next(request: Request) -> str:
    """The list's own address (without `.json`), where a stop form comes back to."""
    query = f"?{request.url.query}" if request.url.query else ""
    return "/runs" + query


def run_status(run: RunRecord) -> dict[str, Any]:
    return {
        "status": run.status.value,
        "reason": run.reason,
        "exit_code": run.exit_code,
        "cost": run.cost,
        "duration": run.duration,
        "active": run.active,
    }


@router.get("/runs/{name}/status.json")
def run_status_json(name: str, request: Request, principal: JsonUser) -> Response:
    run = state_of(request).registry.get(name)
    return JSONResponse(run_status(run))


def spec_yaml(run: RunRecord) -> str:
    """The run's spec as submitted, as YAML; env values are never shown on a page, not even to
    their owner (a page is shown on screens and shared; the API gives them to their owner and
    admins: `visibility`)."""
    data = masked_spec(run.spec).model_dump(mode="json", exclude_none=True)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def task_file(state: ServerState, run: RunRecord) -> str | None:
    """The task file as uploaded, when it is in the server's uploads (never another path), with
    the values of its env masked (`visibility.masked_text`)."""
    from pathlib import Path

    uploads = (state.config.home / "uploads").resolve()
    try:
        path = Path(run.spec.config_path).resolve()
        if not path.is_relative_to(uploads) or not path.is_file():
            return None
        with path.open("rb") as file:
            text = file.read(TASK_FILE_LIMIT).decode(errors="replace")
    except OSError:
        return None
    return masked_text(text, run.spec)


def stack_resources(state: ServerState, run: RunRecord) -> tuple[list[dict[str, str]], str | None]:
    """A cloud run's stack: each resource with a link to the provider's console, or why not."""
    if run.backend is None or not is_cloud(run.backend) or run.stack_name is None:
        return [], None
    try:
        detail = state.orchestrator.stack_state(run.name)
    except IacrunError as exc:
        return [], str(exc)
    rows = []
    for res in detail.state.resources:
        if res.type.startswith("pulumi:"):
            continue
        rows.append(
            {
                "type": res.type,
                "name": res.name,
                "id": res.id or "",
                "link": console_link(run.backend, run.region, res.type, res.id) or "",
            }
        )
    return rows, None


@router.get("/runs/{name}")
def run_page(name: str, request: Request, principal: PageUser) -> Response:
    state = state_of(request)
    run = state.registry.get(name)
    history = state.registry.history(run.id)
    resources, stack_problem = stack_resources(state, run)
    return page(
        request,
        "run.html",
        principal,
        run=run,
        history=history,
        attempts=[e for e in history if e.status == RunStatus.RUNNING],
        spec_text=spec_yaml(run),
        task_text=task_file(state, run),
        resources=resources,
        stack_problem=stack_problem,
        nodes=state.orchestrator.nodes(run) if run.spec.nodes > 1 else [],
        now=time.time(),
    )


@router.post("/runs/{name}/stop")
def stop(
    name: str,
    request: Request,
    principal: FormUser,
    next: Annotated[str, Form()] = "/runs",
    confirmed: questions.Confirmed = "",
) -> Response:
    """Stop the run gracefully, as `iacrun stop` does (the API's `wait: false`: recorded at
    once, the run's supervisor gives the job its stop_duration, then tears it down); back to the
    page the form was on. Unconfirmed, the question first (a run that is not there is said so
    instead)."""
    orchestrator = state_of(request).orchestrator
    if not questions.answered(confirmed):
        run = orchestrator.get(name)
        return ask(request, principal, questions.stop_run(run.name), "Stop the run", next)
    orchestrator.request_stop(name, reason=f"stopped by {principal.user}")
    return back(next)
