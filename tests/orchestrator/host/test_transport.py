"""SSHTransport against a real sshd: commands, atomic uploads, offsets, port forwards."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import socketserver
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from iacrun.orchestrator.errors import HostUnreachableError, InputError
from iacrun.orchestrator.host.connect import connect
from iacrun.orchestrator.host.ports import check_local_ports_free, local_port_busy
from iacrun.orchestrator.host.ssh import SSHTransport
from tests.orchestrator.host.sshd import Sshd, free_port

pytestmark = pytest.mark.sshd
T = TypeVar("T")


def with_transport(sshd: Sshd, body: Callable[[SSHTransport], Awaitable[T]]) -> T:
    async def main() -> T:
        transport = await connect(sshd.host())
        try:
            return await body(transport)
        finally:
            await transport.close()

    return asyncio.run(main())


def test_run_returns_status_stdout_stderr_and_takes_input(sshd: Sshd) -> None:
    async def body(t: SSHTransport) -> None:
        rc, out, err = await t.run(
            ["sh", "-c", "cat; echo out; echo err >&2; exit 7"], input=b"in\n"
        )
        assert (rc, out, err) == (7, b"in\nout\n", b"err\n")
        rc, out, _ = await t.run(["printf", "%s|", "a b", "$HOME", "'q'"])
        assert (rc, out) == (0, b"a b|$HOME|'q'|")  # argv is quoted, never re-split

    with_transport(sshd, body)


def test_write_read_file_with_mode(sshd: Sshd, tmp_path: Path) -> None:
    target = tmp_path / "deep" / "er" / "job.json"

    async def body(t: SSHTransport) -> None:
        await t.write_file(str(target), b'{"a": 1}', 0o600)
        assert await t.read_file(str(target)) == b'{"a": 1}'
        await t.write_file(str(target), b"replaced", 0o755)
        assert await t.read_file(str(target)) == b"replaced"
        assert await t.read_file(str(tmp_path / "missing")) is None

    with_transport(sshd, body)
    assert target.stat().st_mode & 0o777 == 0o755
    assert sorted(os.listdir(target.parent)) == ["job.json"]  # no temporary left behind


def test_read_from_offsets_follow_a_growing_file(sshd: Sshd, tmp_path: Path) -> None:
    log = tmp_path / "log"

    async def body(t: SSHTransport) -> None:
        assert await t.read_from(str(log), 0, 100) == b""  # not there yet
        log.write_bytes(b"line 1\nline 2\n")
        assert await t.read_from(str(log), 0, 100) == b"line 1\nline 2\n"
        assert await t.read_from(str(log), 7, 3) == b"lin"
        assert await t.read_from(str(log), 14, 100) == b""
        with log.open("ab") as f:
            f.write(b"line 3\n")  # appended while the transport holds the file open
        assert await t.read_from(str(log), 14, 100) == b"line 3\n"

    with_transport(sshd, body)


def test_log_size_over_ssh_is_the_hosts_byte_count(sshd: Sshd, tmp_path: Path) -> None:
    """Where the dashboard starts a log's tail: the log's size on the host, 0 before it exists
    (a run folder whose name needs quoting, as a home's tag never does, to be sure)."""
    from iacrun.orchestrator.host.runner_client import log_size

    run_dir = tmp_path / "run dir; x"
    run_dir.mkdir()
    host = sshd.host().model_copy(update={"run_dir": str(run_dir)})

    async def body(t: SSHTransport) -> None:
        assert await log_size(t, host) == 0  # no log yet
        (run_dir / "log").write_bytes(b"y" * 1_234_567)
        assert await log_size(t, host) == 1_234_567

    with_transport(sshd, body)


def test_upload_copies_the_file(sshd: Sshd, tmp_path: Path) -> None:
    source = tmp_path / "code.tar.gz"
    source.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    target = tmp_path / "run" / "code.tar.gz"

    with_transport(sshd, lambda t: t.upload(str(source), str(target)))
    assert target.read_bytes() == source.read_bytes()
    assert os.listdir(target.parent) == ["code.tar.gz"]


def test_interrupted_upload_never_appears_and_is_cleaned_by_the_next(
    sshd: Sshd, tmp_path: Path
) -> None:
    source = tmp_path / "big.tar.gz"
    with source.open("wb") as f:
        for _ in range(64):
            f.write(os.urandom(1024 * 1024))
    run_dir = tmp_path / "run"
    target = run_dir / "code.tar.gz"

    async def interrupted(t: SSHTransport) -> None:
        upload = asyncio.create_task(t.upload(str(source), str(target)))
        # wait until part of the file is on the host, then drop the connection
        while not any(p.stat().st_size > 0 for p in run_dir.glob(".code.tar.gz.part-*")):
            assert not upload.done(), "the upload finished before it could be interrupted"
            await asyncio.sleep(0.001)
        t.abort()
        with pytest.raises(Exception):  # noqa: B017 - any failure: what matters is the file
            await upload

    with_transport(sshd, interrupted)
    partial = list(run_dir.glob(".code.tar.gz.part-*"))
    assert not target.exists()
    assert partial and partial[0].stat().st_size < source.stat().st_size

    with_transport(sshd, lambda t: t.upload(str(source), str(target)))
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    assert hashlib.sha256(target.read_bytes()).hexdigest() == digest
    assert os.listdir(run_dir) == ["code.tar.gz"]


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(b"echo:" + data)


@pytest.fixture
def echo_port() -> Iterator[int]:
    """A TCP server "on the host" (on loopback, the host is this machine)."""
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _exchange(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(payload)
        return sock.recv(65536)


def test_forward_reaches_a_port_served_on_the_host(sshd: Sshd, echo_port: int) -> None:
    local = free_port()

    async def body(t: SSHTransport) -> None:
        stop = await t.forward(local, echo_port)
        try:
            assert local_port_busy(local)
            assert await asyncio.to_thread(_exchange, local, b"ping") == b"echo:ping"
            assert await asyncio.to_thread(_exchange, local, b"again") == b"echo:again"
        finally:
            await stop()
        assert not local_port_busy(local)

    with_transport(sshd, body)


def test_busy_local_port_is_refused_with_a_clear_error(sshd: Sshd, echo_port: int) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(InputError, match=f"local port {port} is already in use"):
            check_local_ports_free([free_port(), port])

        async def body(t: SSHTransport) -> None:
            with pytest.raises(InputError, match="--port LOCAL:TASK"):
                await t.forward(port, echo_port)

        with_transport(sshd, body)
    check_local_ports_free([port])  # free again once its listener is gone


def test_following_resumes_at_the_offset_after_a_dropped_connection(
    sshd: Sshd, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    log.write_bytes(b"".join(b"%d\n" % i for i in range(1000)))

    async def main() -> bytes:
        received = b""
        transport = await connect(sshd.host())
        received += await transport.read_from(str(log), 0, 1000)
        transport.abort()  # the network goes away mid-follow
        with pytest.raises(HostUnreachableError, match="lost the connection"):
            await transport.read_from(str(log), len(received), 1000)
        with log.open("ab") as f:
            f.write(b"".join(b"%d\n" % i for i in range(1000, 2000)))
        transport = await connect(sshd.host())  # a new session picks up where it was
        try:
            while chunk := await transport.read_from(str(log), len(received), 777):
                received += chunk
        finally:
            await transport.close()
        return received

    assert asyncio.run(main()).splitlines() == [b"%d" % i for i in range(2000)]


def test_the_lifecycle_transport_reconnects_and_resumes_by_itself(
    sshd: Sshd, tmp_path: Path
) -> None:
    """What `iacrun attach` and the supervisor use: a drop costs a reconnect, not the run."""
    from iacrun.orchestrator.host.reconnecting import ReconnectingTransport
    from iacrun.orchestrator.host.runner_client import follow_log

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "log").write_bytes(b"".join(b"%d\n" % i for i in range(1000)))
    host = sshd.host().model_copy(update={"run_dir": str(run_dir)})

    async def main() -> bytes:
        transport = ReconnectingTransport(host)
        received: list[bytes] = []
        try:
            offset, _ = await follow_log(transport, host, 0, received.append, follow=False)
            inner = transport._inner  # the connection it holds now
            assert isinstance(inner, SSHTransport)
            inner.abort()  # the network goes away
            with (run_dir / "log").open("ab") as f:
                f.write(b"".join(b"%d\n" % i for i in range(1000, 2000)))
            (run_dir / "state.json").write_text('{"status": "done"}')
            await follow_log(transport, host, offset, received.append)
        finally:
            await transport.close()
        return b"".join(received)

    assert asyncio.run(main()).splitlines() == [b"%d" % i for i in range(2000)]
