"""A run's log through Server-Sent Events: ids are byte offsets, a client killed mid-stream (a
real separate process, SIGKILL) resumes with Last-Event-ID, and the bytes before + after are the
log file, byte for byte: 10 MB of every byte value, UTF-8 or not."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx

from tests.server.conftest import Server, wait_for
from tests.server.test_runs import spec_of

#: 100 writes of 100 KiB (every byte value, 400 times), 20 ms apart: 10 MiB over ~2 s
NOISY = (
    "import sys, time; [(sys.stdout.buffer.write(bytes(range(256)) * 400), sys.stdout.flush(), "
    "time.sleep(0.02)) for _ in range(100)]"
)
NOISY_TASK = f"commands:\n  - python3 -c '{NOISY}'\n"
LOG_BYTES = 100 * 256 * 400

FOLLOWER = textwrap.dedent(
    """
    import sys
    from iacrun.client import Client

    url, token, name, offset, out = sys.argv[1:]
    follow = Client(url, token).follow(name, int(offset))
    with open(out, "ab", buffering=0) as f:
        for chunk in follow:
            f.write(chunk)
    assert follow.end is not None
    print(follow.end.status, follow.end.exit_code)
    """
)


def follower(server: Server, name: str, offset: int, out: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", FOLLOWER, server.url, server.admin_token, name, str(offset), out],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_killed_client_resumes_exactly_where_it_stopped(
    server: Server, project: Path, tmp_path: Path
) -> None:
    client = server.client()
    client.submit(spec_of(project, NOISY_TASK, "noisy"))
    out = tmp_path / "received"
    first = follower(server, "noisy", 0, out)
    try:
        wait_for(lambda: out.exists() and out.stat().st_size > 1024 * 1024)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    before = out.stat().st_size
    assert 0 < before < LOG_BYTES  # killed mid-stream
    second = follower(server, "noisy", before, out)
    stdout, stderr = second.communicate(timeout=120)
    assert second.returncode == 0, stderr
    assert stdout.split() == ["done", "0"]
    run = client.get("noisy")
    assert run.host is not None
    log = (Path(run.host.run_dir) / "log").read_bytes()
    assert len(log) >= LOG_BYTES
    received = out.read_bytes()
    assert len(received) == len(log)
    assert received == log


def test_event_ids_are_offsets_and_last_event_id_resumes_anywhere(
    server: Server, project: Path
) -> None:
    client = server.client()
    client.submit(
        spec_of(project, "commands:\n  - printf 'caf\\xc3\\xa9 \\xff\\xfe\\n'\n", "bytes")
    )
    assert b"".join(client.follow("bytes")).startswith(b"caf\xc3\xa9 \xff\xfe\n")
    run = client.get("bytes")
    assert run.host is not None
    log = (Path(run.host.run_dir) / "log").read_bytes()
    headers = {"Authorization": f"Bearer {server.admin_token}", "Last-Event-ID": "4"}
    response = httpx.get(f"{server.url}/api/v1/runs/bytes/logs/stream", headers=headers)
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [
        dict(line.split(": ", 1) for line in block.splitlines())
        for block in response.text.strip().split("\n\n")
    ]
    assert [e["event"] for e in events] == ["log", "end"]
    assert base64.b64decode(events[0]["data"]) == log[4:]
    assert int(events[0]["id"]) == len(log)
    assert json.loads(events[1]["data"]) == {
        "status": "done",
        "exit_code": 0,
        "reason": "exited (0)",
    }
    # the plain GET, by offset
    plain = httpx.get(
        f"{server.url}/api/v1/runs/bytes/logs?offset=4",
        headers={"Authorization": f"Bearer {server.admin_token}"},
    )
    assert plain.content == log[4:]
    assert plain.headers["X-Log-Offset"] == str(len(log))
    assert plain.headers["X-Run-Status"] == "done"


def test_a_client_that_leaves_ends_the_reader_of_a_local_run(project: Path) -> None:
    import asyncio
    import threading

    from iacrun.orchestrator.api import Orchestrator
    from iacrun.server.logstream import log_events

    orch = Orchestrator()
    spec = spec_of(project, "commands:\n  - echo first\n  - sleep 300\n", "quiet")
    orch.submit(spec, orch.plan(spec))

    def readers() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "log-quiet"]

    async def read_one_then_leave() -> bytes:
        events = log_events(orch, "quiet", 0)
        first = await anext(events)
        assert readers()  # following a run that goes on
        await events.aclose()
        return first

    try:
        first = asyncio.run(read_one_then_leave())
        assert b"event: log" in first and base64.b64encode(b"first\n") in first
        wait_for(lambda: not readers(), timeout=10)
    finally:
        orch.stop("quiet")
