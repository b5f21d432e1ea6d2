"""The ASGI app: `create_app(ServerState)`, every route under `/api/v1`, its OpenAPI schema at
`/api/v1/openapi.json` (checked in as server/openapi.json; a test holds them equal)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from iacrun.server import dashboard, errors
from iacrun.server.routes import accounts, info, offers, ports, runs, schedules, stacks, uploads
from iacrun.server.routes.info import iacrun_version
from iacrun.server.state import ServerState, attach_state

API_PREFIX = "/api/v1"
#: seconds between two sweeps of the uploads nothing uses (`ServerState.sweep_uploads`)
SWEEP_EVERY = 3600.0

log = logging.getLogger("iacrun.server")


async def sweep_uploads_every(state: ServerState, seconds: float) -> None:
    """Sweep the unused uploads now and every `seconds`, until cancelled (at shutdown)."""
    while True:
        try:
            removed = await run_in_threadpool(state.sweep_uploads)
            if removed:
                log.info("removed %d unused upload(s): %s", len(removed), ", ".join(removed))
        except Exception:  # the database may be restarting: the next sweep tries again
            log.warning("sweeping the uploads failed", exc_info=True)
        await asyncio.sleep(seconds)


def create_app(state: ServerState) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(state.start)
        state.scheduler.start()  # an asyncio task of this loop: starts scheduled runs
        sweeper = asyncio.create_task(sweep_uploads_every(state, SWEEP_EVERY))
        try:
            yield
        finally:
            sweeper.cancel()
            with suppress(asyncio.CancelledError):
                await sweeper
            await state.scheduler.stop_serving()
            await state.ports.close()  # every tunnel to a run's port, and their transports
            await run_in_threadpool(state.stop)

    app = FastAPI(
        title="iacrun",
        version=iacrun_version(),
        summary="Run GPU tasks on your machines and ephemeral cloud stacks, for a team.",
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    attach_state(app, state)
    errors.install(app)
    for module in (info, uploads, runs, ports, schedules, offers, stacks, accounts):
        app.include_router(module.router, prefix=API_PREFIX)
    dashboard.install(app)  # the web pages at `/` (server/dashboard/), outside the API's schema
    return app
