"""Local ports: refuse a busy one before a run starts, rather than after its job is up."""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterable

from iacrun.orchestrator.errors import InputError


def local_port_busy(port: int, address: str = "127.0.0.1") -> bool:
    """True when a listener could not bind `address:port` here right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # the forward's listener sets SO_REUSEADDR too (asyncio does on POSIX), so a port in
        # TIME_WAIT is free for it and must not count as busy here
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False


def check_local_ports_free(ports: Iterable[int], address: str = "127.0.0.1") -> None:
    """Raise InputError naming every local port that is already in use."""
    busy = [port for port in ports if local_port_busy(port, address)]
    if busy:
        listed = ", ".join(str(p) for p in busy)
        raise InputError(
            f"local port{'s' if len(busy) > 1 else ''} {listed} "
            f"{'are' if len(busy) > 1 else 'is'} already in use on {address}; stop what "
            "listens there or map the task's port elsewhere with --port LOCAL:TASK"
        )


def free_local_port(address: str = "127.0.0.1") -> int:
    """A port nothing listens on here now (for a forward the task file did not pin)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        port: int = sock.getsockname()[1]
        return port
