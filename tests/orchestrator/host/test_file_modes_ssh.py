"""On an SSH host the runs folder, the run's folder, its log, job and code are the SSH user's
alone (0700 folders, 0600 files), whatever the session's umask."""

from __future__ import annotations

import os
import posixpath
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.test_file_modes import loose
from tests.conftest import Cli, write_task
from tests.orchestrator.host.test_e2e import record, remote_run_dirs, ssh_cli, wait_for

pytestmark = [pytest.mark.sshd, pytest.mark.slow]
__all__ = ["ssh_cli"]  # the fixture, used by name


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_ssh_run_folder_is_private(umask_022: None, ssh_cli: Cli, project: Path) -> None:
    (project / "train.py").write_text("print('hi')\n")
    write_task(project, "env: [TOKEN=secret-2]\ncommands: [echo started, sleep 30]\n")
    done = ssh_cli("up", "-y", "-d", "-n", "modes", "task.dstack.yml")
    assert done.returncode == 0, done.stderr
    wait_for(lambda: record(ssh_cli, "modes")["status"] == "running", 60)
    (run_dir,) = remote_run_dirs(ssh_cli)
    wait_for(lambda: "started" in Path(run_dir, "log").read_text(), 30)
    runs_root = Path(posixpath.dirname(run_dir))
    assert oct(runs_root.stat().st_mode & 0o777) == "0o700"
    assert loose(Path(run_dir)) == []
    assert (Path(run_dir) / "code" / "train.py").exists()
