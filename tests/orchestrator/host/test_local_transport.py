"""The local Transport answers like a shell on an SSH host, so callers handle both the same."""

from __future__ import annotations

import asyncio

from iacrun.orchestrator.host.local import LocalTransport


def test_a_missing_command_is_exit_127_not_an_exception() -> None:
    rc, out, err = asyncio.run(LocalTransport().run(["no-such-tool-iacrun", "x"]))
    assert (rc, out) == (127, b"")
    assert err == b"no-such-tool-iacrun: command not found\n"


def test_a_command_runs_with_its_input() -> None:
    rc, out, _ = asyncio.run(LocalTransport().run(["cat"], input=b"hello"))
    assert (rc, out) == (0, b"hello")
