"""Runs through a real server: submitted by the client, run on the local backend, their logs
whole through Server-Sent Events, stopped and torn down; the list paged and filtered."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from iacrun.orchestrator.errors import (
    InputError,
    NoOfferError,
    NotFoundError,
    RunNameTakenError,
    RunNotFoundError,
)
from iacrun.orchestrator.models.runspec import Overrides, build_run_spec
from tests.conftest import write_task
from tests.server.conftest import Server, wait_for


def spec_of(project: Path, text: str, name: str | None = None):  # type: ignore[no-untyped-def]
    write_task(project, text)
    return build_run_spec(project / "task.dstack.yml", Overrides(name=name))


def test_server_info_needs_no_token(server: Server) -> None:
    info = server.client(token="").info()
    kind = "postgresql" if server.database_url else "sqlite"
    assert info.api == "v1" and info.database == kind
    assert f"(database: {kind} " in "".join(server.output)


def test_a_submitted_run_runs_on_the_local_backend_and_its_log_arrives_whole(
    server: Server, project: Path
) -> None:
    spec = spec_of(project, "commands:\n  - echo hello from $IACRUN_RUN_NAME\n  - exit 3\n", "one")
    client = server.client()
    run = client.submit(spec)
    assert run.name == "one" and run.submitted_by == "admin"
    follow = client.follow("one")
    log = b"".join(follow)
    assert log.startswith(b"hello from one\n")
    assert follow.end is not None
    assert (follow.end.status, follow.end.exit_code) == ("failed", 3)
    final = client.get("one")
    assert final.status == "failed" and final.exit_code == 3
    assert final.host is not None
    assert log == (Path(final.host.run_dir) / "log").read_bytes()
    assert [e.status for e in client.history("one")][-1] == "failed"
    chunk = client.logs("one", offset=6, limit=9)
    assert (chunk.data, chunk.offset, chunk.status) == (b"from one\n", 15, "failed")
    assert client.logs("one", offset=6).data == log[6:]
    # the spec the server ran points at its own copy of the upload, never the client's folder
    assert str(project) not in final.spec.repo_dir
    assert final.spec.repo_dir.startswith(str(server.home / "uploads"))


def test_an_active_name_is_409_and_an_unknown_run_404(server: Server, project: Path) -> None:
    spec = spec_of(project, "commands:\n  - sleep 300\n", "busy")
    client = server.client()
    client.submit(spec)
    with pytest.raises(RunNameTakenError, match="'busy' is still active"):
        client.submit(spec)
    response = httpx.post(
        f"{server.url}/api/v1/runs",
        json={"spec": spec.model_dump(mode="json"), "upload": client.upload(spec)},
        headers={"Authorization": f"Bearer {server.admin_token}"},
    )
    assert response.status_code == 409
    assert response.json()["error"]["type"] == "RunNameTakenError"
    assert response.json()["error"]["exit_code"] == 2
    with pytest.raises(RunNotFoundError):
        client.get("nope")
    assert (
        httpx.get(
            f"{server.url}/api/v1/runs/nope",
            headers={"Authorization": f"Bearer {server.admin_token}"},
        ).status_code
        == 404
    )


def test_stop_and_down(server: Server, project: Path) -> None:
    spec = spec_of(project, "commands:\n  - echo started\n  - sleep 300\n", "long")
    client = server.client()
    client.submit(spec)
    wait_for(lambda: client.logs("long").data == b"started\n")
    stopped = client.stop("long")
    assert stopped.status == "terminated" and stopped.reason == "stopped by admin"
    assert client.get("long").status == "terminated"
    assert client.down("long") == "long: terminated (stopped by admin)"
    with pytest.raises(RunNotFoundError):
        client.down("never-was")


def test_a_stop_says_who_and_why(server: Server, project: Path) -> None:
    client = server.client()
    names = ("why-wait", "why-at-once", "why-abort", "plain-abort")
    for name in names:
        client.submit(spec_of(project, "commands:\n  - echo started\n  - sleep 300\n", name))
    for name in names:
        wait_for(lambda name=name: client.logs(name).data == b"started\n")  # type: ignore[misc]
    stopped = client.stop("why-wait", reason="the CI job\nwas cancelled")
    assert stopped.reason == "stopped by admin: the CI job was cancelled"  # one line
    at_once = client.stop("why-at-once", wait=False, reason="iacrun got SIGTERM")
    assert at_once.status == "terminating" and not at_once.abort
    client.stop("why-abort", abort=True, reason="the step hangs")
    client.stop("plain-abort", abort=True)
    wait_for(lambda: not any(client.get(name).active for name in names[1:]))
    assert client.get("why-at-once").reason == "stopped by admin: iacrun got SIGTERM"
    assert client.get("why-abort").reason == "aborted by admin: the step hangs"
    assert client.get("plain-abort").reason == "aborted by admin"
    response = httpx.post(
        f"{server.url}/api/v1/runs/why-wait/stop",
        json={"reason": "x" * 201},
        headers={"Authorization": f"Bearer {server.admin_token}"},
    )
    assert response.status_code == 422


def test_uploads_are_stored_once_by_hash_and_checked(server: Server, project: Path) -> None:
    (project / "data.txt").write_text("x" * 1000)
    spec = spec_of(project, 'commands: ["true"]\n')
    client = server.client()
    sha = client.upload(spec)
    assert client._has_upload(sha)
    assert client.upload(spec) == sha  # the same files: the same hash, not sent again
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    wrong = httpx.put(f"{server.url}/api/v1/uploads/{'0' * 64}", content=b"abc", headers=headers)
    assert wrong.status_code == 400 and "SHA-256" in wrong.json()["error"]["message"]
    with pytest.raises(NotFoundError, match="no upload"):
        client.submit(spec, upload="1" * 64)
    with pytest.raises(InputError, match="not a SHA-256"):
        client.submit(spec, upload="../../etc")


def test_the_runs_list_pages_and_filters(server: Server, project: Path) -> None:
    registry = server.registry()
    spec = spec_of(project, 'commands: ["true"]\n')
    for index in range(12):
        run = registry.create(
            f"r{index}", spec, server.home / "runs", submitted_by="ann" if index % 3 else "bob"
        )
        if index % 2:
            registry.update(run.id, status="done", finished_at=time.time() - 7200)
    client = server.client()
    first = client.page(limit=5)
    assert [r.name for r in first.runs] == ["r11", "r10", "r9", "r8", "r7"]
    second = client.page(limit=5, before=first.next)
    assert [r.name for r in second.runs] == ["r6", "r5", "r4", "r3", "r2"]
    last = client.page(limit=5, before=second.next)
    assert [r.name for r in last.runs] == ["r1", "r0"] and last.next is None
    assert [r.name for r in client.page(user="bob").runs] == ["r9", "r6", "r3", "r0"]
    assert [r.name for r in client.page(status="done", user="ann").runs] == [
        "r11",
        "r7",
        "r5",
        "r1",
    ]
    assert len(client.page(active=True).runs) == 6
    assert len(client.page(active=False).runs) == 6
    assert len(client.runs()) == 6  # what `ps` shows: the ones that ended an hour ago are not
    assert len(client.runs(all_runs=True)) == 12
    bad = httpx.get(
        f"{server.url}/api/v1/runs?status=sleeping",
        headers={"Authorization": f"Bearer {server.admin_token}"},
    )
    assert bad.status_code == 422
    message = bad.json()["error"]["message"]
    assert message.startswith("query.status: input should be 'pending', ") and "sleeping" in message


def test_bad_requests_are_one_line_errors_of_the_tree(server: Server, project: Path) -> None:
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    missing = httpx.post(f"{server.url}/api/v1/runs", json={"upload": "x"}, headers=headers)
    assert missing.status_code == 422
    assert missing.json()["error"] == {
        "type": "InputError",
        "message": "spec: is required",
        "exit_code": 2,
    }
    spec = spec_of(project, 'resources:\n  gpu: H100:8\ncommands: ["true"]\n', "big")
    client = server.client()
    with pytest.raises(NoOfferError) as caught:
        client.plan(spec)
    assert "\n" not in str(caught.value)
    plan = httpx.post(
        f"{server.url}/api/v1/plan", json={"spec": spec.model_dump(mode="json")}, headers=headers
    )
    assert plan.status_code == 503 and plan.json()["error"]["type"] == "NoOfferError"
    assert client.plan(spec_of(project, 'commands: ["true"]\n')).offers[0].backend == "local"


def test_offers_backends_stacks_and_the_dry_run(server: Server, project: Path) -> None:
    client = server.client()
    offers = client.offers(backend=["local"], configured_only=True)
    assert [o.backend for o in offers.offers] == ["local"]
    with pytest.raises(NoOfferError):
        client.offers(gpu="H100:8", configured_only=True)
    cloud = client.offers(gpu="A100:8", spot="on-demand", backend=["aws"])
    assert cloud.offers and {o.backend for o in cloud.offers} == {"aws"}
    assert all(not o.spot for o in cloud.offers)
    assert [(b.name, b.ready) for b in client.backends()] == [("local", True)]
    assert client.stacks() == []
    dry = client.plan(spec_of(project, 'commands: ["true"]\n'), dry_run=True)
    assert dry.dry_run is not None and dry.dry_run.startswith("local: nothing is created")
    with pytest.raises(RunNotFoundError, match="no run or stack named 'no-such-stack'"):
        client.destroy_stack("no-such-stack")


#: a job that traps SIGTERM: a graceful stop runs the trap, an abort never does
TRAPPING = (
    "stop_duration: 60\ncommands:\n  - trap 'echo caught TERM; exit 3' TERM\n"
    "  - echo started\n  - sleep 300 & wait\n"
)


def test_abort_answers_at_once_and_the_pool_kills_the_job_without_its_grace(
    server: Server, project: Path
) -> None:
    client = server.client()
    for name in ("graceful", "aborted"):
        client.submit(spec_of(project, TRAPPING, name))
    for name in ("graceful", "aborted"):
        wait_for(lambda name=name: client.logs(name).data == b"started\n")  # type: ignore[misc]
    answered = client.stop("aborted", abort=True)
    assert (answered.status, answered.reason, answered.abort) == (
        "terminating",
        "aborted by admin",
        True,
    )
    graceful = client.stop("graceful")
    assert (graceful.status, graceful.exit_code, graceful.abort) == ("terminated", 3, False)
    assert b"caught TERM" in client.logs("graceful").data
    wait_for(lambda: not client.get("aborted").active)
    aborted = client.get("aborted")
    assert (aborted.status, aborted.reason, aborted.exit_code) == (
        "terminated",
        "aborted by admin",
        137,
    )
    assert b"caught TERM" not in client.logs("aborted").data
