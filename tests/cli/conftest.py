"""A real `iacrun server` for the CLI's remote-mode tests (tests/cli/test_remote.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.conftest import ADMIN_TOKEN, Server, start_server, stop_server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    env = dict(os.environ, IACRUN_SERVER_ADMIN_TOKEN=ADMIN_TOKEN)
    env.pop("IACRUN_DATABASE_URL", None)
    running = start_server(tmp_path / "server-home", env)
    try:
        yield running
    finally:
        if running.proc.poll() is None:  # never leave a run behind: stopped through the server
            admin = running.client()
            for run in admin.runs(active=True):
                admin.stop(run.name)
            stop_server(running)
