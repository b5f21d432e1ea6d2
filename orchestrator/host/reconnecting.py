"""Opening a transport to a run's host, and the SSH transport that survives dropped connections."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable

from iacrun.orchestrator.errors import HostUnreachableError
from iacrun.orchestrator.host.relay import Channel
from iacrun.orchestrator.host.transport import Host, Transport


async def open_transport(
    host: Host,
    *,
    give_up: Callable[[], bool] | None = None,
    reconnect_for: float | None = None,
) -> Transport:
    """A transport to the run's host: files here, or an SSH connection that reconnects.

    `give_up` is asked between connection tries (a follower passes "is the run final?", so it
    never waits on a machine that is gone); `reconnect_for` is how long a dropped connection is
    tried again (default: the host's connect timeout)."""
    if host.kind == "local":
        from iacrun.orchestrator.host.local import LocalTransport

        return LocalTransport()
    transport = ReconnectingTransport(host, give_up=give_up, reconnect_for=reconnect_for)
    await transport.connect()
    return transport


class ReconnectingTransport:
    """An SSH transport that survives a dropped connection.

    Reads (the log by offset, state files) and forwards are safe to repeat: after a drop they
    reconnect (within the host's connect timeout) and go on where they were, so no log line is
    lost or repeated. Commands and writes are not retried: their caller decides."""

    def __init__(
        self,
        host: Host,
        *,
        give_up: Callable[[], bool] | None = None,
        reconnect_for: float | None = None,
    ) -> None:
        self.host = host
        self.give_up = give_up
        self.reconnect_for = reconnect_for
        self._inner: Transport | None = None
        self._forwards: dict[int, int] = {}
        self._connected = False

    async def connect(self) -> Transport:
        from iacrun.orchestrator.host.connect import FILTERED_AFTER, connect

        booted = self.host.boot == "cloud-init"
        window = self.host.connect_timeout
        if self._connected and self.reconnect_for is not None:
            window = self.reconnect_for
        # a VM's sshd may answer before cloud-init installed the run's key: retry that too; a
        # new VM whose port never answers at all is behind a firewall: say so early (only on
        # the first connection: later, silence is more likely our own network going away)
        self._inner = await connect(
            self.host,
            deadline=time.monotonic() + window,
            retry_auth=booted,
            give_up=self.give_up,
            filtered_after=FILTERED_AFTER if booted and not self._connected else None,
        )
        self._connected = True
        for local, remote in self._forwards.items():
            await self._inner.forward(local, remote)
        return self._inner

    async def _current(self) -> Transport:
        return self._inner if self._inner is not None else await self.connect()

    async def _again(self) -> Transport:
        if self._inner is not None:
            with contextlib.suppress(Exception):
                await self._inner.close()
            self._inner = None
        return await self.connect()

    async def run(self, argv: list[str], *, input: bytes | None = None) -> tuple[int, bytes, bytes]:
        return await (await self._current()).run(argv, input=input)

    async def upload(self, local_path: str, remote_path: str) -> None:
        await (await self._current()).upload(local_path, remote_path)

    async def write_file(self, remote_path: str, data: bytes, mode: int = 0o644) -> None:
        await (await self._current()).write_file(remote_path, data, mode)

    async def read_file(self, remote_path: str) -> bytes | None:
        try:
            return await (await self._current()).read_file(remote_path)
        except HostUnreachableError:
            return await (await self._again()).read_file(remote_path)

    async def read_from(self, remote_path: str, offset: int, limit: int) -> bytes:
        try:
            return await (await self._current()).read_from(remote_path, offset, limit)
        except HostUnreachableError:
            return await (await self._again()).read_from(remote_path, offset, limit)

    async def forward(self, local_port: int, remote_port: int) -> Callable[[], Awaitable[None]]:
        stop = await (await self._current()).forward(local_port, remote_port)
        self._forwards[local_port] = remote_port

        async def stop_forward() -> None:
            self._forwards.pop(local_port, None)
            with contextlib.suppress(Exception):
                await stop()

        return stop_forward

    async def connect_port(self, remote_port: int) -> Channel:
        """Safe to repeat too: a connection that dropped is made again once for it."""
        try:
            return await (await self._current()).connect_port(remote_port)
        except HostUnreachableError:
            return await (await self._again()).connect_port(remote_port)

    def abort(self) -> None:
        """Drop the connection at once, without waiting on a host that does not answer; the
        next call connects again."""
        inner, self._inner = self._inner, None
        if inner is not None and hasattr(inner, "abort"):
            inner.abort()

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()
            self._inner = None
