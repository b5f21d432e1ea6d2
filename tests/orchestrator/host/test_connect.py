"""connect(): pinned host keys, known_hosts, retries while a host boots, jump hosts."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from iacrun.orchestrator.errors import BackendError, CredentialsError, HostUnreachableError
from iacrun.orchestrator.host.connect import JumpHop, connect
from iacrun.orchestrator.host.transport import Host
from tests.orchestrator.host.sshd import Sshd, free_port, keygen

pytestmark = pytest.mark.sshd


async def _whoami(host: Host, **kwargs: float) -> bytes:
    transport = await connect(host, **kwargs)  # type: ignore[arg-type]
    try:
        rc, out, _ = await transport.run(["echo", "connected"])
        assert rc == 0
        return out
    finally:
        await transport.close()


def whoami(host: Host, timeout: float | None = None) -> bytes:
    deadline = None if timeout is None else time.monotonic() + timeout
    return asyncio.run(_whoami(host, deadline=deadline) if deadline else _whoami(host))


def other_public_key(tmp_path: Path) -> str:
    return keygen(tmp_path / "other_host_key")


def test_pinned_key_connects(sshd: Sshd) -> None:
    assert whoami(sshd.host()) == b"connected\n"


def test_changed_pinned_key_is_refused_naming_both_fingerprints(sshd: Sshd, tmp_path: Path) -> None:
    host = sshd.host(host_key=other_public_key(tmp_path))
    started = time.monotonic()
    with pytest.raises(BackendError) as caught:
        whoami(host)
    message = str(caught.value)
    assert f"host key of {sshd.user}@127.0.0.1:{sshd.port} changed" in message
    assert "refusing to connect" in message
    presented = sshd.host_key.split()[1]
    assert "the host presented SHA256:" in message and presented not in message
    assert not isinstance(caught.value, HostUnreachableError)
    assert time.monotonic() - started < 5  # refused at once, not retried until the deadline


def test_known_hosts_file_decides_when_no_key_is_pinned(sshd: Sshd, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(sshd.known_hosts_line() + "\n")
    assert whoami(sshd.host(host_key=None, known_hosts=str(known))) == b"connected\n"

    known.write_text(f"[127.0.0.1]:{sshd.port} {other_public_key(tmp_path)}\n")
    with pytest.raises(BackendError, match=r"changed: .*known_hosts has another key for it"):
        whoami(sshd.host(host_key=None, known_hosts=str(known)))

    known.write_text("[10.9.9.9]:22 " + sshd.host_key + "\n")
    with pytest.raises(BackendError, match=r"is unknown: no entry in .*refusing to connect"):
        whoami(sshd.host(host_key=None, known_hosts=str(known)))

    with pytest.raises(BackendError, match="does not exist and no host_key is configured"):
        whoami(sshd.host(host_key=None, known_hosts=str(tmp_path / "absent")))


def test_rejected_client_key_fails_at_once(sshd: Sshd, tmp_path: Path) -> None:
    stranger = tmp_path / "id_stranger"
    keygen(stranger)
    with pytest.raises(CredentialsError, match="rejected the key"):
        whoami(sshd.host(identity_file=str(stranger)))
    with pytest.raises(CredentialsError, match="does not exist"):
        whoami(sshd.host(identity_file=str(tmp_path / "nope")))


def test_closed_port_is_unreachable_after_the_deadline(tmp_path: Path) -> None:
    host = Host(
        kind="ssh",
        run_dir="/x",
        address="127.0.0.1",
        port=free_port(),
        host_key=None,
        known_hosts=str(tmp_path / "kh"),
        connect_timeout=1.0,
    )
    (tmp_path / "kh").write_text("")
    started = time.monotonic()
    with pytest.raises(HostUnreachableError, match=r"cannot reach .*connection refused"):
        whoami(host)
    assert 0.9 < time.monotonic() - started < 5


def test_connect_retries_until_a_booting_host_answers(tmp_path: Path) -> None:
    server = Sshd(tmp_path / "late")
    starter = threading.Timer(1.5, server.start)
    starter.start()
    try:
        started = time.monotonic()
        assert whoami(server.host(), timeout=20) == b"connected\n"
        assert time.monotonic() - started >= 1.4
    finally:
        starter.join()
        server.stop()


def test_proxy_jump_through_a_jump_host(sshd: Sshd, tmp_path: Path) -> None:
    # the jump host is the same sshd: the target connection is tunnelled through it
    known = tmp_path / "known_hosts"
    known.write_text(sshd.known_hosts_line() + "\n")
    host = sshd.host(known_hosts=str(known), proxy_jump=f"{sshd.user}@127.0.0.1:{sshd.port}")
    before = sshd.log_path.read_text().count("Accepted publickey")
    assert whoami(host) == b"connected\n"
    assert sshd.log_path.read_text().count("Accepted publickey") - before == 2  # jump + target

    # a dead jump host makes the target unreachable, though it is up: the route is the jump
    dead = sshd.host(known_hosts=str(known), proxy_jump=f"127.0.0.1:{free_port()}")
    with pytest.raises(HostUnreachableError):
        whoami(dead, timeout=1.0)


def test_jump_hop_parsing() -> None:
    assert JumpHop.parse_chain("bastion") == [JumpHop("bastion", 22, None)]
    assert JumpHop.parse_chain("ops@b1:2222, b2") == [
        JumpHop("b1", 2222, "ops"),
        JumpHop("b2", 22, None),
    ]
    assert JumpHop.parse_chain("u@[::1]:2200") == [JumpHop("::1", 2200, "u")]
