"""Signing in and out of the dashboard, and who a page is for.

Sign-in takes an API token (the same the CLI uses) and keeps it in an HttpOnly, SameSite=Strict
cookie (Secure when the page was served over https), so the page's scripts never see it. A page
asked without a valid session redirects to the sign-in page; the dashboard's JSON endpoints
answer 401 like the API. Forms that change something carry the session's CSRF token, checked by
`iacrun.server.auth.authenticate` (the API's own check)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Form, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from iacrun.orchestrator.errors import AuthError, IacrunError
from iacrun.server import errors
from iacrun.server.accounts import Principal
from iacrun.server.auth import SESSION_COOKIE, admin_only, authenticate, csrf_token
from iacrun.server.dashboard.render import SECURITY_HEADERS, page
from iacrun.server.state import state_of

router = APIRouter(include_in_schema=False)

#: how long the browser keeps the cookie; the token's own expiry or revocation ends it sooner
COOKIE_MAX_AGE = 7 * 86400


class SignInRequired(Exception):
    """A page was asked without a valid session: the answer is the sign-in page."""

    def __init__(self, next_path: str) -> None:
        self.next_path = next_path


def _local_path(value: str | None) -> str:
    """Where to go after signing in: a path of this site only (never `//other` or a URL)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


def _next_of(request: Request) -> str:
    query = f"?{request.url.query}" if request.url.query else ""
    return _local_path(request.url.path + query)


async def page_user(request: Request) -> Principal:
    """The signed-in user of a page (GET); others are sent to sign in."""
    try:
        return await run_in_threadpool(authenticate, request, None)
    except AuthError:
        raise SignInRequired(_next_of(request)) from None


async def page_admin(principal: Annotated[Principal, Depends(page_user)]) -> Principal:
    return admin_only(principal)


async def form_user(request: Request, csrf: Annotated[str, Form()] = "") -> Principal:
    """The user of a form's POST: a valid session and the form's CSRF token (403 without)."""
    try:
        return await run_in_threadpool(authenticate, request, None, csrf)
    except AuthError:
        raise SignInRequired("/") from None


async def form_admin(principal: Annotated[Principal, Depends(form_user)]) -> Principal:
    return admin_only(principal)


async def json_user(request: Request) -> Principal:
    """The user of a dashboard JSON endpoint: 401 (as the API answers) without a session."""
    return await run_in_threadpool(authenticate, request, None)


PageUser = Annotated[Principal, Depends(page_user)]
PageAdmin = Annotated[Principal, Depends(page_admin)]
FormUser = Annotated[Principal, Depends(form_user)]
FormAdmin = Annotated[Principal, Depends(form_admin)]
JsonUser = Annotated[Principal, Depends(json_user)]


def session_csrf(request: Request) -> str:
    """The CSRF token of the request's session, for the forms of a fragment; empty without one."""
    secret = request.cookies.get(SESSION_COOKIE)
    return csrf_token(secret) if secret else ""


def ask(
    request: Request, principal: Principal, question: str, button: str, cancel: str
) -> Response:
    """A form that stops or destroys something, posted without the user's yes (see questions.py):
    the question as a page, whose button posts the form again, confirmed; Cancel goes back."""
    return page(
        request,
        "confirm.html",
        principal,
        question=question,
        button=button,
        action=quote(request.url.path),
        next_path=_local_path(cancel),
    )


def back(to: str) -> RedirectResponse:
    """After a form: see the page again (303, so a reload does not post twice)."""
    return RedirectResponse(_local_path(to), status_code=303, headers=SECURITY_HEADERS)


@router.get("/signin")
def signin_page(request: Request, next: str = "/") -> Response:
    return page(request, "signin.html", None, next=_local_path(next), error=None)


@router.post("/signin")
def signin(
    request: Request, token: Annotated[str, Form()] = "", next: Annotated[str, Form()] = "/"
) -> Response:
    target = _local_path(next)
    token = token.strip()
    principal = state_of(request).accounts.authenticate(token) if token else None
    if principal is None:
        error = "That token is not valid: it is wrong, revoked or expired."
        return page(request, "signin.html", None, 401, next=target, error=error)
    response = back(target)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=COOKIE_MAX_AGE,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.post("/signout")
def signout(request: Request, principal: FormUser) -> Response:
    response = back(f"/signin?next={quote('/')}")
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


async def _sign_in_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SignInRequired)
    return RedirectResponse(
        f"/signin?next={quote(exc.next_path, safe='/')}", status_code=303, headers=SECURITY_HEADERS
    )


async def _error(request: Request, exc: Exception) -> Response:
    """An error of iacrun's tree: the API's JSON body for the API and the JSON endpoints, a page
    saying it in one line for a page."""
    assert isinstance(exc, IacrunError)
    status = errors.status_of(exc)
    path = request.url.path
    if path.startswith("/api/") or path.endswith(".json"):
        return errors.error_response(status, type(exc).__name__, str(exc), exc.exit_code)
    try:
        principal: Principal | None = await run_in_threadpool(authenticate, request, None)
    except IacrunError:
        principal = None
    return page(request, "error.html", principal, status, message=str(exc), status=status)


def install(app: FastAPI) -> None:
    app.add_exception_handler(SignInRequired, _sign_in_required)
    app.add_exception_handler(IacrunError, _error)
