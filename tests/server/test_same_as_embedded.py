"""A task's files reach the job the same way through a server as in embedded mode: the working
folder (its .gitignore honoured), `files` from outside it, and `working_dir` (the client's paths
are mapped to the server's copy in one place: host/payload.spec_on_server)."""

from __future__ import annotations

from pathlib import Path

from iacrun.orchestrator.api import Orchestrator
from iacrun.orchestrator.models.runspec import Overrides, build_run_spec
from tests.conftest import write_task
from tests.server.conftest import Server

TASK = """
working_dir: sub
files:
  - config.json:cfg/config.json
  - ../data:inputs
commands:
  - basename "$PWD"
  - (cd .. && find . -type f | sort)
  - cat hello.txt ../cfg/config.json ../inputs/a.csv
  - test ! -e ../inputs/big.bin && echo no-bin
  - test ! -e skip.log && echo no-log
  - stat -c '%a' run.sh
"""


def make_project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    (project / "sub").mkdir(parents=True)
    (project / "sub" / "hello.txt").write_text("hello\n")
    (project / "sub" / "skip.log").write_text("ignored\n")
    run_sh = project / "sub" / "run.sh"
    run_sh.write_text("#!/bin/sh\n")
    run_sh.chmod(0o755)
    (project / ".gitignore").write_text("*.log\n")
    (project / "config.json").write_text('{"lr": 0.1}\n')
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.csv").write_text("1,2\n")
    (data / "big.bin").write_text("no\n")
    (data / ".gitignore").write_text("*.bin\n")
    write_task(project, TASK)
    return project


def test_files_and_working_dir_run_identically_through_a_server_and_embedded(
    server: Server, tmp_path: Path
) -> None:
    project = make_project(tmp_path)
    spec = build_run_spec(project / "task.dstack.yml", Overrides(name="same"))

    orch = Orchestrator()
    run = orch.submit(spec, orch.plan(spec))
    embedded: list[bytes] = []
    final = orch.attach(run.name, embedded.append)
    assert final.status == "done", b"".join(embedded).decode()

    client = server.client()
    client.submit(spec)
    follow = client.follow("same")
    remote = b"".join(follow)
    assert follow.end is not None and follow.end.status == "done", follow.end

    assert remote.decode() == b"".join(embedded).decode()
    text = remote.decode()
    assert text.startswith(
        "sub\n./.gitignore\n./cfg/config.json\n./config.json\n./inputs/.gitignore\n"
        "./inputs/a.csv\n./sub/hello.txt\n./sub/run.sh\n./task.dstack.yml\n"
        'hello\n{"lr": 0.1}\n1,2\nno-bin\nno-log\n700\n'
    ), text
    assert remote == b"".join(embedded)
