"""`WS /runs/{name}/ports/{port}`: one TCP connection to a port of a run's job, relayed over a
WebSocket (server/tunnels.py). The CLI's remote mode opens one per connection it accepts on
127.0.0.1, as `iacrun attach --port` does over SSH in-process.

Refusals come before the WebSocket is accepted, as an HTTP answer with the API's error body
(the WebSocket Denial Response): 401 without a valid bearer token (the session cookie is not
taken here), 400 for a port the run does not list, 404 for no such run, 409 for a run that does
not run (yet, or any more), 502 when nothing listens on the port, 503 when its host cannot be
reached. Any signed-in user may reach any run's port: a team's runs are the team's. A WebSocket
route has no place in the OpenAPI schema; README.md describes it.

Frames: binary messages carry the bytes; an empty one says its sender finished sending (a TCP
half-close); a close ends the connection both ways."""

from __future__ import annotations

from fastapi import APIRouter, WebSocket
from starlette.concurrency import run_in_threadpool

from iacrun.orchestrator.errors import IacrunError
from iacrun.server.auth import authenticate, bearer_of
from iacrun.server.errors import error_response, status_of
from iacrun.server.state import state_of
from iacrun.server.tunnels import WebSocketChannel

router = APIRouter(tags=["runs"])


@router.websocket("/runs/{name}/ports/{port}")
async def port_tunnel(websocket: WebSocket, name: str, port: int) -> None:
    state = state_of(websocket)
    try:
        bearer = bearer_of(websocket)
        await run_in_threadpool(authenticate, websocket, bearer, cookie=False)
        run, host = await run_in_threadpool(state.orchestrator.port_host, name, port)
        upstream = await state.ports.connect(run, host, port)
    except IacrunError as exc:
        answer = error_response(status_of(exc), type(exc).__name__, str(exc), exc.exit_code)
        await websocket.send_denial_response(answer)
        return
    try:
        await websocket.accept()
    except BaseException:
        await upstream.close()
        raise
    await state.ports.relay(upstream, WebSocketChannel(websocket))
