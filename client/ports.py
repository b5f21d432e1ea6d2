"""A run's ports through an iacrun server: `open_port` opens one TCP connection to a task port
as a WebSocket (`WS /api/v1/runs/{name}/ports/{port}`, server/routes/ports.py), and `Forwards`
listens on 127.0.0.1 here and opens one such WebSocket per connection it accepts, as
`ssh -L` does per connection in-process.

The bytes go through `host/relay.splice` (no thread per connection: one event loop in one
thread for every forward, one chunk in flight per direction). `websockets` is imported here
only, and this module only when a command forwards a port.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import threading
from collections.abc import Callable
from urllib.parse import quote

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI, WebSocketException

from iacrun.client.errors import error_of
from iacrun.orchestrator.errors import IacrunError, ServerUnreachableError
from iacrun.orchestrator.host.ports import LocalPortBusyError, check_local_ports_free
from iacrun.orchestrator.host.relay import CHUNK, StreamChannel, splice

#: seconds a tunnel's handshake with the server may take
OPEN_TIMEOUT = 30.0


class PortChannel:
    """A tunnel's WebSocket as a `relay.Channel`: binary messages are the bytes, an empty one
    a half-close."""

    def __init__(self, websocket: ClientConnection) -> None:
        self.websocket = websocket

    async def receive(self) -> bytes | None:
        try:
            message = await self.websocket.recv()
        except ConnectionClosed:
            return None
        return message if isinstance(message, bytes) else None

    async def send(self, data: bytes) -> None:
        await self.websocket.send(data)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.websocket.close()


def port_url(url: str, name: str, port: int) -> str:
    """The tunnel's ws:// (or wss://, behind TLS) URL on the server at `url`."""
    scheme, _, rest = url.rstrip("/").partition("://")
    ws = {"http": "ws", "https": "wss"}.get(scheme.lower(), scheme)
    return f"{ws}://{rest}/api/v1/runs/{quote(name, safe='')}/ports/{port}"


async def open_port(url: str, token: str | None, name: str, port: int) -> PortChannel:
    """A connection to task port `port` of run `name` through the server at `url`; the
    server's refusal raised as iacrun's error tree."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        websocket = await connect(
            port_url(url, name, port),
            additional_headers=headers,
            open_timeout=OPEN_TIMEOUT,
            max_size=4 * CHUNK,
            compression=None,  # the bytes are the task's: often compressed already
        )
    except InvalidStatus as exc:  # the server refused before the tunnel opened
        raise error_of(exc.response.status_code, bytes(exc.response.body or b"")) from exc
    except (OSError, TimeoutError, InvalidURI, WebSocketException) as exc:
        raise ServerUnreachableError(
            f"the iacrun server at {url} does not answer ({exc or type(exc).__name__}); "
            "check the URL and that it runs"
        ) from exc
    return PortChannel(websocket)


class Forwards:
    """Local ports forwarded to a run's ports through the server, from one thread with its
    own event loop (the caller, the CLI, follows the log meanwhile)."""

    def __init__(
        self,
        url: str,
        token: str | None,
        name: str,
        on_note: Callable[[str], None] | None = None,
    ) -> None:
        self.url, self.token, self.name = url, token, name
        self.on_note = on_note or (lambda line: None)
        self._said: set[str] = set()
        self._servers: list[asyncio.Server] = []
        self._tunnels: set[asyncio.Task[None]] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"iacrun-ports-{name}", daemon=True
        )
        self._thread.start()

    def forward(self, local_port: int, task_port: int) -> None:
        """Listen on 127.0.0.1:`local_port`: each connection goes to `task_port` of the run.
        LocalPortBusyError (naming the task port) when something here holds the local port."""
        listening = asyncio.run_coroutine_threadsafe(
            self._listen(local_port, task_port), self._loop
        )
        listening.result()

    async def _listen(self, local_port: int, task_port: int) -> None:
        try:
            check_local_ports_free([local_port])
            server = await asyncio.start_server(
                lambda r, w: self._accepted(task_port, r, w), "127.0.0.1", local_port
            )
        except LocalPortBusyError as exc:
            raise LocalPortBusyError([local_port], task_port=task_port) from exc
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            raise LocalPortBusyError([local_port], task_port=task_port) from exc
        self._servers.append(server)

    async def _accepted(
        self, task_port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tunnels.add(task)
        here = StreamChannel(reader, writer)
        try:
            try:
                there = await open_port(self.url, self.token, self.name, task_port)
            except IacrunError as exc:
                self._note(f"port {task_port} of the task: {exc}")
                await here.close()
                return
            await splice(here, there)
        except asyncio.CancelledError:  # the forwards close: this connection ends with them
            await here.close()
        finally:
            self._tunnels.discard(task)

    def _note(self, line: str) -> None:
        """Said once per forward (a browser retrying must not flood the terminal)."""
        if line not in self._said:
            self._said.add(line)
            self.on_note(line)

    def close(self) -> None:
        """Stop listening, end every connection, and the thread."""
        if not self._thread.is_alive():
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _close(self) -> None:
        for server in self._servers:
            server.close()
        for task in list(self._tunnels):
            task.cancel()
        await asyncio.gather(*self._tunnels, return_exceptions=True)
        for server in self._servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()

    def __enter__(self) -> Forwards:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
