"""Tokens and roles on a real server: 401 without a good token, 403 for a member doing what
only an admin may; a member manages the team's runs (as in a dstack project)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from iacrun.orchestrator.errors import AuthError, ForbiddenError, InputError
from iacrun.server.accounts import token_hash
from tests.server.conftest import Server, start_server, stop_server
from tests.server.test_runs import spec_of


def status(server: Server, method: str, path: str, token: str | None) -> int:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return httpx.request(method, f"{server.url}/api/v1{path}", headers=headers).status_code


def test_every_endpoint_but_info_needs_a_good_token(server: Server) -> None:
    for method, path in [
        ("GET", "/runs"),
        ("GET", "/runs/x"),
        ("GET", "/runs/x/logs/stream"),
        ("POST", "/runs/x/stop"),
        ("HEAD", f"/uploads/{'0' * 64}"),
        ("GET", "/offers"),
        ("GET", "/stacks"),
        ("GET", "/users"),
        ("GET", "/tokens"),
    ]:
        assert status(server, method, path, None) == 401, path
        assert status(server, method, path, "iacrun_wrong") == 401, path
    assert status(server, "GET", "/server/info", None) == 200
    with pytest.raises(AuthError, match="not valid"):
        server.client(token="iacrun_wrong").runs()
    with pytest.raises(AuthError, match="no API token"):
        server.client(token="").runs()


def test_revoked_and_expired_tokens_are_refused(server: Server) -> None:
    admin = server.client()
    made = admin.create_token("laptop")
    assert made.token.startswith("iacrun_") and len(made.token) > 40
    laptop = server.client(made.token)
    assert laptop.runs() == []
    assert admin.revoke_token(made.id).revoked_at is not None
    with pytest.raises(AuthError):
        laptop.runs()
    soon = admin.create_token("ci", expires_at=time.time() + 3600)
    ci = server.client(soon.token)
    assert ci.runs() == []
    # an hour later (the clock is the database's: the expiry is moved, nothing is waited)
    server.registry().db.execute(
        "UPDATE tokens SET expires_at = ? WHERE id = ?", (time.time() - 1, soon.id)
    )
    with pytest.raises(AuthError):
        ci.runs()
    with pytest.raises(InputError, match="in the past"):
        admin.create_token("late", expires_at=time.time() - 10)


def test_only_hashes_of_tokens_are_stored(server: Server) -> None:
    made = server.client().create_token("secret-keeper")
    rows = server.registry().db.rows("SELECT * FROM tokens")
    text = repr(rows)
    assert made.token not in text and server.admin_token not in text
    assert token_hash(made.token) in text
    listed = httpx.get(
        f"{server.url}/api/v1/tokens", headers={"Authorization": f"Bearer {server.admin_token}"}
    ).text
    assert made.token not in listed and "token_hash" not in listed


def test_a_member_is_403_for_what_only_an_admin_may(server: Server, project: Path) -> None:
    admin = server.client()
    ann = admin.create_user("ann", token_name="ann-laptop")
    bob = admin.create_user("bob", "member", token_name="bob-laptop")
    assert ann.token is not None and bob.token is not None
    member = server.client(ann.token.token)
    with pytest.raises(ForbiddenError, match="ann is a member"):
        member.users()
    with pytest.raises(ForbiddenError):
        member.create_user("eve", "admin")
    with pytest.raises(ForbiddenError):
        member.create_token("for-bob", user="bob")
    with pytest.raises(ForbiddenError):
        member.revoke_token(bob.token.id)
    with pytest.raises(ForbiddenError):
        member.destroy_stack("some-stack")
    assert status(server, "DELETE", "/stacks/x", ann.token.token) == 403
    assert status(server, "GET", "/users", ann.token.token) == 403
    # a member's own tokens: listed (only its own), made and revoked
    own = member.create_token("second")
    assert {t.name for t in member.tokens()} == {"ann-laptop", "second"}
    assert member.revoke_token(own.id).revoked_at is not None
    assert {t.user for t in admin.tokens()} == {"admin", "ann", "bob"}
    # runs are the team's: a member stops another member's run, and the run says who
    spec = spec_of(project, "commands:\n  - sleep 300\n", "bobs")
    run = server.client(bob.token.token).submit(spec)
    assert run.submitted_by == "bob"
    assert [r.name for r in member.runs(user="bob")] == ["bobs"]
    stopped = member.stop("bobs")
    assert stopped.status == "terminated" and stopped.reason == "stopped by ann"


def test_the_first_admin_token_is_generated_and_printed_once(
    tmp_path: Path, server_env: dict[str, str]
) -> None:
    env = {k: v for k, v in server_env.items() if k != "IACRUN_SERVER_ADMIN_TOKEN"}
    home = tmp_path / "fresh-home"
    first = start_server(home, env)
    try:
        lines = [line.strip() for line in first.output]
        token = next(line for line in lines if line.startswith("iacrun_"))
        assert first.client(token).users()[0].name == "admin"
    finally:
        assert stop_server(first) == 0  # SIGTERM stops it cleanly
    again = start_server(home, env)
    try:
        assert not any("iacrun_" in line for line in again.output)  # never shown again
        assert again.client(token).users()[0].role == "admin"
    finally:
        stop_server(again)
