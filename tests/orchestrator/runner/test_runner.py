"""The stdlib runner, driven directly: the protocol of files every backend relies on."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from iacrun.orchestrator.runner import runner

RUNNER = Path(runner.__file__)


def start(run_dir: Path, **job: object) -> None:
    (run_dir / "code").mkdir(parents=True, exist_ok=True)
    spec = {"run_name": "t", "commands": ["true"], "env": {}, "stop_duration": 2, **job}
    (run_dir / "job.json").write_text(json.dumps(spec))
    (run_dir / "job.sh").write_text(runner.render_job_script(spec, str(run_dir)))
    subprocess.run(
        [sys.executable, str(RUNNER), "start", str(run_dir)], check=True, capture_output=True
    )


def wait_final(run_dir: Path, timeout: float = 30) -> dict[str, object]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        state = runner.RunFolder(str(run_dir)).read_state()
        if state.get("status") in runner.FINAL_STATUSES:
            return state
        time.sleep(0.05)
    raise AssertionError("the runner did not finish")


def test_files_of_a_finished_job(tmp_path: Path) -> None:
    start(tmp_path, commands=["echo out", "echo err >&2", "exit 9"], env={"A": "1"})
    state = wait_final(tmp_path)
    assert state["status"] == "failed" and state["exit_code"] == 9
    assert (tmp_path / "status").read_text() == "failed\n"
    assert (tmp_path / "exit_code").read_text() == "9\n"
    assert (tmp_path / "pid").read_text().strip().isdigit()
    log = (tmp_path / "log").read_text().splitlines()
    assert log[:2] == ["out", "err"] and log[-1] == "[iacrun] run failed: exited (9)"


def test_stop_request_uses_the_reason(tmp_path: Path) -> None:
    start(tmp_path, commands=["trap 'echo got-term; exit 0' TERM", "sleep 100 & wait"])
    time.sleep(0.5)
    done = subprocess.run(
        [sys.executable, str(RUNNER), "stop", str(tmp_path), "--reason", "stopped by user"],
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0
    state = wait_final(tmp_path)
    assert state["status"] == "terminated" and state["reason"] == "stopped by user"
    assert "got-term" in (tmp_path / "log").read_text()


def test_a_job_ignoring_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    start(tmp_path, commands=["trap '' TERM", "sleep 100"], max_duration=1, stop_duration=1)
    began = time.monotonic()
    state = wait_final(tmp_path)
    assert state["reason"] == "max duration exceeded" and state["status"] == "terminated"
    assert time.monotonic() - began < 10


def test_find_python(tmp_path: Path) -> None:
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert runner.find_python(version) is not None
    assert runner.find_python("2.1") is None
