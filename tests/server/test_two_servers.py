"""Two servers on one database, one run: exactly one supervises it, and the other takes it over
when the first is killed (-9) and its lease expires. Two real processes, each a supervision pool
as `iacrun server` runs it (`python -m iacrun.server.supervision`), on the local backend."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from iacrun.orchestrator.api import Orchestrator
from iacrun.orchestrator.models.runspec import build_run_spec
from iacrun.orchestrator.registry import RunRecord
from tests.conftest import write_task

LEASE = "2"  # seconds: a killed server's runs are free again this long after its last beat


class PoolProcess:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "iacrun.server.supervision"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.owner = ""
        wait_for(lambda: "supervising as " in log.read_text(), what=f"{log.name} to start")
        line = next(x for x in log.read_text().splitlines() if "supervising as " in x)
        self.owner = line.split("supervising as ", 1)[1].strip()

    def kill(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def terminate(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


def wait_for(until: Callable[[], bool], *, what: str, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while not until():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def env(registry_target: str, tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ, IACRUN_HOME=str(tmp_path / "home"), PYTHONUNBUFFERED="1")
    env["IACRUN_SERVER_LEASE_SECONDS"] = LEASE
    env.pop("IACRUN_DATABASE_URL", None)
    if registry_target.startswith("postgresql://"):
        env["IACRUN_DATABASE_URL"] = registry_target
    return env


@pytest.fixture
def servers(env: dict[str, str]) -> Iterator[list[PoolProcess]]:
    started: list[PoolProcess] = []
    yield started
    for server in started:
        server.terminate()


def test_one_server_supervises_a_run_and_the_other_takes_it_over(
    env: dict[str, str],
    servers: list[PoolProcess],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key in ("IACRUN_HOME", "IACRUN_DATABASE_URL"):
        if key in env:
            monkeypatch.setenv(key, env[key])
        else:
            monkeypatch.delenv(key, raising=False)
    project = tmp_path / "project"
    project.mkdir()
    task = write_task(
        project, "commands:\n  - echo first half\n  - sleep 12\n  - echo second half\n"
    )
    orch = Orchestrator()
    registry = orch.registry
    first = PoolProcess(env, tmp_path / "first.log")
    servers.append(first)
    second = PoolProcess(env, tmp_path / "second.log")
    servers.append(second)

    spec = build_run_spec(task)
    run = orch.submit(spec, orch.plan(spec), supervise=False)  # as a server submits

    def get() -> RunRecord:
        return registry.get_by_id(run.id)

    wait_for(lambda: get().status == "running", what="the run to start")
    holder, other = (first, second) if get().lease_owner == first.owner else (second, first)
    assert get().lease_owner == holder.owner
    time.sleep(3 * float(LEASE))  # well past a lease: the holder renews it, the other waits
    assert get().lease_owner == holder.owner

    holder.kill()  # -9: no goodbye, its lease simply runs out
    wait_for(lambda: not get().active, what="the other server to take over and end the run")

    done = get()
    assert (done.status, done.exit_code) == ("done", 0), done.reason
    log = (Path(done.local_dir) / "log").read_text()
    assert "first half" in log and "second half" in log  # the job lived through the takeover
    events = (Path(done.local_dir) / "events").read_text()
    owners = [
        line.split("supervised by ", 1)[1]
        for line in events.splitlines()
        if "supervised by" in line
    ]
    assert owners == [holder.owner, other.owner]  # one at a time, never two at once
    assert events.count("taking the run over") == 1
    assert done.lease_owner is None  # released by the one that finished it
