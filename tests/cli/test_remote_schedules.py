"""Scheduled tasks from the CLI in remote mode, against a real server whose scheduler runs on
a test clock (`IACRUN_TEST_CLOCK`, one minute every four seconds): `up` keeps the schedule,
`ps` lists it with its next time and its runs, `stop NAME` ends it."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.conftest import Cli, write_task
from tests.server.conftest import ADMIN_TOKEN, Server, start_server, stop_server, wait_for

START = datetime(2026, 12, 1, 14, 30, tzinfo=UTC).timestamp()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    env = dict(os.environ, IACRUN_SERVER_ADMIN_TOKEN=ADMIN_TOKEN, IACRUN_TEST_CLOCK=f"{START}x15")
    env.pop("IACRUN_DATABASE_URL", None)
    running = start_server(tmp_path / "server-home", env)
    try:
        yield running
    finally:
        if running.proc.poll() is None:
            admin = running.client()
            for schedule in admin.schedules():
                admin.stop_schedule(schedule.name)
            for run in admin.runs(active=True):  # killed at once: a test's job may hang
                admin.stop(run.name, abort=True)
            wait_for(lambda: not admin.runs(active=True), timeout=60)
            stop_server(running)


def test_up_keeps_a_schedule_ps_lists_it_and_stop_ends_it(
    cli: Cli, server: Server, project: Path
) -> None:
    assert cli("login", server.url, "--token-stdin", input=ADMIN_TOKEN + "\n").returncode == 0
    write_task(project, "name: tick\ncommands: [echo tick]\nschedule:\n  cron: '* * * * *'\n")
    up = cli("up", "-y", "task.dstack.yml")
    assert up.returncode == 0, up.stderr
    assert re.search(
        r"^Scheduled tick: its first run starts 2026-12-01 \d\d:\d\d UTC; see it with: iacrun "
        r"ps; stop it with: iacrun stop tick$",
        up.stderr,
        re.M,
    ), up.stderr
    admin = server.client()
    wait_for(lambda: any(r.status == "done" for r in admin.runs(all_runs=True)), timeout=120)
    ps = cli("ps", "-a")
    assert ps.returncode == 0, ps.stderr
    assert re.search(r"^tick-202612011\d{3} +local .* done ", ps.stdout, re.M), ps.stdout
    assert re.search(
        r"^SCHEDULE +CRON \(UTC\) +NEXT +LAST RUN +BY\ntick +\* \* \* \* \* +2026-12-01 "
        r"\d\d:\d\d UTC +tick-\d{12} \(\w+\) +admin$",
        ps.stdout,
        re.M,
    ), ps.stdout
    stop = cli("stop", "tick")
    assert stop.returncode == 0, stop.stderr
    assert stop.stdout.strip() == "tick: schedule stopped (no run starts from it any more)"
    assert admin.schedules() == []
    assert "SCHEDULE" not in cli("ps").stdout
    assert re.search(r"^tick +\* \* \* \* \* +stopped ", cli("ps", "-a").stdout, re.M)


def test_ps_json_lists_schedules_their_names_are_held_and_stop_all_ends_them(
    cli: Cli, server: Server, project: Path
) -> None:
    assert cli("login", server.url, "--token-stdin", input=ADMIN_TOKEN + "\n").returncode == 0
    # 03:00 UTC is hours of the test clock away: the schedule does not fire during the test
    write_task(project, "name: nightly\ncommands: [echo night]\nschedule:\n  cron: '0 3 * * *'\n")
    assert cli("up", "-y", "task.dstack.yml").returncode == 0
    listed = json.loads(cli("ps", "--json").stdout)
    [schedule] = [item for item in listed if item["type"] == "schedule"]
    assert schedule["name"] == "nightly" and schedule["crons"] == ["0 3 * * *"]
    assert schedule["active"] and schedule["user"] == "admin"
    assert schedule["next_at"] == datetime(2026, 12, 2, 3, 0, tzinfo=UTC).timestamp()
    # a run may not take the schedule's name (stop NAME ends the schedule) nor its runs' names
    write_task(project, "commands: [sleep 300]\n")
    for name, says in (
        ("nightly", "'nightly' is an active schedule's name"),
        ("nightly-202612020300", "a name the active schedule 'nightly' gives its runs"),
    ):
        taken = cli("up", "-y", "-d", "-n", name, "task.dstack.yml")
        assert taken.returncode == 2, taken.stderr
        assert says in taken.stderr and "Traceback" not in taken.stderr
    assert cli("up", "-y", "-d", "-n", "busy", "task.dstack.yml").returncode == 0
    assert [item["type"] for item in json.loads(cli("ps", "--json").stdout)] == [
        "run",
        "schedule",
    ]
    # --all ends the schedule too: else it would start new runs right after
    stop = cli("stop", "--all")
    assert stop.returncode == 0, stop.stderr
    lines = stop.stdout.splitlines()
    assert lines[0] == "nightly: schedule stopped (no run starts from it any more)"
    assert lines[1].startswith("busy: terminated")
    admin = server.client()
    assert admin.schedules() == [] and admin.runs(active=True) == []


def test_stop_x_ends_a_schedule_and_kills_its_run_at_once(
    cli: Cli, server: Server, project: Path
) -> None:
    """`iacrun stop -x SCHEDULE`: the schedule ends and its running run is aborted (no SIGTERM,
    no stop_duration grace), as `stop -x RUN` does; a plain stop of it would wait an hour."""
    assert cli("login", server.url, "--token-stdin", input=ADMIN_TOKEN + "\n").returncode == 0
    write_task(
        project,
        "name: hang\nstop_duration: 1h\nschedule:\n  cron: '* * * * *'\ncommands:\n"
        "  - trap 'echo caught TERM; sleep 600' TERM\n  - echo started\n"
        "  - sleep 600 & wait\n",
    )
    assert cli("up", "-y", "task.dstack.yml").returncode == 0
    admin = server.client()

    def started() -> str | None:
        for run in admin.runs(active=True):
            if run.status == "running" and b"started" in admin.logs(run.name, 0).data:
                return run.name
        return None

    wait_for(lambda: started() is not None, timeout=120)
    name = started()
    assert name is not None
    stop = cli("stop", "-x", "hang", timeout=120)
    assert stop.returncode == 0, stop.stderr
    assert stop.stdout.strip() == "hang: schedule stopped (no run starts from it any more)"
    wait_for(lambda: not admin.get(name).active, timeout=60)
    run = admin.get(name)
    assert (run.status, run.exit_code, run.abort) == ("terminated", 137, True), run.reason
    assert b"caught TERM" not in admin.logs(name, 0).data
    assert admin.schedules() == []
