"""Following an ssh run again, and a busy local port, end to end against the test sshd.

The same checks as tests/cli/test_reattach.py and tests/cli/test_busy_port.py, through the ssh
backend: the log is read over SFTP and ports are forwarded over the SSH connection.
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.test_busy_port import check_attach_keeps_the_run, check_up_stops_the_run, taken
from tests.cli.test_reattach import gated_counter, kill_between_chunks_then_attach_again
from tests.conftest import Cli, write_task
from tests.orchestrator.host.sshd import Sshd
from tests.orchestrator.host.test_e2e import configure, host_entry, remote_run_dirs

pytestmark = [pytest.mark.sshd, pytest.mark.slow]

__all__ = ["taken"]  # the fixture, shared with the local tests


@pytest.fixture
def ssh_only(cli: Cli, sshd: Sshd) -> Iterator[Cli]:
    """The CLI with one ssh host, `loop`, and no local backend."""
    configure(cli, [host_entry(sshd)])
    yield cli
    cli("down", "--all", timeout=120)
    for run_dir in remote_run_dirs(cli):
        shutil.rmtree(run_dir, ignore_errors=True)


def test_attach_after_kill_9_gives_every_line_once(
    ssh_only: Cli, project: Path, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    write_task(project, gated_counter(gate))
    assert ssh_only("up", "-y", "-d", "-n", "counted", "task.dstack.yml").returncode == 0
    kill_between_chunks_then_attach_again(ssh_only, "counted", gate)


def test_up_stops_its_run_when_the_port_is_taken_after_the_check(
    ssh_only: Cli, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    check_up_stops_the_run(ssh_only, project, monkeypatch, "web")


def test_attach_with_a_busy_port_keeps_the_run_and_says_how(
    ssh_only: Cli, project: Path, taken: socket.socket
) -> None:
    check_attach_keeps_the_run(ssh_only, project, taken, "served")
