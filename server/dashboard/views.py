"""Offers, stacks, cost, tokens and users: pages over the same Orchestrator and accounts the
API's routes use, with the same role checks."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from pydantic import ValidationError

from iacrun.orchestrator.errors import IacrunError, InputError
from iacrun.orchestrator.models.runspec import Overrides, requirements_for
from iacrun.orchestrator.models.validation import problem
from iacrun.server.dashboard import questions
from iacrun.server.dashboard.costs import spend
from iacrun.server.dashboard.render import page
from iacrun.server.dashboard.session import FormAdmin, FormUser, PageAdmin, PageUser, ask, back
from iacrun.server.schema import NewToken
from iacrun.server.state import state_of

router = APIRouter(include_in_schema=False)

#: the most offers one page lists (cheapest first)
MAX_OFFERS = 100
SPOT_CHOICES = ("", "spot", "on-demand", "auto")


def _listed(text: str) -> list[str] | None:
    items = [part.strip() for part in text.split(",") if part.strip()]
    return items or None


@router.get("/offers")
def offers_page(
    request: Request,
    principal: PageUser,
    gpu: str = "",
    memory: str = "",
    spot: str = "",
    max_price: str = "",
    backend: str = "",
    region: str = "",
) -> Response:
    """`iacrun offers` as a page: the same filters, cheapest first, the catalog's date."""
    form = {
        "gpu": gpu,
        "memory": memory,
        "spot": spot,
        "max_price": max_price,
        "backend": backend,
        "region": region,
    }
    context: dict[str, Any] = {"form": form, "offers": [], "notes": [], "error": None}
    try:
        if spot not in SPOT_CHOICES:
            raise InputError(f"spot: {spot!r} is not one of spot, on-demand, auto")
        try:
            overrides = Overrides.model_validate(
                {
                    "gpu": gpu or None,
                    "memory": memory or None,
                    "spot_policy": spot or None,
                    "max_price": max_price or None,
                    "backends": _listed(backend),
                    "regions": _listed(region),
                }
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise InputError(f"{where}: {problem(first)}") from None
        plan = state_of(request).orchestrator.offers(requirements_for(None, overrides))
        context.update(offers=plan.offers[:MAX_OFFERS], total=len(plan.offers), notes=plan.notes)
    except IacrunError as exc:
        context["error"] = str(exc)
    return page(request, "offers.html", principal, **context)


@router.get("/stacks")
def stacks_page(request: Request, principal: PageUser) -> Response:
    rows = state_of(request).orchestrator.stacks()
    leaks = [row for row in rows if row.leak]
    hourly = sum(row.run.price or 0 for row in leaks if row.run is not None)
    return page(
        request, "stacks.html", principal, rows=rows, leaks=leaks, hourly=hourly, now=time.time()
    )


@router.post("/stacks/{stack}/destroy")
def destroy_stack(
    stack: str, request: Request, principal: FormAdmin, confirmed: questions.Confirmed = ""
) -> Response:
    """Destroy a stack no live run owns (admin only, as `DELETE /api/v1/stacks/{stack}`), asked
    first when unconfirmed."""
    if not questions.answered(confirmed):
        question = questions.destroy_stack(stack)
        return ask(request, principal, question, "Destroy the stack", "/stacks")
    state_of(request).orchestrator.destroy_stack(stack)
    return back("/stacks")


@router.get("/cost")
def cost_page(request: Request, principal: PageUser) -> Response:
    return page(request, "cost.html", principal, spend=spend(state_of(request).registry))


@router.get("/tokens")
def tokens_page(request: Request, principal: PageUser) -> Response:
    return _tokens(request, principal, None)


def _tokens(
    request: Request, principal: Any, made: NewToken | None, status_code: int = 200
) -> Response:
    accounts = state_of(request).accounts
    tokens = accounts.tokens(None if principal.is_admin else principal.user)
    users = [u.name for u in accounts.users()] if principal.is_admin else [principal.user]
    return page(
        request,
        "tokens.html",
        principal,
        status_code,
        tokens=tokens,
        users=users,
        made=made,
        now=time.time(),
    )


@router.post("/tokens")
def create_token(
    request: Request,
    principal: FormUser,
    name: Annotated[str, Form()] = "",
    user: Annotated[str, Form()] = "",
    days: Annotated[str, Form()] = "",
) -> Response:
    """A new token, shown on this answer only (an admin may make one for anyone)."""
    from iacrun.orchestrator.errors import ForbiddenError

    owner = user or principal.user
    if owner != principal.user and not principal.is_admin:
        raise ForbiddenError("only an admin may make a token for another user")
    if days and not days.isdigit():
        raise InputError(f"expires in {days!r} days: a whole number of days, or empty")
    expires = time.time() + int(days) * 86400 if days and int(days) > 0 else None
    made = state_of(request).accounts.create_token(owner, name, expires_at=expires)
    return _tokens(request, principal, made, 201)


@router.post("/tokens/{token_id}/revoke")
def revoke_token(
    token_id: int, request: Request, principal: FormUser, confirmed: questions.Confirmed = ""
) -> Response:
    accounts = state_of(request).accounts
    if not questions.answered(confirmed):
        token = accounts.revocable(token_id, principal)  # refused as the revoke would be
        question = questions.revoke_token(token.name, token.user)
        return ask(request, principal, question, "Revoke the token", "/tokens")
    accounts.revoke(token_id, principal)
    return back("/tokens")


@router.get("/users")
def users_page(request: Request, principal: PageAdmin) -> Response:
    return _users(request, principal, None)


def _users(request: Request, principal: Any, made: Any, status_code: int = 200) -> Response:
    users = state_of(request).accounts.users()
    return page(request, "users.html", principal, status_code, users=users, made=made)


@router.post("/users")
def create_user(
    request: Request,
    principal: FormAdmin,
    name: Annotated[str, Form()] = "",
    role: Annotated[str, Form()] = "member",
) -> Response:
    """A new user and its first token (shown once, on this answer)."""
    if role not in ("admin", "member"):
        raise InputError(f"role {role!r}: admin or member")
    accounts = state_of(request).accounts
    user = accounts.create_user(name.strip(), "admin" if role == "admin" else "member")
    token = accounts.create_token(user.name, "first token")
    return _users(request, principal, token, 201)
