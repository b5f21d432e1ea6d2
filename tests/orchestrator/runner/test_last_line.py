"""The runner's last line is in the log before its final state is: a follower that sees the run
ended (in the state, or in the registry that records it after the state) and reads the log once
more has every line, `[iacrun] run …` included. Each way a run ends is checked: the runner's own
end, a stop with the runner gone, and a run settled after its runner died."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from iacrun.orchestrator.runner import runner


@pytest.fixture
def saved_finals(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """(status, the log's last line) at each save of a final state."""
    seen: list[tuple[str, str]] = []
    save = runner.RunFolder.save_state

    def recording(folder: runner.RunFolder, state: dict[str, Any]) -> None:
        if state.get("status") in runner.FINAL_STATUSES:
            try:
                last = Path(folder.path("log")).read_text().splitlines()[-1]
            except (OSError, IndexError):
                last = ""
            seen.append((state["status"], last))
        save(folder, state)

    monkeypatch.setattr(runner.RunFolder, "save_state", recording)
    return seen


def run_folder(tmp_path: Path, **files: str) -> Path:
    (tmp_path / "job.json").write_text(
        json.dumps({"run_name": "t", "commands": ["true"], "env": {}, "stop_duration": 1})
    )
    (tmp_path / "state.json").write_text(json.dumps({"status": "running", "attempt": 1}))
    (tmp_path / "log").write_text("the job's line\n")
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return tmp_path


ENDS: dict[str, Callable[[Path], object]] = {
    "the runner's own end": lambda d: runner.Runner(str(d))._finish("done", 0),
    "a stop with the runner gone": lambda d: runner.stop(str(d), "stopped by user"),
    "settled after the runner died": lambda d: runner.settle(str(d)),
}


@pytest.mark.parametrize("end", list(ENDS))
def test_the_last_line_is_written_before_the_final_state(
    tmp_path: Path, saved_finals: list[tuple[str, str]], end: str
) -> None:
    ENDS[end](run_folder(tmp_path, job_exit="0\n"))
    assert len(saved_finals) == 1, saved_finals
    status, last = saved_finals[0]
    assert last.startswith(f"[iacrun] run {status}"), (end, last)
    assert Path(tmp_path / "log").read_text().splitlines()[-1] == last  # written once
