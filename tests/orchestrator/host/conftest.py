"""Fixtures: a real OpenSSH sshd on 127.0.0.1 (see sshd.py), skipped where sshd is missing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.orchestrator.host.sshd import Sshd, sshd_missing


def _require_sshd() -> None:
    reason = sshd_missing()
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    """One server shared by a test module; tests must not stop it."""
    _require_sshd()
    with Sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


@pytest.fixture
def own_sshd(tmp_path: Path) -> Iterator[Sshd]:
    """A server of the test's own, which it may stop and restart."""
    _require_sshd()
    server = Sshd(tmp_path / "sshd")
    try:
        yield server.start()
    finally:
        server.stop()
