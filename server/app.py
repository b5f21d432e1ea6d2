"""The ASGI app: `create_app(ServerState)`, every route under `/api/v1`, its OpenAPI schema at
`/api/v1/openapi.json` (checked in as server/openapi.json; a test holds them equal)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from iacrun.server import dashboard, errors
from iacrun.server.routes import accounts, info, offers, runs, stacks, uploads
from iacrun.server.routes.info import iacrun_version
from iacrun.server.state import ServerState, attach_state

API_PREFIX = "/api/v1"


def create_app(state: ServerState) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(state.start)
        try:
            yield
        finally:
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
    for module in (info, uploads, runs, offers, stacks, accounts):
        app.include_router(module.router, prefix=API_PREFIX)
    dashboard.install(app)  # the web pages at `/` (server/dashboard/), outside the API's schema
    return app
