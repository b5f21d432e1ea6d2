"""Settling a run on this machine: in-process, as `runner.py settle` would on a remote host.

A supervisor settles every RUNNER_CHECK_SECONDS; started as a Python process each time, that was
most of the CPU of a server supervising hundreds of local runs (tests/bench/bench_supervision)."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

from iacrun.orchestrator.host.local import LocalTransport
from iacrun.orchestrator.host.runner_client import settle_state
from iacrun.orchestrator.host.transport import Host
from iacrun.orchestrator.runner import runner


class NoProcesses(LocalTransport):
    async def run(self, argv: list[str], *, input: bytes | None = None) -> tuple[int, bytes, bytes]:
        raise AssertionError(f"started a process: {argv}")


def test_a_local_run_whose_runner_died_is_settled_without_a_process(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    shutil.copy(runner.__file__, run_dir / "runner.py")
    (run_dir / "state.json").write_text(json.dumps({"status": "running", "attempt": 1}))
    (run_dir / "job_exit").write_text("3\n")  # the job ended; its runner died before noting it
    host = Host(kind="local", run_dir=str(run_dir))
    state = asyncio.run(settle_state(NoProcesses(), host))
    assert (state["status"], state["exit_code"]) == ("failed", 3)
    assert json.loads((run_dir / "state.json").read_text())["status"] == "failed"


def test_nothing_to_settle_before_the_runner_is_shipped(tmp_path: Path) -> None:
    host = Host(kind="local", run_dir=str(tmp_path))
    assert asyncio.run(settle_state(NoProcesses(), host)) == {}
