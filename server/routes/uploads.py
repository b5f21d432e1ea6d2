"""`HEAD|PUT /uploads/{sha256}`: a run's files (host/payload.pack_upload), sent once by hash."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from iacrun.orchestrator.errors import NotFoundError
from iacrun.server.auth import User
from iacrun.server.errors import RESPONSES
from iacrun.server.state import state_of

router = APIRouter(tags=["uploads"], responses=RESPONSES)


@router.head("/uploads/{sha256}", status_code=204)
def has_upload(sha256: str, request: Request, principal: User) -> Response:
    """204 when the server has this upload (the client then skips sending it), else 404."""
    if not state_of(request).uploads.has(sha256):
        raise NotFoundError(f"no upload {sha256} on this server")
    return Response(status_code=204)


@router.put("/uploads/{sha256}", status_code=201)
async def put_upload(sha256: str, request: Request, principal: User) -> Response:
    """Store the archive in the body (`application/octet-stream`) if its SHA-256 is `sha256`:
    201 when stored, 200 when the server had it already."""
    uploads = state_of(request).uploads
    uploads.archive(sha256)  # a bad hash is refused before the body is read
    stored = await uploads.store(sha256, request.stream())
    return Response(status_code=201 if stored else 200)
