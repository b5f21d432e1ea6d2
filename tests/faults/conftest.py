"""The fault-injection harness's table (every case adds its row, printed after the tests) and
the real sshd the ssh cases run against."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faults.outcomes import OUTCOMES, render_table
from tests.orchestrator.host.sshd import Sshd, sshd_missing


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if OUTCOMES:
        terminalreporter.section("fault injection: phase x victim")
        for line in render_table(OUTCOMES):
            terminalreporter.write_line(line)


@pytest.fixture
def outcomes() -> list[dict[str, str]]:
    return OUTCOMES


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Sshd]:
    """A real OpenSSH sshd on 127.0.0.1, thawed (see test_ssh_faults.freeze) before it stops."""
    from tests.faults.test_ssh_faults import with_sshd_running

    reason = sshd_missing()
    if reason is not None:
        pytest.skip(reason)
    server = Sshd(tmp_path / "sshd")
    try:
        yield server.start()
    finally:
        with_sshd_running(server)
        server.stop()
