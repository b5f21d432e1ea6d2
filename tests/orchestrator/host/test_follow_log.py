"""`follow_log` hands on every byte once, up to the run's very end, however the end is seen."""

from __future__ import annotations

import asyncio
from pathlib import Path

from iacrun.orchestrator.host.local import LocalTransport
from iacrun.orchestrator.host.runner_client import follow_log
from iacrun.orchestrator.host.transport import Host


def test_lines_written_just_before_the_registry_says_ended_are_not_lost(tmp_path: Path) -> None:
    """The runner writes its last line, then its final state; the supervisor then records the
    run as ended. A follower that reads the log, finds no final state yet, and then learns from
    the registry that the run ended, still reads the line written in between (an attach once
    ended without the runner's `[iacrun] run done` line)."""
    log = tmp_path / "log"
    log.write_bytes(b"first\n")
    host = Host(kind="local", run_dir=str(tmp_path))

    def ended() -> bool:  # as the registry sees it, once the runner has finished meanwhile
        with log.open("ab") as f:
            f.write(b"[iacrun] run done: exited (0)\n")
        return True

    got: list[bytes] = []
    offset, _ = asyncio.run(follow_log(LocalTransport(), host, 0, got.append, until=ended))
    assert b"".join(got) == b"first\n[iacrun] run done: exited (0)\n"
    assert offset == log.stat().st_size
