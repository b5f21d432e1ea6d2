"""Shared fixtures: an isolated IACRUN_HOME and HOME, and the real CLI run as a subprocess."""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from iacrun.orchestrator.models.runspec import RunSpec
    from iacrun.orchestrator.models.taskfile import RetrySpec

#: a real PostgreSQL (initdb in a temp folder) and the registry target over both databases
pytest_plugins = ["tests.pg"]

#: the real home's tool cache (the pulumi CLI built by tests/tools/get-pulumi), found before any
#: test gets a home of its own
os.environ.setdefault(
    "IACRUN_TOOLS_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "iacrun-tools")
)


_REAL_HOMES = sorted({os.path.expanduser("~"), pwd.getpwuid(os.getuid()).pw_dir})
#: the real home's files no test may change, and its folders no test may add to, looked up before
#: any test gets a home of its own
_REAL_FILES = sorted(os.path.join(home, ".ssh", "config") for home in _REAL_HOMES)
_REAL_FOLDERS = sorted(
    os.path.join(home, name) for home in _REAL_HOMES for name in (".iacrun", ".dstack")
)


def _snapshot(paths: list[str]) -> dict[str, tuple[int, bytes] | None]:
    out: dict[str, tuple[int, bytes] | None] = {}
    for path in paths:
        try:
            with open(path, "rb") as f:
                out[path] = (os.stat(path).st_mtime_ns, f.read())
        except FileNotFoundError:
            out[path] = None
    return out


def _entries(folders: list[str]) -> dict[str, int]:
    """Every path under `folders` (those that exist), the folders themselves included, with its
    modification time: a run folder made and removed again still changes its parent's."""
    found: dict[str, int] = {}
    for folder in folders:
        for where, dirs, files in os.walk(folder):
            for path in [where] + [os.path.join(where, name) for name in dirs + files]:
                with contextlib.suppress(FileNotFoundError):
                    found[path] = os.stat(path, follow_symlinks=False).st_mtime_ns
    return found


@pytest.fixture(autouse=True, scope="session")
def _real_home_untouched() -> Iterator[None]:
    """Fails the run if any test wrote the real `~/.ssh/config` (as iacrun's Include lines once
    did) or changed anything under the real `~/.iacrun` or `~/.dstack` (as the ssh tests' runs once
    did, in the sshd login's home): every test must use the temporary HOME that `_own_home` gives
    it, and every test sshd gives its sessions a temporary HOME too."""
    before, entries = _snapshot(_REAL_FILES), _entries(_REAL_FOLDERS)
    yield
    changed = [p for p, v in _snapshot(_REAL_FILES).items() if v != before[p]]
    after = _entries(_REAL_FOLDERS)
    changed += sorted(p for p in after if after[p] != entries.get(p))[:5]
    assert not changed, f"tests changed the real {', '.join(changed)}"


@pytest.fixture(autouse=True)
def _own_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets a temporary HOME and IACRUN_HOME: nothing a test runs (iacrun itself, a
    CLI subprocess, pulumi) can write into the real `~/.ssh/config`, `~/.iacrun` or `~/.dstack`.
    A server set in the caller's environment is dropped: the CLI works in-process unless a test
    sets one."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("IACRUN_HOME", str(home / ".iacrun"))
    monkeypatch.delenv("IACRUN_SERVER_URL", raising=False)
    monkeypatch.delenv("IACRUN_TOKEN", raising=False)


class Cli:
    """Runs `iacrun` as a user would: a separate process with its own environment."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env = env
        self.cwd = cwd

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "iacrun.cli.main", *args]

    def __call__(
        self, *args: str, timeout: float = 60, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args),
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            check=False,
        )

    def popen(self, *args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            self.argv(*args),
            env=self.env,
            cwd=self.cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A working folder (a git-less project) where task files go."""
    folder = tmp_path / "project"
    folder.mkdir()
    return folder


@pytest.fixture
def cli(tmp_path: Path, project: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cli]:
    home = tmp_path / "home"
    home.mkdir()
    env = dict(os.environ)
    env.update(HOME=str(home), IACRUN_HOME=str(home / ".iacrun"), PYTHONUNBUFFERED="1")
    monkeypatch.setenv("IACRUN_HOME", env["IACRUN_HOME"])
    monkeypatch.setenv("HOME", str(home))
    runner = Cli(env, project)
    yield runner
    # never leave a run behind: stop whatever a failing test left active
    subprocess.run(
        runner.argv("down", "--all"),
        env=env,
        cwd=project,
        capture_output=True,
        timeout=120,
        check=False,
    )


def write_task(
    folder: Path, text: str, name: str = "task.dstack.yml", *, typed: bool = True
) -> Path:
    """Write a task file; like dstack, iacrun needs `type: task`, added here unless the text has
    a `type:` line of its own or `typed` is False (to test a file without it)."""
    text = textwrap.dedent(text).lstrip()
    if typed and not re.search(r"^type:", text, re.MULTILINE):
        text = "type: task\n" + text
    path = folder / name
    path.write_text(text)
    return path


def command_spec(
    project: Path, *commands: str, name: str | None = None, retry: RetrySpec | None = None
) -> RunSpec:
    """A RunSpec of `commands` in `project`, built without a task file (no resources asked, a
    2 s stop grace): what the supervision tests submit."""
    from iacrun.orchestrator.models.requirements import Requirements
    from iacrun.orchestrator.models.runspec import RunSpec

    return RunSpec(
        run_name=name,
        config_path=str(project / "task.dstack.yml"),
        repo_dir=str(project),
        working_dir=".",
        image=None,
        python=None,
        commands=list(commands),
        env={},
        ports=[],
        requirements=Requirements(),
        retry=retry,
        max_duration=None,
        stop_duration=2,
    )
