"""Who a request comes from: a bearer token in the `Authorization` header, or the dashboard's
session cookie (which holds the same token, HttpOnly), checked against the tokens' hashes
(server/accounts.py). FastAPI dependencies: `require_user` (any valid token), `require_admin`
(an admin's token). `authenticate` is the one place both the API and the dashboard's pages ask.

A request authenticated by the cookie that changes something (any method but GET/HEAD/OPTIONS)
must also carry the session's CSRF token (`csrf_token`): in the `X-CSRF-Token` header, or in a
dashboard form's field. The cookie is SameSite=Strict too; the token is the second lock, for
browsers or proxies that do not honour it.

What a member may do: everything on runs (submit, list, follow, stop, down: a team's runs are
the team's, as dstack lets a project's members manage the project's runs), plans, offers,
backends and stacks listed, and its own tokens. Only an admin manages users, other users'
tokens, and destroys stacks.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from iacrun.orchestrator.errors import AuthError, ForbiddenError
from iacrun.server.accounts import Principal
from iacrun.server.state import ServerState, state_of

__all__ = [
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "Admin",
    "Principal",
    "User",
    "admin_only",
    "authenticate",
    "bearer_of",
    "csrf_token",
    "require_admin",
    "require_user",
]

_bearer = HTTPBearer(auto_error=False, description="an iacrun API token: iacrun_…")

#: the dashboard's session cookie: the API token itself, HttpOnly, SameSite=Strict
SESSION_COOKIE = "iacrun_session"
#: where a cookie-authenticated request that changes something carries its CSRF token
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def csrf_token(secret: str) -> str:
    """The CSRF token of a session: derived from its API token, so only a page that the session
    itself loaded knows it (another site can neither read the cookie nor the page)."""
    return hashlib.sha256(b"iacrun-csrf\0" + secret.encode()).hexdigest()


def authenticate(
    request: HTTPConnection, bearer: str | None, csrf: str | None = None, *, cookie: bool = True
) -> Principal:
    """The request's user, from `bearer` (the Authorization header's token) or else the session
    cookie; AuthError (401) without a token or with a wrong, revoked or expired one;
    ForbiddenError (403) for a cookie's change without its CSRF token (`csrf`, else the
    `X-CSRF-Token` header). `cookie=False` takes the bearer token only: a WebSocket's handshake,
    which a browser sends with the cookie from any site and no CSRF token to check. Reads the
    database: call it off the event loop."""
    state: ServerState = state_of(request)
    secret = bearer
    via_cookie = False
    if secret is None and cookie:
        secret = request.cookies.get(SESSION_COOKIE)
        via_cookie = secret is not None
    if not secret:
        raise AuthError("no API token: send it as `Authorization: Bearer iacrun_…`")
    principal = state.accounts.authenticate(secret)
    if principal is None:
        raise AuthError("the API token is not valid: it is wrong, revoked or expired")
    if via_cookie and getattr(request, "method", "GET") not in SAFE_METHODS:
        given = csrf if csrf is not None else request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(given.encode(), csrf_token(secret).encode()):
            raise ForbiddenError("the form's CSRF token is missing or wrong: reload the page")
    return principal


def bearer_of(conn: HTTPConnection) -> str | None:
    """The token of an `Authorization: Bearer TOKEN` header (as `HTTPBearer` reads it, for a
    route that cannot take that dependency: a WebSocket's); AuthError for another scheme."""
    header = conn.headers.get("Authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("no API token: send it as `Authorization: Bearer iacrun_…`")
    return token.strip()


def require_user(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The request's user (see `authenticate`). Runs in the thread pool (it reads the
    database)."""
    bearer = None
    if credentials is not None:
        if credentials.scheme.lower() != "bearer":
            raise AuthError("no API token: send it as `Authorization: Bearer iacrun_…`")
        bearer = credentials.credentials
    return authenticate(request, bearer)


def admin_only(principal: Principal) -> Principal:
    """`principal` if an admin's, else ForbiddenError (403)."""
    if not principal.is_admin:
        raise ForbiddenError(f"{principal.user} is a member: only an admin may do this")
    return principal


def require_admin(principal: Annotated[Principal, Depends(require_user)]) -> Principal:
    return admin_only(principal)


User = Annotated[Principal, Depends(require_user)]
Admin = Annotated[Principal, Depends(require_admin)]
