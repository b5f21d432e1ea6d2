"""A real `iacrun server` for the CLI's remote-mode tests (tests/cli/test_remote.py)."""

from __future__ import annotations

import os
import select
import subprocess
import time
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
                admin.stop(run.name, abort=True)  # recorded at once; its supervisor ends it
            end = time.monotonic() + 60
            while admin.runs(active=True) and time.monotonic() < end:
                time.sleep(0.2)
            stop_server(running)


def read_until(proc: subprocess.Popen[bytes], marker: bytes, timeout: float = 90.0) -> bytes:
    """The CLI's stdout until `marker`; fails (never hangs) when it does not come in time."""
    assert proc.stdout is not None
    seen, end = b"", time.monotonic() + timeout
    while marker not in seen:
        left = end - time.monotonic()
        assert left > 0, f"no {marker!r} in {timeout:.0f}s; got {seen[-300:]!r}"
        ready, _, _ = select.select([proc.stdout], [], [], left)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 65536)
            assert chunk, f"the CLI ended before printing {marker!r}"
            seen += chunk
    return seen
