"""Scheduled tasks through a real server process: the server's clock is a test clock
(`IACRUN_TEST_CLOCK`, one minute every four seconds), so a schedule every minute fires twice in
seconds; the runs run on the local backend; stop ends the schedule; a restart keeps it."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from iacrun.orchestrator.models.runspec import Overrides, RunSpec, build_run_spec
from iacrun.orchestrator.registry import RunRecord
from iacrun.orchestrator.registry.schedules import ScheduleRecord
from iacrun.server.scheduler import occurrence_name
from tests.conftest import write_task
from tests.server.conftest import ADMIN_TOKEN, Server, start_server, stop_server, wait_for

#: the test clock starts at 2026-12-01 14:30:00 UTC
START = datetime(2026, 12, 1, 14, 30, tzinfo=UTC).timestamp()
EVERY_MINUTE = "commands: [echo tick]\nschedule:\n  cron: '* * * * *'\n  concurrent: true\n"


def _spec(project: Path, text: str, name: str) -> RunSpec:
    write_task(project, text)
    return build_run_spec(project / "task.dstack.yml", Overrides(name=name))


def _scheduled_runs(server: Server, schedule_id: int) -> list[RunRecord]:
    runs = server.client().runs(all_runs=True)
    return sorted((r for r in runs if r.schedule_id == schedule_id), key=lambda r: r.name)


def test_a_schedule_every_minute_fires_twice_through_the_server_and_stops_when_stopped(
    tmp_path: Path, server_env: dict[str, str], project: Path
) -> None:
    server = start_server(tmp_path / "home", {**server_env, "IACRUN_TEST_CLOCK": f"{START}x15"})
    try:
        client = server.client()
        spec = _spec(project, EVERY_MINUTE, "tick")
        # POST /runs with a spec that has a schedule keeps a schedule, and answers with it
        response = httpx.post(
            f"{server.url}/api/v1/runs",
            json={"spec": spec.model_dump(mode="json"), "upload": client.upload(spec)},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
        assert response.status_code == 201, response.text
        created = ScheduleRecord.model_validate(response.json())
        assert (created.name, created.crons, created.submitted_by) == (
            "tick",
            ["* * * * *"],
            "admin",
        )
        assert created.next_at % 60 == 0 and 0 < created.next_at - created.created_at <= 60
        assert [(s.name, s.next_at) for s in client.schedules()] == [("tick", created.next_at)]
        expected = [occurrence_name("tick", created.next_at + k * 60) for k in (0, 1)]

        def both_done() -> bool:
            runs = {r.name: r for r in _scheduled_runs(server, created.id)}
            return all(name in runs and runs[name].status == "done" for name in expected)

        wait_for(both_done, timeout=120)
        runs = {r.name: r for r in _scheduled_runs(server, created.id)}
        first = runs[expected[0]]
        assert first.submitted_by == "admin" and first.exit_code == 0
        assert b"".join(client.follow(first.name)).startswith(b"tick\n")
        listed = client.get_schedule("tick")
        assert listed.next_at > created.next_at + 60 and listed.last_run_name is not None

        stopped = client.stop_schedule("tick")
        assert stopped.stopped_at is not None
        assert client.schedules() == []
        assert [s.name for s in client.schedules(all_schedules=True)] == ["tick"]
        count = len(_scheduled_runs(server, created.id))
        time.sleep(8)  # two minutes of the test clock: nothing starts any more
        assert len(_scheduled_runs(server, created.id)) == count
        wait_for(lambda: all(not r.active for r in _scheduled_runs(server, created.id)))
    finally:
        stop_server(server)


def test_a_schedule_outlives_a_server_restart(
    tmp_path: Path, server_env: dict[str, str], project: Path
) -> None:
    env = {**server_env, "IACRUN_TEST_CLOCK": f"{START - 3600}"}  # an hour before; real speed
    server = start_server(tmp_path / "home", env)
    try:
        created = server.client().schedule(_spec(project, EVERY_MINUTE, "kept"))
    finally:
        stop_server(server)
    again = start_server(tmp_path / "home", env)
    try:
        [found] = again.client().schedules()
        assert (found.id, found.name, found.next_at) == (created.id, "kept", created.next_at)
        assert again.client().stop_schedule("kept").stopped_at is not None
    finally:
        stop_server(again)


def test_schedules_need_a_token_and_an_unknown_one_is_404(server: Server) -> None:
    assert httpx.get(f"{server.url}/api/v1/schedules").status_code == 401
    response = httpx.post(
        f"{server.url}/api/v1/schedules/nope/stop",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "RunNotFoundError"


def test_the_clients_submit_says_where_a_scheduled_task_goes(server: Server, project: Path) -> None:
    import pytest

    from iacrun.orchestrator.errors import InputError

    with pytest.raises(InputError, match=r"keeps it as a schedule \(Client\.schedule\)"):
        server.client().submit(_spec(project, EVERY_MINUTE, "nope"))
    assert server.client().schedules() == []
