"""The Host a backend hands back, and the Transport protocol that reaches it.

A `Host` says how to reach the machine of a run (this machine, or an address, user, key and
pinned host key) and where its run folder is. A `Transport` is files and processes on that host;
its implementations are `local.LocalTransport`, `ssh.SSHTransport` and, over SSH,
`reconnecting.ReconnectingTransport`, which `reconnecting.open_transport(host)` picks.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Literal, Protocol

from pydantic import BaseModel

from iacrun.orchestrator.host.relay import Channel


class Host(BaseModel):
    """How to reach the machine of a run, and where its run folder is there."""

    kind: Literal["local", "ssh"]
    run_dir: str
    address: str | None = None
    port: int = 22
    user: str | None = None
    identity_file: str | None = None
    #: the host's public key in OpenSSH format ("ssh-ed25519 AAAA..."); pinned, never learned
    host_key: str | None = None
    #: check the host key against this known_hosts file instead of `host_key`
    known_hosts: str | None = None
    proxy_jump: str | None = None
    #: seconds to keep retrying the first connection (a VM still booting)
    connect_timeout: float = 30.0
    #: seconds a host that stops answering while its job runs is waited for before the run is
    #: called failed (`unreachable_after` of the backend's settings; see docs/ssh.md)
    unreachable_after: float = 600.0
    #: CUDA_VISIBLE_DEVICES for the job when it gets a part of the host's GPUs
    gpus: str | None = None
    #: who starts the runner: iacrun over the transport ("runner"), or the host's own boot
    #: set-up once the code is uploaded ("cloud-init": see stacks/cloudinit.py)
    boot: Literal["runner", "cloud-init"] = "runner"
    #: the container engine found there (docker or podman), for `image:` and `docker: true`
    container_engine: str | None = None
    #: the address the OTHER nodes of a multi-node run reach this node on (cloud: the VM's
    #: private IP; ssh: the host's `internal_ip` from config, else its address)
    internal_ip: str | None = None


class Transport(Protocol):
    """Files and processes on a host. Local and SSH hosts implement the same calls."""

    async def run(self, argv: list[str], *, input: bytes | None = None) -> tuple[int, bytes, bytes]:
        """Run a command on the host and wait for it; returns exit status, stdout, stderr."""

    async def upload(self, local_path: str, remote_path: str) -> None:
        """Copy a file to the host atomically: a half-copied file never appears at remote_path."""

    async def write_file(self, remote_path: str, data: bytes, mode: int = 0o644) -> None:
        """Write a small file atomically with the given permissions."""

    async def read_file(self, remote_path: str) -> bytes | None:
        """A whole small file, or None when it does not exist."""

    async def read_from(self, remote_path: str, offset: int, limit: int) -> bytes:
        """Up to `limit` bytes from `offset` (b"" at the end or when the file is missing)."""

    async def forward(self, local_port: int, remote_port: int) -> Callable[[], Awaitable[None]]:
        """Serve 127.0.0.1:local_port here by connecting to 127.0.0.1:remote_port on the host.

        Returns an async function that stops the forward."""

    async def connect_port(self, remote_port: int) -> Channel:
        """One TCP connection to 127.0.0.1:remote_port on the host (a server relays a run's
        port with it). ConnectionRefusedError when nothing listens there."""

    async def close(self) -> None:
        """Release the connection, if any."""
