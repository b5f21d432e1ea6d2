"""Bytes relayed between two ends, fully async: a TCP stream and another one (a local forward),
or a TCP stream and a message channel (a WebSocket through an iacrun server).

Each end is a `Channel`: `receive` gives the next bytes, `b""` once its side has finished
sending (a half-close: TCP's FIN, or an empty message on a WebSocket), None when it is gone;
`send(b"")` passes such a half-close on. `splice(a, b)` copies both ways, one chunk in flight per
direction (a slow reader holds the writer back: backpressure, no buffer that grows), until both
directions have ended, or either end fails or goes away; then both ends are closed. Cancelling it
(a server that stops) closes both ends too.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

#: bytes read from a stream at a time (and the largest message a WebSocket carries)
CHUNK = 64 * 1024


class Channel(Protocol):
    async def receive(self) -> bytes | None:
        """The next bytes; b"" when the other side finished sending; None when it is gone."""

    async def send(self, data: bytes) -> None:
        """Send `data`, waiting while the receiver is behind; b"" says nothing more comes."""

    async def close(self) -> None:
        """Close this end (idempotent)."""


class ByteReader(Protocol):
    async def read(self, n: int = -1) -> bytes: ...


class ByteWriter(Protocol):
    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    def can_write_eof(self) -> bool: ...

    def write_eof(self) -> None: ...

    def close(self) -> None: ...


class StreamChannel:
    """A TCP connection as a `Channel`: asyncio's streams, or asyncssh's (a channel to a port
    on an SSH host)."""

    def __init__(self, reader: ByteReader, writer: ByteWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def receive(self) -> bytes | None:
        try:
            return await self.reader.read(CHUNK)
        except (ConnectionError, OSError):
            return None

    async def send(self, data: bytes) -> None:
        if not data:
            if self.writer.can_write_eof():
                self.writer.write_eof()
            return
        self.writer.write(data)
        await self.writer.drain()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()
        wait_closed = getattr(self.writer, "wait_closed", None)
        if wait_closed is not None:
            with contextlib.suppress(Exception):
                await wait_closed()


async def _pump(source: Channel, sink: Channel) -> bool:
    """Copy until `source` ends; True when it half-closed (passed on), False when it is gone."""
    while True:
        data = await source.receive()
        if data is None:
            return False
        await sink.send(data)
        if not data:
            return True


async def splice(a: Channel, b: Channel) -> None:
    """Relay both ways until both directions ended, or either end failed or went away; both
    ends are closed before this returns (or is cancelled)."""
    pumps = {asyncio.ensure_future(_pump(a, b)), asyncio.ensure_future(_pump(b, a))}
    try:
        pending = set(pumps)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if any(task.exception() is not None or not task.result() for task in done):
                return
    finally:
        for task in pumps:
            task.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)
        await asyncio.gather(a.close(), b.close(), return_exceptions=True)
