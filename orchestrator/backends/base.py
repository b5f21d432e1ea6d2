"""The Backend interface, the Host a backend hands back, and the Transport that reaches it.

A backend knows how to get a machine and how to give it back::

    offers(requirements) -> list[Offer]     what it could run the task on, with prices
    provision(run, offer) -> Host           get the machine (a folder here, an SSH host, a VM)
    terminate(run) -> None                  give it back; idempotent: what is gone is no error

Everything after provisioning (shipping the code, starting the runner, following the log,
forwarding ports, stopping the job) goes through a `Transport` opened on the `Host`, the same for
every backend. Optional abilities are small separate interfaces, not flags.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from pydantic import BaseModel

from iacrun.orchestrator.offers.model import Offer, Requirements

if TYPE_CHECKING:
    from iacrun.orchestrator.models.runspec import RunSpec
    from iacrun.orchestrator.registry import RunRecord


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
    #: CUDA_VISIBLE_DEVICES for the job when it gets a part of the host's GPUs
    gpus: str | None = None
    #: who starts the runner: iacrun over the transport ("runner"), or the host's own boot
    #: set-up once the code is uploaded ("cloud-init": see stacks/cloudinit.py)
    boot: Literal["runner", "cloud-init"] = "runner"


ProgressCallback = Callable[[str], None]


class Backend(ABC):
    """A place runs can go. Subclasses document their configuration in their own docstring."""

    name: str

    @abstractmethod
    def offers(self, requirements: Requirements) -> list[Offer]:
        """Offers meeting `requirements`, in any order; unreachable ones have available=False."""

    @abstractmethod
    def provision(self, run: RunRecord, offer: Offer, progress: ProgressCallback) -> Host:
        """Get the machine for `run`. Raises CapacityError/QuotaError to let the caller move on."""

    @abstractmethod
    def terminate(self, run: RunRecord) -> None:
        """Give the machine back. Idempotent: calling it again, or for nothing, is no error."""


@runtime_checkable
class Preflight(Protocol):
    """A backend that can tell, cheaply and before a run is recorded, that it cannot work
    (missing credentials or tools): `up` then says so in one line, or uses other offers."""

    def preflight(self) -> None: ...


@runtime_checkable
class StackBacked(Protocol):
    """A backend whose runs are Pulumi stacks: the registry records each run's stack name."""

    def stack_name(self, run: RunRecord) -> str: ...


class Plan(Protocol):
    def render(self) -> str: ...


@runtime_checkable
class DryRunnable(Protocol):
    """A backend that can show what it would create for an offer, without credentials."""

    def dry_run(self, spec: RunSpec, offer: Offer) -> Plan: ...


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

    async def close(self) -> None:
        """Release the connection, if any."""
