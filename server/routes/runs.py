"""Runs: plan, submit, list, one run and its history, its log (by offset, or as Server-Sent
Events), stop, down. Every verb is the Orchestrator's own, as the CLI calls it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse

from iacrun.orchestrator.errors import InputError
from iacrun.orchestrator.host.cluster import NodeRecord
from iacrun.orchestrator.host.payload import spec_on_server
from iacrun.orchestrator.models.runspec import RunSpec
from iacrun.orchestrator.registry import RunEvent, RunRecord, RunStatus
from iacrun.orchestrator.registry.schedules import ScheduleRecord
from iacrun.server.auth import User
from iacrun.server.errors import RESPONSES
from iacrun.server.logstream import log_events
from iacrun.server.schema import (
    DownResponse,
    PlanRequest,
    PlanResponse,
    RunPage,
    StopRequest,
    SubmitRequest,
)
from iacrun.server.state import ServerState, state_of
from iacrun.server.visibility import as_seen_by

router = APIRouter(tags=["runs"], responses=RESPONSES)

#: the most runs one page of the list holds
MAX_PAGE = 500


def server_spec(state: ServerState, spec: RunSpec, upload: str | None) -> RunSpec:
    """The client's spec, pointed at the server's copy of its upload: no path of the client's
    (nor any other path on the server) is ever read."""
    if upload is None:
        raise InputError("the run's files are needed: PUT /api/v1/uploads/{sha256}, then name it")
    return spec_on_server(spec, state.uploads.unpacked(upload))


@router.post("/plan")
def plan(body: PlanRequest, request: Request, principal: User) -> PlanResponse:
    """The offers for a spec, cheapest first (NoOfferError, 503, when none is available)."""
    state = state_of(request)
    orch = state.orchestrator
    spec = body.spec if body.upload is None else server_spec(state, body.spec, body.upload)
    if body.dry_run:
        offers, created = orch.dry_run(spec)
        return PlanResponse(offers=offers.offers, notes=offers.notes, dry_run=created)
    found = orch.plan(spec)
    return PlanResponse(offers=found.offers, notes=found.notes)


@router.post("/runs", status_code=201)
def submit(body: SubmitRequest, request: Request, principal: User) -> RunRecord | ScheduleRecord:
    """Plan and submit: the run is recorded (as submitted by the token's user) and handed to the
    server's supervision pool (a thread of this process). 409 when a run of that name is active.
    A spec with a `schedule` is kept as a schedule instead (the answer is the schedule, with
    its next time): see /schedules."""
    state = state_of(request)
    orch = state.orchestrator
    spec = server_spec(state, body.spec, body.upload)
    if spec.schedule is not None:
        return state.scheduler.create(spec, upload=body.upload, submitted_by=principal.user)
    if spec.run_name is not None:
        orch.ensure_name_free(spec.run_name)
    orch.check_upload(spec)
    found = orch.plan(spec)
    return state.start_run(spec, found, submitted_by=principal.user)


@router.get("/runs", response_model=RunPage)
def list_runs(
    request: Request,
    principal: User,
    status: RunStatus | None = None,
    user: str | None = None,
    active: bool | None = None,
    recent: bool = False,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    before: int | None = None,
) -> Response:
    """Runs, newest first, filtered by status, submitting user, active or final (`recent`:
    what `iacrun ps` shows, active runs and those that ended in the last hour); paged: the
    next page is `?before=<next>`."""
    registry = state_of(request).registry
    runs = registry.page(
        status=None if status is None else status.value,
        user=user,
        active=active,
        recent=recent,
        limit=limit + 1,
        before=before,
    )
    more = len(runs) > limit
    runs = runs[:limit]
    page = RunPage(
        runs=[as_seen_by(principal, run) for run in runs], next=runs[-1].id if more else None
    )
    # serialized here: the records were validated as they were read (FastAPI would again)
    return Response(page.model_dump_json(), media_type="application/json")


@router.get("/runs/{name}")
def get_run(name: str, request: Request, principal: User) -> RunRecord:
    return as_seen_by(principal, state_of(request).orchestrator.get(name))


@router.get("/runs/{name}/history")
def run_history(name: str, request: Request, principal: User) -> list[RunEvent]:
    orch = state_of(request).orchestrator
    return orch.registry.history(orch.registry.get(name).id)


@router.get("/runs/{name}/nodes")
def run_nodes(name: str, request: Request, principal: User) -> list[NodeRecord]:
    """Every node's job of the run, in rank order (the master alone for a one-node run; none
    before its machine is there): its host, and its status, exit code and reason, as `iacrun
    ps --json` shows them. A node still running shows the run's status."""
    orch = state_of(request).orchestrator
    return orch.nodes(orch.get(name))


#: which node's log: a multi-node run's rank (400 for a rank the run does not have)
Node = Annotated[int, Query(description="the node's rank; 0, the master, by default")]


@router.get(
    "/runs/{name}/logs",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def run_logs(
    name: str,
    request: Request,
    principal: User,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int | None, Query(ge=1)] = None,
    tail: Annotated[int | None, Query(ge=1)] = None,
    node: Node = 0,
) -> Response:
    """The log's bytes from `offset` (at most `limit`), or its last `tail` bytes (the offset is
    then where they start: a long log is read from its end): the master's, or node `node`'s of
    a multi-node run. `X-Log-Start` is the offset of the first byte sent, `X-Log-Offset` the
    offset after the last, `X-Run-Status` the run's status. The tail may start mid-line: a
    reader shows it from the next line start."""
    orch = state_of(request).orchestrator
    orch.check_node(name, node)
    if tail is not None:
        size = orch.log_size(name, node=node)
        offset, limit = max(0, size - tail), min(size, tail)
        if limit == 0:
            limit = None  # an empty log so far: whatever is there now
    parts: list[bytes] = []
    _, run = orch.logs(name, parts.append, offset=offset, limit=limit, node=node)
    data = b"".join(parts)
    if limit is not None:
        data = data[:limit]
    headers = {
        "X-Log-Start": str(offset),
        "X-Log-Offset": str(offset + len(data)),
        "X-Run-Status": run.status.value,
    }
    return Response(data, media_type="application/octet-stream", headers=headers)


@router.get(
    "/runs/{name}/logs/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
def stream_logs(
    name: str,
    request: Request,
    principal: User,
    offset: Annotated[int, Query(ge=0)] = 0,
    last_event_id: Annotated[str | None, Header()] = None,
    node: Node = 0,
) -> StreamingResponse:
    """The log (the master's, or node `node`'s) as Server-Sent Events from `offset`, or from
    `Last-Event-ID` when a client reconnects (see server/logstream.py for the events)."""
    orch = state_of(request).orchestrator
    orch.check_node(name, node)  # 404, or 400 for a node it lacks, before the stream starts
    if last_event_id is not None:
        if not last_event_id.isdigit():
            raise InputError(f"Last-Event-ID {last_event_id!r}: a byte offset is a number")
        offset = int(last_event_id)
    return StreamingResponse(
        log_events(orch, name, offset, node=node),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.post("/runs/{name}/stop")
def stop_run(
    name: str, request: Request, principal: User, body: StopRequest | None = None
) -> RunRecord:
    """Stop the run and tear it down (any user of the server may: runs are the team's); the
    run's reason says who, and why when the body gives it (`stopped by USER: REASON`,
    `aborted by USER: REASON`). An abort, or `wait: false`, answers once it is recorded."""
    orch = state_of(request).orchestrator
    body = body or StopRequest()
    why = " ".join((body.reason or "").split())  # one line
    verb = "aborted" if body.abort else "stopped"
    reason = f"{verb} by {principal.user}" + (f": {why}" if why else "")
    if body.abort or not body.wait:
        return as_seen_by(principal, orch.request_stop(name, reason=reason, abort=body.abort))
    return as_seen_by(principal, orch.stop(name, reason=reason))


@router.post("/runs/{name}/down")
def down_run(name: str, request: Request, principal: User) -> DownResponse:
    """Stop the run and destroy what it created; safe to repeat."""
    orch = state_of(request).orchestrator
    return DownResponse(message=orch.down(name, reason=f"stopped by {principal.user}"))
