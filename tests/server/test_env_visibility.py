"""A task's env holds its secrets: through the API its values go only to the run's submitter
and to admins; another member sees the keys with `***` (runs, the list, stop, schedules)."""

from __future__ import annotations

from pathlib import Path

import httpx

from iacrun.orchestrator.models.runspec import Overrides, build_run_spec
from tests.conftest import write_task
from tests.server.conftest import Server

SECRET = "hunter2-s3cr3t"


def _submit_as_ann(server: Server, project: Path) -> tuple[str, str]:
    admin = server.client()
    ann = admin.create_user("ann", "member", token_name="ann-laptop").token.token
    bob = admin.create_user("bob", "member", token_name="bob-laptop").token.token
    write_task(project, f"env:\n  - API_KEY={SECRET}\n  - EMPTY=\ncommands:\n  - sleep 300\n")
    spec = build_run_spec(project / "task.dstack.yml", Overrides(name="anns"))
    run = server.client(ann).submit(spec)
    assert run.spec.env == {"API_KEY": SECRET, "EMPTY": ""}  # the submitter's own answer
    return ann, bob


def test_a_runs_env_values_go_to_its_submitter_and_admins_only(
    server: Server, project: Path
) -> None:
    ann, bob = _submit_as_ann(server, project)
    masked = {"API_KEY": "***", "EMPTY": "***"}
    for token, env in (
        (ann, {"API_KEY": SECRET, "EMPTY": ""}),
        (server.admin_token, {"API_KEY": SECRET, "EMPTY": ""}),
        (bob, masked),
    ):
        client = server.client(token)
        assert client.get("anns").spec.env == env
        assert [r.spec.env for r in client.runs() if r.name == "anns"] == [env]
    # nowhere in what bob's requests read, whatever the endpoint
    headers = {"Authorization": f"Bearer {bob}"}
    for path in ("/api/v1/runs", "/api/v1/runs?recent=true", "/api/v1/runs/anns"):
        answer = httpx.get(f"{server.url}{path}", headers=headers)
        assert answer.status_code == 200 and SECRET not in answer.text
    stopped = server.client(bob).stop("anns", abort=True)
    assert stopped.spec.env == masked
    # what is recorded is the task's own env: the mask is only what bob is shown
    assert server.registry().get("anns").spec.env["API_KEY"] == SECRET


def test_a_schedules_env_values_go_to_its_submitter_and_admins_only(
    server: Server, project: Path
) -> None:
    admin = server.client()
    ann = admin.create_user("ann", "member", token_name="ann-laptop").token.token
    bob = admin.create_user("bob", "member", token_name="bob-laptop").token.token
    write_task(
        project,
        f"env:\n  - API_KEY={SECRET}\ncommands: [echo tick]\nschedule:\n  cron: '0 3 * * *'\n",
    )
    spec = build_run_spec(project / "task.dstack.yml", Overrides(name="nightly"))
    assert server.client(ann).schedule(spec).spec.env == {"API_KEY": SECRET}
    assert admin.get_schedule("nightly").spec.env == {"API_KEY": SECRET}
    member = server.client(bob)
    assert member.get_schedule("nightly").spec.env == {"API_KEY": "***"}
    assert [s.spec.env for s in member.schedules()] == [{"API_KEY": "***"}]
    assert member.stop_schedule("nightly").spec.env == {"API_KEY": "***"}
