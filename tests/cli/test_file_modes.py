"""What iacrun writes is its user's alone: files 0600, folders 0700, whatever the umask, and even
when `~/.iacrun` existed before with 0755 (registry.db holds env values in clear)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.test_local_runs import ps, wait_for
from tests.conftest import Cli, write_task


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


def loose(root: Path, skip: tuple[str, ...] = ()) -> list[str]:
    """Paths under `root` (and root) that anyone but their owner can read, write or enter."""
    found = []
    for path in [root, *root.rglob("*")]:
        if any(part in skip for part in path.relative_to(root).parts):
            continue
        if path.is_symlink():
            continue
        mode = stat.S_IMODE(path.lstat().st_mode)
        if mode & 0o077:
            found.append(f"{path.relative_to(root.parent)} {mode:o}")
    return found


def test_local_run_files_are_private(cli: Cli, project: Path, umask_022: None) -> None:
    home = Path(cli.env["IACRUN_HOME"])
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)  # a home made before, by hand or an older version
    (project / "data.txt").write_text("shipped with the run\n")
    write_task(project, "env: [TOKEN=secret-token-1]\ncommands: [echo hi, sleep 30]\n")
    done = cli("up", "-y", "-d", "-n", "modes", "task.dstack.yml")
    assert done.returncode == 0, done.stderr
    wait_for(lambda: ps(cli)["modes"]["status"] == "running")
    wait_for(lambda: "hi" in cli("logs", "modes").stdout)
    # the job's own files (its code, what it writes) keep the user's umask: skip `code`
    assert loose(home, skip=("code",)) == []
    stopped = cli("stop", "modes", timeout=120)
    assert stopped.returncode == 0, stopped.stderr
    assert loose(home, skip=("code",)) == []


def test_the_job_keeps_the_users_umask(cli: Cli, project: Path, umask_022: None) -> None:
    write_task(project, "commands: [umask, touch made-by-job]\n")
    done = cli("up", "-y", "-n", "mask", "task.dstack.yml")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "0022"
