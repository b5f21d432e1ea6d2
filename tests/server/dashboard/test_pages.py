"""The dashboard's pages through a real server, without a browser: sign-in and its cookie, pages
refused without it, CSRF on every change, the API's roles, the runs list paged and filtered, a
run's page and the stop form."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest

from iacrun.orchestrator.models.runspec import Overrides, build_run_spec
from iacrun.server.auth import csrf_token
from tests.conftest import write_task
from tests.server.conftest import Server, wait_for
from tests.server.dashboard.support import csrf_of, make_member, signed_in

PAGES = {
    "/runs": "Runs",
    "/offers": "Offers",
    "/stacks": "Stacks",
    "/cost": "Cost",
    "/tokens": "Tokens",
    "/users": "Users",
}


def test_pages_without_a_session_redirect_to_sign_in_and_json_is_401(server: Server) -> None:
    for path in [*PAGES, "/runs/some-run", "/runs?show=active&mine=true"]:
        answer = httpx.get(server.url + path, follow_redirects=False)
        assert answer.status_code == 303, path
        location = answer.headers["location"]
        assert location.startswith("/signin?next=/"), location
    assert httpx.get(server.url + "/").headers["location"] == "/runs"
    for path in ("/runs.json", "/runs/x/status.json"):
        answer = httpx.get(server.url + path)
        assert answer.status_code == 401
        assert answer.json()["error"]["type"] == "AuthError"
    # a wrong cookie is no session either
    answer = httpx.get(
        server.url + "/runs", cookies={"iacrun_session": "iacrun_wrong"}, follow_redirects=False
    )
    assert answer.status_code == 303
    sign_in = httpx.get(server.url + "/signin")
    assert sign_in.status_code == 200
    assert "<title>Sign in · iacrun</title>" in sign_in.text
    assert '<label for="token">API token</label>' in sign_in.text


def test_sign_in_sets_an_httponly_strict_cookie_and_sign_out_ends_it(server: Server) -> None:
    bad = httpx.post(server.url + "/signin", data={"token": "iacrun_nope", "next": "/runs"})
    assert bad.status_code == 401
    assert "That token is not valid" in bad.text
    assert "set-cookie" not in bad.headers
    # only a path of this site is a place to go after signing in
    offsite = httpx.post(
        server.url + "/signin", data={"token": server.admin_token, "next": "//evil.example/x"}
    )
    assert offsite.headers["location"] == "/"

    session = signed_in(server)
    cookie = session.cookies.jar
    answer = httpx.post(server.url + "/signin", data={"token": server.admin_token, "next": "/cost"})
    header = answer.headers["set-cookie"].lower()
    assert answer.headers["location"] == "/cost"
    assert "httponly" in header and "samesite=strict" in header and "path=/" in header
    assert "secure" not in header  # served over http here; over https it is Secure
    assert len(list(cookie)) == 1

    for path, title in PAGES.items():
        page = session.get(path)
        assert page.status_code == 200, (path, page.text[:300])
        assert f"<title>{title} · iacrun</title>" in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["x-content-type-options"] == "nosniff"
    runs = session.get("/runs.json")
    assert runs.status_code == 200 and runs.json()["count"] == 0

    html = session.get("/runs").text
    out = session.post("/signout", data={"csrf": csrf_of(html)})
    assert out.status_code == 303
    assert 'iacrun_session=""' in out.headers["set-cookie"] or "max-age=0" in (
        out.headers["set-cookie"].lower()
    )
    assert session.get("/runs").status_code == 303


def spec_in(project: Path, text: str, name: str):  # type: ignore[no-untyped-def]
    write_task(project, text)
    return build_run_spec(project / "task.dstack.yml", Overrides(name=name))


def test_a_change_without_the_csrf_token_is_refused_and_with_it_done(
    server: Server, project: Path
) -> None:
    client = server.client()
    client.submit(spec_in(project, "commands:\n  - sleep 300\n", "sleeper"))
    session = signed_in(server)
    # a form posted from elsewhere has no CSRF token (and the browser would not even send the
    # SameSite=Strict cookie): refused, and the run goes on
    for data in ({}, {"csrf": "0" * 64}):
        refused = session.post("/runs/sleeper/stop", data=data)
        assert refused.status_code == 403
        assert "CSRF token is missing or wrong" in refused.text
    assert client.get("sleeper").active
    # the API with the cookie alone: the same check (the header carries the token)
    api = session.post("/api/v1/runs/sleeper/stop", json={"abort": True})
    assert api.status_code == 403 and api.json()["error"]["type"] == "ForbiddenError"
    assert client.get("sleeper").active

    page = session.get("/runs/sleeper")
    assert page.status_code == 200
    token = csrf_of(page.text)
    assert token == csrf_token(server.admin_token)
    assert 'data-confirm="Stop the run sleeper?' in page.text
    # posted without the page's script's yes (no JavaScript): asked again, as a page
    form = {"csrf": token, "next": "/runs/sleeper"}
    asked = session.post("/runs/sleeper/stop", data=form)
    assert asked.status_code == 200 and "<title>Confirm · iacrun</title>" in asked.text
    assert '<p id="question">Stop the run sleeper? Its job is stopped' in asked.text
    assert '<form method="post" action="/runs/sleeper/stop"' in asked.text
    assert '<input type="hidden" name="confirmed" value="yes">' in asked.text
    assert f'<input type="hidden" name="csrf" value="{token}">' in asked.text
    assert '<a href="/runs/sleeper">Cancel</a>' in asked.text
    assert client.get("sleeper").active
    for wrong in ("", "no", "1"):
        assert (
            session.post("/runs/sleeper/stop", data=form | {"confirmed": wrong}).status_code == 200
        )
    assert client.get("sleeper").active
    missing = session.post("/runs/nothing/stop", data=form)
    assert missing.status_code == 404 and "Confirm" not in missing.text
    stopped = session.post("/runs/sleeper/stop", data=form | {"confirmed": "yes"})
    assert stopped.status_code == 303 and stopped.headers["location"] == "/runs/sleeper"
    wait_for(lambda: client.get("sleeper").status == "terminated")
    assert client.get("sleeper").reason == "stopped by admin"


def test_a_member_reaches_through_the_pages_only_what_the_api_lets_it(server: Server) -> None:
    member = signed_in(server, make_member(server, "bob"))
    html = member.get("/runs").text
    assert "bob <small>(member)</small>" in html
    assert 'href="/users"' not in html
    assert member.get("/users").status_code == 403
    token = csrf_of(html)
    refused = member.post("/users", data={"csrf": token, "name": "mallory", "role": "admin"})
    assert refused.status_code == 403
    assert "bob is a member: only an admin may do this" in refused.text
    for confirmed in ("", "yes"):  # refused before any question is asked
        form = {"csrf": token, "confirmed": confirmed}
        assert member.post("/stacks/any-stack/destroy", data=form).status_code == 403
    made = member.post("/tokens", data={"csrf": token, "name": "ci", "user": "admin"})
    assert made.status_code == 403
    # its own tokens only
    tokens = member.get("/tokens").text
    assert "laptop" in tokens and "first admin token" not in tokens
    made = member.post("/tokens", data={"csrf": token, "name": "ci", "days": "7"})
    assert made.status_code == 201
    secret = re.search(r'id="new-token">(iacrun_[^<]+)<', made.text)
    assert secret is not None
    as_ci = {"Authorization": f"Bearer {secret.group(1)}"}
    assert httpx.get(f"{server.url}/api/v1/tokens", headers=as_ci).status_code == 200
    # revoking: another user's token is refused before any question (which would name it)
    theirs = member.post("/tokens/1/revoke", data={"csrf": token})
    assert theirs.status_code == 403 and "first admin token" not in theirs.text
    ci_id = re.findall(r'aria-label="Revoke token (\d+)"', member.get("/tokens").text)[-1]
    asked = member.post(f"/tokens/{ci_id}/revoke", data={"csrf": token})
    assert '<p id="question">Revoke the token ci of bob?' in asked.text
    assert httpx.get(f"{server.url}/api/v1/tokens", headers=as_ci).status_code == 200
    revoked = member.post(f"/tokens/{ci_id}/revoke", data={"csrf": token, "confirmed": "yes"})
    assert revoked.status_code == 303
    assert httpx.get(f"{server.url}/api/v1/tokens", headers=as_ci).status_code == 401

    admin = signed_in(server)
    users = admin.get("/users")
    assert users.status_code == 200 and '<th scope="row">bob</th>' in users.text
    added = admin.post("/users", data={"csrf": csrf_of(users.text), "name": "carol"})
    assert added.status_code == 201 and 'id="new-token">iacrun_' in added.text
    assert "first admin token" in admin.get("/tokens").text


def test_the_runs_list_is_paged_filtered_and_rendered_with_its_facts(server: Server) -> None:
    registry = server.registry()
    now = time.time()
    for i in range(60):
        run = registry.create(f"job-{i}", {}, server.home / "runs", submitted_by="bob")  # type: ignore[arg-type]
        fields = {"status": "done", "backend": "aws" if i % 2 else "local", "price": 1.5}
        registry.update(run.id, started_at=now - 3600, finished_at=now - 1800, **fields)
    active = registry.create("live-one", {}, server.home / "runs", submitted_by="admin")  # type: ignore[arg-type]
    registry.update(active.id, status="provisioning", reason="waiting for a machine")
    registry.close()

    session = signed_in(server)
    first = session.get("/runs").text
    assert first.count('<tr id="run-') == 50
    assert "live-one" in first and "waiting for a machine" in first
    assert 'class="status tone-wait"' in first  # a colour, and the word beside it
    assert ">provisioning</span>" in first
    older = re.search(r'href="(/runs\?[^"]*before=(\d+))"', first)
    assert older is not None
    second = session.get(older.group(1).replace("&amp;", "&")).text
    assert second.count('<tr id="run-') == 11
    assert "job-0<" in second and "live-one" not in second

    active_only = session.get("/runs?show=active").text
    assert active_only.count('<tr id="run-') == 1
    mine = session.get("/runs?mine=true").text
    assert mine.count('<tr id="run-') == 1  # admin submitted only live-one
    aws = session.get("/runs?backend=aws&status=done").text
    assert aws.count('<tr id="run-') == 30 and "job-59" in aws and "job-58" not in aws
    row = re.search(r'<tr id="run-\d+" data-status="done">.*?</tr>', aws, re.S)
    assert row is not None
    assert "$1.5/h" in row.group(0) and "$0.75" in row.group(0) and "30m 00s" in row.group(0)
    live = session.get("/runs.json?show=active").json()
    assert live["count"] == 1 and "live-one" in live["html"] and live["next"] is None

    cost = session.get("/cost").text
    assert "$45.00" in cost  # 60 runs x $1.5/h x 30 min
    assert "<title>Spend per user over the last 30 days</title>" in cost
    assert "bob: $45.00" in cost and "aws: $22.50" in cost


def test_a_run_page_shows_its_spec_offer_history_and_exit_code(
    server: Server, project: Path
) -> None:
    client = server.client()
    spec = spec_in(
        project,
        "env:\n  - SECRET_KEY=hunter2\ncommands:\n  - echo done here\n  - exit 4\n",
        "four",
    )
    client.submit(spec)
    wait_for(lambda: client.get("four").status == "failed")
    session = signed_in(server)
    page = session.get("/runs/four").text
    assert "<title>Run four · iacrun</title>" in page
    assert "echo done here" in page  # the task file as uploaded
    assert "hunter2" not in page and "SECRET_KEY: &#39;***&#39;" in page
    assert '<dd id="run-exit">4</dd>' in page
    assert ">failed</span>" in page and "Chosen offer" in page
    assert 'data-stream="/api/v1/runs/four/logs/stream"' in page
    status = session.get("/runs/four/status.json").json()
    assert status["status"] == "failed" and status["exit_code"] == 4 and not status["active"]
    missing = session.get("/runs/nothing-here")
    assert missing.status_code == 404 and "no run named" in missing.text


@pytest.mark.parametrize("query", ["gpu=nonsense-9", "max_price=abc", "spot=sometimes"])
def test_bad_offer_filters_are_one_line_on_the_page(server: Server, query: str) -> None:
    page = signed_in(server).get(f"/offers?{query}")
    assert page.status_code == 200
    error = re.search(r'<p class="error" role="alert">([^<]+)</p>', page.text)
    assert error is not None and "\n" not in error.group(1)


def test_offers_list_cheapest_first_with_the_catalogs_date(server: Server) -> None:
    page = signed_in(server).get("/offers?backend=aws&gpu=1").text
    assert "prices: aws as of " in page
    prices = [float(p) for p in re.findall(r'<td class="num">\$([0-9.]+)/h</td>', page)]
    assert prices and prices == sorted(prices)
