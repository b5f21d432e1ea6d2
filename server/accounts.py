"""The server's users and their API tokens, on the registry's database.

A token is `iacrun_` + 43 random URL-safe characters, shown once when made; only its SHA-256
(hex) is stored, so the database never holds a usable secret. Tokens are named, can expire, and
are revoked (never deleted: the record of who had access stays). Roles: `admin` (everything)
and `member` (runs, plans, offers; its own tokens).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time

from pydantic import BaseModel

from iacrun.orchestrator.errors import ForbiddenError, InputError, NotFoundError
from iacrun.orchestrator.registry.database import Database, UniqueViolation
from iacrun.server.schema import NewToken, Role, TokenInfo, User

TOKEN_PREFIX = "iacrun_"
#: the first admin, made at the first start
ADMIN_USER = "admin"
#: how stale a token's `last_used_at` may be before a request writes it again, in seconds
LAST_USED_EVERY = 60.0
#: a user's name: what `ps` shows in its USER column and runs record as `submitted_by`
USER_NAME_RE = re.compile(r"[a-z0-9][a-z0-9._@-]{0,62}")


#: the advisory lock the first admin is made under (any number; not the migrations' own)
BOOTSTRAP_LOCK_KEY = 0x1AC2_0002


class Principal(BaseModel):
    """Who a request comes from, once its token is checked."""

    user: str
    role: Role

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


_TOKEN_SELECT = (
    "SELECT tokens.id, users.name AS user, tokens.name, tokens.created_at, tokens.expires_at, "
    "tokens.revoked_at, tokens.last_used_at FROM tokens JOIN users ON users.id = tokens.user_id"
)


class Accounts:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- users ----------------------------------------------------------------------------------

    def users(self) -> list[User]:
        return [User.model_validate(r) for r in self.db.rows("SELECT * FROM users ORDER BY id")]

    def user(self, name: str) -> User:
        row = self.db.row("SELECT * FROM users WHERE name = ?", (name,))
        if row is None:
            raise NotFoundError(f"no user named {name!r}")
        return User.model_validate(row)

    def create_user(self, name: str, role: Role) -> User:
        if not USER_NAME_RE.fullmatch(name):
            raise InputError(
                f"user name {name!r}: use 1 to 63 of a-z, 0-9, '.', '_', '@' and '-', "
                "starting with a letter or digit"
            )
        try:
            row = self.db.row(
                "INSERT INTO users (name, role, created_at) VALUES (?, ?, ?) RETURNING *",
                (name, role, time.time()),
            )
        except UniqueViolation:
            raise InputError(f"a user named {name!r} exists already") from None
        assert row is not None
        return User.model_validate(row)

    # -- tokens ---------------------------------------------------------------------------------

    def create_token(
        self,
        user: str,
        name: str,
        *,
        expires_at: float | None = None,
        secret: str | None = None,
    ) -> NewToken:
        """A new token for `user`; `secret` is the token itself when given (the first admin's,
        from IACRUN_SERVER_ADMIN_TOKEN), else a random one."""
        if not name.strip():
            raise InputError("a token needs a name (what or who uses it: ci, laptop)")
        if expires_at is not None and expires_at <= time.time():
            raise InputError("the token's expiry is in the past")
        owner = self.user(user)
        secret = secret or new_secret()
        try:
            row = self.db.row(
                "INSERT INTO tokens (user_id, name, hash, created_at, expires_at) "
                "VALUES (?, ?, ?, ?, ?) RETURNING id",
                (owner.id, name, token_hash(secret), time.time(), expires_at),
            )
        except UniqueViolation:
            raise InputError("that token is in use already; choose another secret") from None
        assert row is not None
        return NewToken(**self.token(int(row["id"])).model_dump(), token=secret)

    def tokens(self, user: str | None = None) -> list[TokenInfo]:
        if user is None:
            rows = self.db.rows(f"{_TOKEN_SELECT} ORDER BY tokens.id")
        else:
            rows = self.db.rows(f"{_TOKEN_SELECT} WHERE users.name = ? ORDER BY tokens.id", (user,))
        return [TokenInfo.model_validate(r) for r in rows]

    def token(self, token_id: int) -> TokenInfo:
        row = self.db.row(f"{_TOKEN_SELECT} WHERE tokens.id = ?", (token_id,))
        if row is None:
            raise NotFoundError(f"no token with id {token_id}")
        return TokenInfo.model_validate(row)

    def revocable(self, token_id: int, by: Principal) -> TokenInfo:
        """The token, if `by` may revoke it: an admin any, a member only its own."""
        token = self.token(token_id)
        if not by.is_admin and token.user != by.user:
            raise ForbiddenError("only an admin may revoke another user's token")
        return token

    def revoke(self, token_id: int, by: Principal) -> TokenInfo:
        """Revoke a token (see `revocable`). Revoking twice changes nothing."""
        self.revocable(token_id, by)
        self.db.execute(
            "UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
            (time.time(), token_id),
        )
        return self.token(token_id)

    def authenticate(self, secret: str) -> Principal | None:
        """The token's user, if the token is known, not revoked and not expired."""
        row = self.db.row(
            "SELECT tokens.id, tokens.expires_at, tokens.revoked_at, tokens.last_used_at, "
            "users.name, users.role "
            "FROM tokens JOIN users ON users.id = tokens.user_id WHERE tokens.hash = ?",
            (token_hash(secret),),
        )
        now = time.time()
        if row is None or row["revoked_at"] is not None:
            return None
        if row["expires_at"] is not None and row["expires_at"] <= now:
            return None
        if row["last_used_at"] is None or now - row["last_used_at"] > LAST_USED_EVERY:
            # a write at most once a minute per token, not one per request
            self.db.execute("UPDATE tokens SET last_used_at = ? WHERE id = ?", (now, row["id"]))
        return Principal(user=row["name"], role=row["role"])

    # -- the first start --------------------------------------------------------------------------

    def bootstrap(self, admin_token: str | None) -> str | None:
        """Make the first admin and its token when the server has no admin yet.

        Returns the token when it was generated here (the caller shows it, once); None when
        the server had an admin already or the token came from IACRUN_SERVER_ADMIN_TOKEN."""
        with self.db.transaction() as db:
            # servers starting at once on one PostgreSQL: one makes the admin, the others wait
            # for it here and find it made
            db.serialize(BOOTSTRAP_LOCK_KEY)
            if db.row("SELECT id FROM users WHERE role = 'admin' LIMIT 1") is not None:
                return None
            try:
                self.user(ADMIN_USER)
            except NotFoundError:
                self.create_user(ADMIN_USER, "admin")
            token = self.create_token(ADMIN_USER, "first admin token", secret=admin_token)
        return None if admin_token else token.token
