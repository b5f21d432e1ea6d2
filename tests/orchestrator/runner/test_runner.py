"""The stdlib runner, driven directly: the protocol of files every backend relies on."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

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


# ----------------------------------------------------------------------------- python discovery

#: the running interpreter's version: fake trees link to it, so the version check passes for real
VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"


def fake_interpreter(bin_dir: Path) -> Path:
    """A symlink to this interpreter named `pythonX.Y` in `bin_dir`, as the real layouts have."""
    bin_dir.mkdir(parents=True)
    link = bin_dir / f"python{VERSION}"
    link.symlink_to(sys.executable)
    return link


@pytest.fixture
def bare(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No pythonX.Y on PATH, and none of the variables set: only the tree a test makes counts
    (before /usr/bin, which is the last place looked)."""
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    for name in ("PYENV_ROOT", "UV_PYTHON_INSTALL_DIR", "XDG_DATA_HOME"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def test_find_python_in_pyenv_root(bare: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = bare / "elsewhere" / "pyenv"
    link = fake_interpreter(root / "versions" / f"{VERSION}.4" / "bin")
    monkeypatch.setenv("PYENV_ROOT", str(root))
    assert runner.find_python(VERSION) == str(link)


def test_find_python_in_the_default_pyenv(bare: Path) -> None:
    link = fake_interpreter(Path.home() / ".pyenv" / "versions" / f"{VERSION}.1" / "bin")
    assert runner.find_python(VERSION) == str(link)


def test_find_python_in_uv_install_dir(bare: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = bare / "uv-pythons"
    link = fake_interpreter(root / f"cpython-{VERSION}.2-linux-x86_64-gnu" / "bin")
    monkeypatch.setenv("UV_PYTHON_INSTALL_DIR", str(root))
    assert runner.find_python(VERSION) == str(link)


def test_find_python_in_uv_under_xdg_data_home(bare: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = bare / "xdg-data"
    link = fake_interpreter(
        data / "uv" / "python" / f"cpython-{VERSION}.9-macos-aarch64-none" / "bin"
    )
    monkeypatch.setenv("XDG_DATA_HOME", str(data))
    assert runner.find_python(VERSION) == str(link)


def test_find_python_in_uv_default_dir(bare: Path) -> None:
    base = Path.home() / ".local" / "share" / "uv" / "python"
    link = fake_interpreter(base / f"cpython-{VERSION}.0-linux-x86_64-gnu" / "bin")
    assert runner.find_python(VERSION) == str(link)


def test_find_python_prefers_the_newest_patch_release(
    bare: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = bare / "pyenv"
    fake_interpreter(root / "versions" / f"{VERSION}.2" / "bin")
    newest = fake_interpreter(root / "versions" / f"{VERSION}.10" / "bin")
    monkeypatch.setenv("PYENV_ROOT", str(root))
    assert runner.find_python(VERSION) == str(newest)
