"""`GET /server/info`: what this server is (no token needed: a client checks it first)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from fastapi import APIRouter, Request

from iacrun.server.schema import ServerInfo
from iacrun.server.state import state_of

router = APIRouter(tags=["server"])


def iacrun_version() -> str:
    try:
        return version("iacrun")
    except PackageNotFoundError:  # pragma: no cover - run from a source tree
        return "0+unknown"


@router.get("/server/info")
def server_info(request: Request) -> ServerInfo:
    kind = state_of(request).registry.db.dialect
    return ServerInfo(version=iacrun_version(), database=kind)
