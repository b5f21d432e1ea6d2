"""A run's log (its master's, or one node's of a multi-node run) as Server-Sent Events, by
byte offset.

Each event: `id: <the byte offset after this chunk>`, `event: log`, `data: <the chunk, base64>`
(base64, because a log is bytes: any byte, UTF-8 or not, comes through exactly). A client that
lost the connection reconnects with `Last-Event-ID: <the last id it got>` (or `?offset=`) and gets
the bytes from there: before + after is the log, byte for byte. When the run is final and its log
drained, a last `event: end` carries `{"status", "exit_code", "reason"}` as JSON (its id is the
log's length).

The log is read by the same Orchestrator.logs the CLI follows with, in a thread of its own (it
blocks on the host); chunks cross to the event loop through a bounded queue, so a slow client
slows the reader instead of filling the memory.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from collections.abc import AsyncIterator

from iacrun.orchestrator.api import Orchestrator
from iacrun.orchestrator.registry import RunRecord

#: the most bytes in one event (a host's read can be larger: it is split)
EVENT_BYTES = 1024 * 1024
#: how often a run with no host yet, or a local run's log, is looked at again
WAIT_POLL = 0.1
#: a comment line sent when nothing else was for this long, so proxies keep the stream open
KEEPALIVE = 15.0


class _Closed(Exception):
    """The client went away: the reader thread stops."""


def sse_event(event: str, event_id: int, data: str) -> bytes:
    return f"id: {event_id}\nevent: {event}\ndata: {data}\n\n".encode()


def end_data(run: RunRecord) -> str:
    return json.dumps(
        {"status": run.status.value, "exit_code": run.exit_code, "reason": run.reason}
    )


def read_log(
    orch: Orchestrator, name: str, offset: int, push: _Push, *, node: int = 0
) -> RunRecord:
    """Hand the log of the run's node `node` (0: the master) from `offset` to `push` until the
    run is final and the log drained (a node whose machine is not there yet is waited for);
    returns the final record. Blocking: runs in a thread, which ends soon after the client
    left (`push.closed`): at once for a run on this machine (its log is read in polls), at the
    next chunk or the run's end for a remote one (followed over one connection)."""
    reached = offset
    while True:
        run = orch.get(name)
        final = run.status.is_final
        local = run.host is not None and run.host.kind == "local"
        before = reached
        # no machine yet: look again in a poll (following would wait for it, then hold on to a
        # run on this machine, whose log is read in polls so that a client that left ends it)
        follow = not (final or local) and run.host is not None
        reached, run = orch.logs(
            name, push, offset=reached, follow=follow, node=node, give_up=push.closed.is_set
        )
        if final or orch.get(name).status.is_final:
            # what the machine wrote last is in the copy kept at teardown: drain it
            reached, _ = orch.logs(name, push, offset=reached, node=node)
            return orch.get(name)
        if reached == before and push.closed.wait(WAIT_POLL):
            raise _Closed  # nothing new (or no host yet): look again, unless the client left


class _Push:
    """The reader thread's sink: each chunk into the loop's queue, waiting while it is full."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[bytes | None]):
        self.loop = loop
        self.queue = queue
        self.closed = threading.Event()

    def __call__(self, chunk: bytes) -> None:
        for start in range(0, len(chunk), EVENT_BYTES):
            if self.closed.is_set():
                raise _Closed
            part = chunk[start : start + EVENT_BYTES]
            asyncio.run_coroutine_threadsafe(self.queue.put(part), self.loop).result()


async def log_events(
    orch: Orchestrator, name: str, offset: int, *, node: int = 0
) -> AsyncIterator[bytes]:
    """The SSE byte stream of the log of the run's node `node` (0: the master) from `offset`,
    ending with `event: end`."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=8)
    push = _Push(loop, queue)
    outcome: dict[str, RunRecord | BaseException] = {}

    def reader() -> None:
        try:
            outcome["run"] = read_log(orch, name, offset, push, node=node)
        except _Closed:
            return
        except BaseException as exc:  # told to the stream, which ends
            outcome["error"] = exc
        asyncio.run_coroutine_threadsafe(queue.put(None), loop).result()

    thread = threading.Thread(target=reader, name=f"log-{name}", daemon=True)
    thread.start()
    position = offset
    try:
        while True:
            try:
                chunk = await asyncio.wait_for(queue.get(), KEEPALIVE)
            except TimeoutError:
                yield b": keep-alive\n\n"
                continue
            if chunk is None:
                break
            position += len(chunk)
            yield sse_event("log", position, base64.b64encode(chunk).decode())
        run = outcome.get("run")
        if isinstance(run, RunRecord):
            yield sse_event("end", position, end_data(run))
        else:
            error = outcome.get("error")
            message = json.dumps({"type": type(error).__name__, "message": str(error)})
            yield sse_event("error", position, message)
    finally:
        push.closed.set()
        while not queue.empty():  # a reader waiting on a full queue sees the close
            queue.get_nowait()
