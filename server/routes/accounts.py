"""Users (admin only) and API tokens (an admin: anyone's; a member: its own)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from iacrun.orchestrator.errors import ForbiddenError
from iacrun.server.auth import Admin, User
from iacrun.server.errors import RESPONSES
from iacrun.server.schema import CreatedUser, NewToken, NewUser, TokenInfo, TokenRequest
from iacrun.server.schema import User as UserRecord
from iacrun.server.state import state_of

router = APIRouter(tags=["accounts"], responses=RESPONSES)


@router.get("/users")
def users(request: Request, principal: Admin) -> list[UserRecord]:
    return state_of(request).accounts.users()


@router.post("/users", status_code=201)
def create_user(body: NewUser, request: Request, principal: Admin) -> CreatedUser:
    accounts = state_of(request).accounts
    user = accounts.create_user(body.name, body.role)
    token = None if body.token_name is None else accounts.create_token(user.name, body.token_name)
    return CreatedUser(user=user, token=token)


@router.get("/tokens")
def tokens(request: Request, principal: User) -> list[TokenInfo]:
    """An admin sees every token, a member its own (never a secret: only when made)."""
    return state_of(request).accounts.tokens(None if principal.is_admin else principal.user)


@router.post("/tokens", status_code=201)
def create_token(body: TokenRequest, request: Request, principal: User) -> NewToken:
    """A new token; its secret is in this answer and nowhere else, ever."""
    owner = body.user or principal.user
    if owner != principal.user and not principal.is_admin:
        raise ForbiddenError("only an admin may make a token for another user")
    return state_of(request).accounts.create_token(owner, body.name, expires_at=body.expires_at)


@router.delete("/tokens/{token_id}")
def revoke_token(token_id: int, request: Request, principal: User) -> TokenInfo:
    return state_of(request).accounts.revoke(token_id, principal)
