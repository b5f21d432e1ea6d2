"""Who a request comes from: a bearer token in the `Authorization` header, checked against the
tokens' hashes (server/accounts.py). FastAPI dependencies: `require_user` (any valid token),
`require_admin` (an admin's token).

What a member may do: everything on runs (submit, list, follow, stop, down: a team's runs are
the team's, as dstack lets a project's members manage the project's runs), plans, offers,
backends and stacks listed, and its own tokens. Only an admin manages users, other users'
tokens, and destroys stacks.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from iacrun.orchestrator.errors import AuthError, ForbiddenError
from iacrun.server.accounts import Principal
from iacrun.server.state import ServerState, state_of

__all__ = ["Admin", "Principal", "User", "require_admin", "require_user"]

_bearer = HTTPBearer(auto_error=False, description="an iacrun API token: iacrun_…")


def require_user(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The request's user; AuthError (401) without a token, or with a wrong, revoked or
    expired one. Runs in the thread pool (it reads the database)."""
    state: ServerState = state_of(request)
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise AuthError("no API token: send it as `Authorization: Bearer iacrun_…`")
    principal = state.accounts.authenticate(credentials.credentials)
    if principal is None:
        raise AuthError("the API token is not valid: it is wrong, revoked or expired")
    return principal


def require_admin(principal: Annotated[Principal, Depends(require_user)]) -> Principal:
    if not principal.is_admin:
        raise ForbiddenError(f"{principal.user} is a member: only an admin may do this")
    return principal


User = Annotated[Principal, Depends(require_user)]
Admin = Annotated[Principal, Depends(require_admin)]
