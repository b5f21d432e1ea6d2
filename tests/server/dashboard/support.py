"""What the dashboard's tests share: a browser-like HTTP session signed in with a token."""

from __future__ import annotations

import re

import httpx

from tests.server.conftest import Server


def signed_in(server: Server, token: str | None = None) -> httpx.Client:
    """An HTTP client that signed in through the sign-in form, as a browser does: it keeps the
    session cookie and sends nothing else."""
    session = httpx.Client(base_url=server.url, follow_redirects=False, timeout=30)
    answer = session.post("/signin", data={"token": token or server.admin_token, "next": "/runs"})
    assert answer.status_code == 303, answer.text
    return session


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]{64})"', html)
    assert found is not None, "the page has no form with a CSRF token"
    return found.group(1)


def make_member(server: Server, name: str = "bob") -> str:
    """A member of the server and its token."""
    answer = httpx.post(
        f"{server.url}/api/v1/users",
        json={"name": name, "role": "member", "token_name": "laptop"},
        headers={"Authorization": f"Bearer {server.admin_token}"},
    )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["token"]["token"])
