"""`SSHTransport`: the `Transport` protocol over one asyncssh connection and its SFTP session.

Open one with `iacrun.orchestrator.host.connect.connect(host)`. Every asyncssh error is translated
here, at one seam (`map_ssh_errors`): a lost connection becomes `HostUnreachableError`, a refused
file operation `BackendError`, a busy local port `InputError`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import shlex
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

import asyncssh

from iacrun.orchestrator.errors import BackendError, HostUnreachableError, IacrunError
from iacrun.orchestrator.host.ports import check_local_ports_free
from iacrun.orchestrator.host.relay import Channel, StreamChannel

__all__ = ["SSHTransport", "check_local_ports_free", "map_ssh_errors"]

#: open SFTP handles kept for `read_from`, so following a log costs one request per read
_MAX_READERS = 16
_PART_MARK = ".part-"


@contextlib.contextmanager
def map_ssh_errors(label: str, action: str) -> Iterator[None]:
    """Translate asyncssh and socket errors raised while doing `action` on host `label`."""
    try:
        yield
    except IacrunError:
        raise
    except (asyncssh.SFTPConnectionLost, asyncssh.SFTPNoConnection) as exc:
        raise HostUnreachableError(
            f"lost the connection to {label} during {action}: {exc.reason}"
        ) from exc
    except asyncssh.SFTPError as exc:
        raise BackendError(f"{action} on {label} failed: {exc.reason}") from exc
    except (asyncssh.Error, ConnectionError, EOFError) as exc:
        raise HostUnreachableError(
            f"lost the connection to {label} during {action}: {exc or type(exc).__name__}"
        ) from exc


def partial_name(remote_path: str) -> str:
    """The hidden name an upload is written under before it is renamed into place."""
    folder, base = posixpath.split(remote_path)
    return posixpath.join(folder, f".{base}{_PART_MARK}{uuid.uuid4().hex[:12]}")


class SSHTransport:
    """Files and processes on an SSH host (see `Transport` in backends/base.py)."""

    def __init__(
        self,
        conn: asyncssh.SSHClientConnection,
        *,
        label: str,
        tunnels: Sequence[asyncssh.SSHClientConnection] = (),
    ) -> None:
        self._conn = conn
        self.label = label
        self._tunnels = list(tunnels)
        self._sftp: asyncssh.SFTPClient | None = None
        self._readers: OrderedDict[str, asyncssh.SFTPClientFile] = OrderedDict()

    # ------------------------------------------------------------------ processes

    async def run(self, argv: list[str], *, input: bytes | None = None) -> tuple[int, bytes, bytes]:
        """Run `argv` (shell-quoted) on the host; a job killed by a signal reports 255, as ssh."""
        with map_ssh_errors(self.label, f"running {argv[0]}"):
            result = await self._conn.run(shlex.join(argv), input=input, encoding=None, check=False)
        status = result.exit_status if result.exit_status is not None else 255
        return status, _as_bytes(result.stdout), _as_bytes(result.stderr)

    # ------------------------------------------------------------------ files

    async def upload(self, local_path: str, remote_path: str) -> None:
        """Copy under a hidden partial name, then rename: a half upload never has the final name.

        Partial files left by an earlier interrupted upload to the same path are removed first.
        """
        if not os.path.isfile(local_path):
            raise BackendError(f"cannot upload {local_path}: no such file here")
        sftp = await self._sftp_client()
        tmp = partial_name(remote_path)
        with map_ssh_errors(self.label, f"uploading {os.path.basename(local_path)}"):
            await self._prepare_parent(sftp, remote_path)
            try:
                await sftp.put(local_path, tmp)
                await sftp.posix_rename(tmp, remote_path)
            except BaseException:
                with contextlib.suppress(Exception):
                    await sftp.remove(tmp)
                raise

    async def write_file(self, remote_path: str, data: bytes, mode: int = 0o644) -> None:
        sftp = await self._sftp_client()
        tmp = partial_name(remote_path)
        with map_ssh_errors(self.label, f"writing {remote_path}"):
            parent = posixpath.dirname(remote_path)
            if parent:
                await sftp.makedirs(parent, exist_ok=True)
            try:
                attrs = asyncssh.SFTPAttrs(permissions=mode)
                async with sftp.open(tmp, "wb", attrs) as f:
                    await f.write(data)
                await sftp.chmod(tmp, mode)  # the server's umask applied to the open
                await sftp.posix_rename(tmp, remote_path)
            except BaseException:
                with contextlib.suppress(Exception):
                    await sftp.remove(tmp)
                raise

    async def read_file(self, remote_path: str) -> bytes | None:
        sftp = await self._sftp_client()
        with map_ssh_errors(self.label, f"reading {remote_path}"):
            try:
                async with sftp.open(remote_path, "rb") as f:
                    return _as_bytes(await f.read())
            except asyncssh.SFTPNoSuchFile:
                return None

    async def read_from(self, remote_path: str, offset: int, limit: int) -> bytes:
        """Up to `limit` bytes from `offset`; the file stays open for the next read."""
        with map_ssh_errors(self.label, f"reading {remote_path}"):
            reader = await self._reader(remote_path)
            if reader is None:
                return b""
            try:
                return _as_bytes(await reader.read(limit, offset))
            except asyncssh.SFTPError:
                await self._drop_reader(remote_path)
                raise

    # ------------------------------------------------------------------ ports

    async def forward(self, local_port: int, remote_port: int) -> Callable[[], Awaitable[None]]:
        """Listen on 127.0.0.1:local_port here; connections go to 127.0.0.1:remote_port there."""
        check_local_ports_free([local_port])
        with map_ssh_errors(self.label, f"forwarding port {local_port}"):
            try:
                listener = await self._conn.forward_local_port(
                    "127.0.0.1", local_port, "127.0.0.1", remote_port
                )
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    check_local_ports_free([local_port])  # raises the user-facing InputError
                raise

        async def stop() -> None:
            listener.close()
            with contextlib.suppress(Exception):
                await listener.wait_closed()

        return stop

    async def connect_port(self, remote_port: int) -> Channel:
        """A direct-tcpip channel to 127.0.0.1:remote_port there (what `ssh -L` opens per
        connection), over this transport's one connection."""
        with map_ssh_errors(self.label, f"connecting to port {remote_port}"):
            try:
                reader, writer = await self._conn.open_connection("127.0.0.1", remote_port)
            except asyncssh.ChannelOpenError as exc:  # the host's sshd could not connect there
                raise ConnectionRefusedError(
                    errno.ECONNREFUSED, f"{self.label} refused port {remote_port}: {exc.reason}"
                ) from exc
        return StreamChannel(reader, writer)

    # ------------------------------------------------------------------ lifetime

    async def close(self) -> None:
        for path in list(self._readers):
            await self._drop_reader(path)
        if self._sftp is not None:
            self._sftp.exit()
            with contextlib.suppress(Exception):
                await self._sftp.wait_closed()
            self._sftp = None
        for conn in [self._conn, *reversed(self._tunnels)]:
            conn.close()
            with contextlib.suppress(Exception):
                await conn.wait_closed()

    def abort(self) -> None:
        """Drop the connection at once, as a network failure would (tests, benchmarks)."""
        self._conn.abort()

    # ------------------------------------------------------------------ helpers

    async def _sftp_client(self) -> asyncssh.SFTPClient:
        if self._sftp is None:
            with map_ssh_errors(self.label, "opening SFTP"):
                self._sftp = await self._conn.start_sftp_client()
        return self._sftp

    async def _prepare_parent(self, sftp: asyncssh.SFTPClient, remote_path: str) -> None:
        folder, base = posixpath.split(remote_path)
        if not folder:
            return
        await sftp.makedirs(folder, exist_ok=True)
        stale_prefix = f".{base}{_PART_MARK}"
        for name in await sftp.listdir(folder):
            text = name.decode() if isinstance(name, bytes) else str(name)
            if text.startswith(stale_prefix):
                with contextlib.suppress(asyncssh.SFTPError):
                    await sftp.remove(posixpath.join(folder, text))

    async def _reader(self, remote_path: str) -> asyncssh.SFTPClientFile | None:
        reader = self._readers.get(remote_path)
        if reader is not None:
            self._readers.move_to_end(remote_path)
            return reader
        sftp = await self._sftp_client()
        try:
            reader = await sftp.open(remote_path, "rb")
        except asyncssh.SFTPNoSuchFile:
            return None
        self._readers[remote_path] = reader
        while len(self._readers) > _MAX_READERS:
            await self._drop_reader(next(iter(self._readers)))
        return reader

    async def _drop_reader(self, remote_path: str) -> None:
        reader = self._readers.pop(remote_path, None)
        if reader is not None:
            with contextlib.suppress(Exception):
                await reader.close()


def _as_bytes(data: Any) -> bytes:
    if data is None:
        return b""
    if isinstance(data, str):
        return data.encode()
    return bytes(data)
