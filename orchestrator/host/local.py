"""`LocalTransport`: the Transport protocol on this machine, with plain files and processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

from iacrun.orchestrator.host.relay import Channel, StreamChannel, splice


class LocalTransport:
    """The Transport protocol for this machine: plain files and processes."""

    async def run(self, argv: list[str], *, input: bytes | None = None) -> tuple[int, bytes, bytes]:
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        except FileNotFoundError:
            # what a shell on an SSH host answers, so callers handle both the same way
            return 127, b"", f"{argv[0]}: command not found\n".encode()
        out, err = await proc.communicate(input)
        return proc.returncode or 0, out, err

    async def upload(self, local_path: str, remote_path: str) -> None:
        tmp = f"{remote_path}.partial"
        shutil.copyfile(local_path, tmp)
        os.replace(tmp, remote_path)

    async def write_file(self, remote_path: str, data: bytes, mode: int = 0o644) -> None:
        tmp = f"{remote_path}.partial"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, remote_path)

    async def read_file(self, remote_path: str) -> bytes | None:
        try:
            return Path(remote_path).read_bytes()
        except FileNotFoundError:
            return None

    async def read_from(self, remote_path: str, offset: int, limit: int) -> bytes:
        try:
            with open(remote_path, "rb") as f:
                f.seek(offset)
                return f.read(limit)
        except FileNotFoundError:
            return b""

    async def forward(self, local_port: int, remote_port: int) -> Callable[[], Awaitable[None]]:
        if local_port == remote_port:

            async def nothing() -> None:
                return None

            return nothing
        server = await asyncio.start_server(
            lambda r, w: _pipe_to(r, w, remote_port), "127.0.0.1", local_port
        )

        async def stop() -> None:
            server.close()
            with contextlib.suppress(Exception):
                await server.wait_closed()

        return stop

    async def connect_port(self, remote_port: int) -> Channel:
        reader, writer = await asyncio.open_connection("127.0.0.1", remote_port)
        return StreamChannel(reader, writer)

    async def close(self) -> None:
        return None


async def _pipe_to(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, port: int) -> None:
    accepted = StreamChannel(reader, writer)
    try:
        upstream = await LocalTransport().connect_port(port)
    except OSError:
        await accepted.close()
        return
    await splice(accepted, upstream)
