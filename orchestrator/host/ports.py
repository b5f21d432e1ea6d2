"""Local ports: refuse a busy one before a run starts, rather than after its job is up; and say
which one, and for which task port, when one is taken between that check and the forward."""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterable, Sequence

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


class LocalPortBusyError(InputError):
    """Local ports that something on this machine already listens on.

    `task_port` is the task's port that was to be forwarded there, when one was."""

    def __init__(
        self, ports: Sequence[int], *, address: str = "127.0.0.1", task_port: int | None = None
    ) -> None:
        self.ports = list(ports)
        self.address = address
        self.task_port = task_port
        listed = ", ".join(str(p) for p in self.ports)
        many = len(self.ports) > 1
        busy = f"local port{'s' if many else ''} {listed} {'are' if many else 'is'} already in use"
        if task_port is not None:
            super().__init__(
                f"{busy} on {address}, so the task's port {task_port} cannot be forwarded there"
            )
        else:
            super().__init__(
                f"{busy} on {address}; stop what listens there or map the task's port elsewhere "
                "with --port LOCAL:TASK"
            )


def check_local_ports_free(ports: Iterable[int], address: str = "127.0.0.1") -> None:
    """Raise LocalPortBusyError naming every local port that is already in use."""
    busy = [port for port in ports if local_port_busy(port, address)]
    if busy:
        raise LocalPortBusyError(busy, address=address)


def free_local_port(address: str = "127.0.0.1") -> int:
    """A port nothing listens on here now (for a forward the task file did not pin)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        port: int = sock.getsockname()[1]
        return port
