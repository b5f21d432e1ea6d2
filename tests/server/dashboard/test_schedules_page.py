"""The schedules page through a real server, without a browser: each schedule with its cron,
next time, latest run (linked) and user, the rows live through `schedules.json`, and the
Stop-schedule form (CSRF, the API's own user check) that ends the schedule."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime
from pathlib import Path

import httpx

from iacrun.orchestrator.models.runspec import Overrides, RunSpec, build_run_spec
from iacrun.server.dashboard.render import when
from tests.conftest import write_task
from tests.server.conftest import Server, start_server, stop_server, wait_for
from tests.server.dashboard.support import csrf_of, make_member, signed_in

#: the test clock starts at 2026-12-01 14:30:00 UTC and runs 15 times faster (a minute in 4 s)
START = datetime(2026, 12, 1, 14, 30, tzinfo=UTC).timestamp()
EVERY_MINUTE = "commands: [echo tick]\nschedule:\n  cron: '* * * * *'\n"
NIGHTLY = "commands: [echo night]\nschedule:\n  cron: ['0 3 * * *', '30 4 * * 1-5']\n"


def _spec(project: Path, text: str, name: str) -> RunSpec:
    write_task(project, text)
    return build_run_spec(project / "task.dstack.yml", Overrides(name=name))


def _row(page: str, name: str) -> str:
    found = re.search(
        rf'<tr id="schedule-\d+"[^>]*>\s*<th scope="row">{name}\b.*?</tr>', page, re.S
    )
    assert found is not None, f"no row for {name}"
    return found.group(0)


def test_schedules_are_listed_live_and_stopped_from_the_page(
    tmp_path: Path, server_env: dict[str, str], project: Path
) -> None:
    server = start_server(tmp_path / "home", {**server_env, "IACRUN_TEST_CLOCK": f"{START}x15"})
    try:
        _check_schedules_page(server, project)
    finally:
        stop_server(server)


def _check_schedules_page(server: Server, project: Path) -> None:
    for path in ("/schedules", "/schedules?stopped=true"):
        answer = httpx.get(server.url + path, follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/signin")
    assert httpx.get(server.url + "/schedules.json").status_code == 401

    client = server.client()
    tick_spec = _spec(project, EVERY_MINUTE, "tick")
    tick = client.schedule(tick_spec, client.upload(tick_spec))
    member_token = make_member(server, "bob")
    nightly_spec = _spec(project, NIGHTLY, "nightly")
    member = server.client(member_token)
    nightly = member.schedule(nightly_spec, member.upload(nightly_spec))

    session = signed_in(server)
    page = session.get("/schedules")
    assert page.status_code == 200 and "<title>Schedules · iacrun</title>" in page.text
    assert '<a href="/schedules" aria-current="page">Schedules</a>' in page.text
    assert 'href="/schedules"' in session.get("/runs").text  # linked from every page's nav
    row = _row(page.text, "nightly")
    assert "<code>0 3 * * *</code><br><code>30 4 * * 1-5</code>" in row
    assert when(nightly.next_at) in row and "2026-12-02 03:00:00 UTC" in row
    assert '<td data-label="User">bob</td>' in row and "none yet" in row
    assert 'data-confirm="Stop the schedule nightly?' in row
    assert 'aria-label="Stop schedule nightly"' in row
    assert "<code>* * * * *</code>" in _row(page.text, "tick")

    # live: the first run of tick appears in the rows the page polls, linked to its page
    first = f"tick-{datetime.fromtimestamp(tick.next_at, UTC):%Y%m%d%H%M}"

    def linked() -> bool:
        rows = session.get("/schedules.json").json()["html"]
        return f'<a href="/runs/{first}">{first}</a>' in rows

    wait_for(linked, 90)
    live = session.get("/schedules.json").json()
    assert live["count"] == 2
    assert session.get(f"/runs/{first}").status_code == 200

    # the stop form: refused without the session's CSRF token, the schedule goes on
    token = csrf_of(page.text)
    for data in ({}, {"csrf": "0" * 64}):
        refused = session.post("/schedules/tick/stop", data=data)
        assert refused.status_code == 403 and "CSRF token is missing or wrong" in refused.text
    assert client.get_schedule("tick").active

    # a member may stop a schedule as the API lets it (any signed-in user)
    bob = signed_in(server, member_token)
    bob_token = csrf_of(bob.get("/schedules").text)
    form = {"csrf": bob_token, "next": "/schedules"}
    asked = bob.post("/schedules/tick/stop", data=form)  # unconfirmed: the question first
    assert asked.status_code == 200 and '<p id="question">Stop the schedule tick?' in asked.text
    assert client.get_schedule("tick").active
    stopped = bob.post("/schedules/tick/stop", data=form | {"confirmed": "yes"})
    assert stopped.status_code == 303 and stopped.headers["location"] == "/schedules"
    assert client.get_schedule("tick").stopped_at is not None
    wait_for(lambda: all(not r.active for r in client.runs(all_runs=True)))
    after = session.get("/schedules").text
    assert 'aria-label="Stop schedule tick"' not in after and '<th scope="row">tick' not in after
    assert _row(after, "nightly")
    everything = session.get("/schedules?stopped=true").text
    stopped_row = _row(everything, "tick")
    assert "stopped <time" in stopped_row and "Stop schedule" not in stopped_row
    missing = session.post("/schedules/nothing/stop", data={"csrf": token})
    assert missing.status_code == 404 and "no schedule named" in html.unescape(missing.text)
