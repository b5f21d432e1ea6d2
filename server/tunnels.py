"""The server's side of a run's forwarded ports: each WebSocket of
`/api/v1/runs/{name}/ports/{port}` carries one TCP connection to that port of the run's job.

The port is reached the way `iacrun attach` reaches it in-process: through the run's host's
`Transport` (`Transport.connect_port`): 127.0.0.1 for a local-backend run, a direct-tcpip channel
over the host's SSH connection (its host key pinned) for an ssh or cloud run. `PortRelay` keeps
one transport per run's host, shared by every tunnel to it (twenty browser connections are
twenty channels on one SSH connection, not twenty SSH logins), and closes it `LINGER` seconds
after its last tunnel ended. The bytes are relayed by `host/relay.splice`: no thread, one chunk
in flight per direction. `close()`, at the server's shutdown, ends every tunnel and transport.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from starlette.websockets import WebSocket, WebSocketState

from iacrun.orchestrator.errors import PortClosedError
from iacrun.orchestrator.host.reconnecting import open_transport
from iacrun.orchestrator.host.relay import Channel, splice
from iacrun.orchestrator.host.transport import Host, Transport
from iacrun.orchestrator.registry import RunRecord

#: seconds a tunnel waits for the run's host's SSH to answer (at most: a host that takes
#: longer is refused, 503, before the client's own handshake times out)
CONNECT_WITHIN = 15.0
#: seconds a run's host's transport is kept after its last tunnel ended (a browser opens
#: connection after connection: each would cost an SSH login otherwise)
LINGER = 30.0


class WebSocketChannel:
    """A WebSocket as a `relay.Channel`: binary messages are the bytes, an empty one the
    sender's half-close; a text message breaks the protocol and ends the tunnel."""

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket
        self.gone = False

    async def receive(self) -> bytes | None:
        if self.gone:
            return None
        message = await self.websocket.receive()
        data = message.get("bytes") if message["type"] == "websocket.receive" else None
        if data is None:
            self.gone = message["type"] == "websocket.disconnect" or self.gone
            return None
        return bytes(data)

    async def send(self, data: bytes) -> None:
        await self.websocket.send_bytes(data)

    async def close(self) -> None:
        if self.gone or self.websocket.application_state == WebSocketState.DISCONNECTED:
            return
        self.gone = True
        with contextlib.suppress(Exception):
            await self.websocket.close()


@dataclass
class _Shared:
    opening: asyncio.Task[Transport]
    users: int = 0
    closing: asyncio.TimerHandle | None = field(default=None, repr=False)


class _Held:
    """A connection to a run's port that holds its host's shared transport until closed."""

    def __init__(self, channel: Channel, release: _Release) -> None:
        self.channel = channel
        self._release = release

    async def receive(self) -> bytes | None:
        return await self.channel.receive()

    async def send(self, data: bytes) -> None:
        await self.channel.send(data)

    async def close(self) -> None:
        try:
            await self.channel.close()
        finally:
            self._release()


class _Release:
    def __init__(self, relay: PortRelay, key: str) -> None:
        self.relay, self.key, self.done = relay, key, False

    def __call__(self) -> None:
        if not self.done:
            self.done = True
            self.relay._release(self.key)


class PortRelay:
    """Tunnels to runs' ports, over one shared transport per run's host."""

    def __init__(self, linger: float = LINGER) -> None:
        self.linger = linger
        self._shared: dict[str, _Shared] = {}
        self._tunnels: set[asyncio.Future[None]] = set()

    async def connect(self, run: RunRecord, host: Host, port: int) -> Channel:
        """A connection to 127.0.0.1:`port` on the run's host. PortClosedError when nothing
        listens there; HostUnreachableError (a BackendError) when the host cannot be reached."""
        key = f"{run.id}\0{host.model_dump_json()}"
        shared = self._shared.get(key)
        if shared is None:
            within = min(host.connect_timeout, CONNECT_WITHIN)
            reach = host.model_copy(update={"connect_timeout": within})
            shared = _Shared(asyncio.ensure_future(open_transport(reach)))
            self._shared[key] = shared
        shared.users += 1
        if shared.closing is not None:
            shared.closing.cancel()
            shared.closing = None
        release = _Release(self, key)
        try:
            transport = await asyncio.shield(shared.opening)
            channel = await transport.connect_port(port)
        except OSError as exc:
            release()
            why = exc.strerror or str(exc) or type(exc).__name__
            raise PortClosedError(
                f"nothing listens on port {port} of run {run.name} (yet?): {why}"
            ) from exc
        except BaseException:
            release()
            raise
        return _Held(channel, release)

    async def relay(self, upstream: Channel, client: Channel) -> None:
        """Relay until either side ends; cancelled (both closed) when the server stops."""
        task = asyncio.ensure_future(splice(upstream, client))
        self._tunnels.add(task)
        try:
            await task
        finally:
            self._tunnels.discard(task)

    def _release(self, key: str) -> None:
        shared = self._shared.get(key)
        if shared is None:
            return
        shared.users -= 1
        if shared.users > 0:
            return
        failed = shared.opening.done() and (
            shared.opening.cancelled() or shared.opening.exception() is not None
        )
        if failed:
            del self._shared[key]  # a host that could not be reached: the next try opens again
            return
        loop = asyncio.get_running_loop()
        shared.closing = loop.call_later(self.linger, self._close_idle, key)

    def _close_idle(self, key: str) -> None:
        shared = self._shared.get(key)
        if shared is not None and shared.users == 0:
            del self._shared[key]
            task = asyncio.ensure_future(_close(shared))
            self._tunnels.add(task)
            task.add_done_callback(self._tunnels.discard)

    async def close(self) -> None:
        """End every tunnel and close every transport (the server stops)."""
        for task in list(self._tunnels):
            task.cancel()
        await asyncio.gather(*self._tunnels, return_exceptions=True)
        shared, self._shared = list(self._shared.values()), {}
        await asyncio.gather(*(_close(s) for s in shared), return_exceptions=True)


async def _close(shared: _Shared) -> None:
    if shared.closing is not None:
        shared.closing.cancel()
    if not shared.opening.done():
        shared.opening.cancel()
    with contextlib.suppress(BaseException):
        transport = await shared.opening
        await transport.close()
