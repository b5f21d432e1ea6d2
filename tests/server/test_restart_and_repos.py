"""A server restart leaves runs running and the next server takes them over; a
task's local repo reaches the job through a server as its `git ls-files` listed it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from iacrun.orchestrator.runner.runner import pid_alive
from tests.cli.test_files_repos import git
from tests.conftest import write_task
from tests.server.conftest import Server, start_server, stop_server, wait_for
from tests.server.test_runs import spec_of


def test_runs_outlive_a_server_restart_and_are_supervised_again(
    server: Server, project: Path, server_env: dict[str, str]
) -> None:
    client = server.client()
    client.submit(spec_of(project, "commands:\n  - echo up\n  - sleep 300\n", "lasting"))
    wait_for(lambda: client.logs("lasting").data == b"up\n")
    registry = server.registry()
    before = registry.get("lasting")
    # supervised by a thread of the server, under its lease: no process of its own
    assert before.supervisor_pid is None and before.lease_owner is not None
    assert stop_server(server) == 0
    run = registry.get("lasting")
    assert run.status == "running"
    assert pid_alive(int((Path(run.local_dir) / "pid").read_text()))  # the job goes on
    again = start_server(server.home, server_env)
    server.proc, server.url, server.output = again.proc, again.url, again.output
    # the new server takes the run over once the stopped one's lease has expired
    wait_for(lambda: registry.get("lasting").lease_owner not in (None, before.lease_owner))
    events = (Path(run.local_dir) / "events").read_text()
    assert "taking the run over" in events
    stopped = server.client().stop("lasting")
    assert stopped.status == "terminated"


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_a_local_repo_ships_through_a_server_as_git_lists_it(
    server: Server, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / ".gitignore").write_text("*.tmp\n")
    (repo / "tracked.txt").write_text("committed\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "one")
    (repo / "tracked.txt").write_text("changed, not committed\n")
    (repo / "new.txt").write_text("untracked\n")
    (repo / "junk.tmp").write_text("ignored\n")
    task_dir = tmp_path / "tasks"
    task_dir.mkdir()
    write_task(
        task_dir,
        f"""
        repos:
          - local_path: {repo}
        commands:
          - cat tracked.txt new.txt
          - test ! -e junk.tmp && echo no-junk
          - ls -A | sort
        """,
    )
    from iacrun.orchestrator.models.runspec import Overrides, build_run_spec

    spec = build_run_spec(task_dir / "task.dstack.yml", Overrides(name="from-repo"))
    client = server.client()
    client.submit(spec)
    follow = client.follow("from-repo")
    log = b"".join(follow).decode()
    assert follow.end is not None and follow.end.status == "done", log
    assert log.startswith(
        "changed, not committed\nuntracked\nno-junk\n.gitignore\nnew.txt\ntracked.txt\n"
    ), log
