"""Every error iacrun raises on purpose, in one tree.

::

    IacrunError                    any error iacrun raises on purpose (exit 1 unless noted)
    ├── InputError                 something the user wrote or typed is wrong (exit 2)
    │   ├── ConfigError            a task, profile or config file: file, line, column, field
    │   └── ResourceSpecError      a resources shorthand (`80GB`, `A100:2`, `64GB..8GB`)
    ├── NoOfferError               no offer meets the requirements; says which one eliminated them
    ├── RunError
    │   ├── RunNotFoundError       no run of that name
    │   ├── RunNameTakenError      a run of that name is still active
    │   ├── RunNotRunningError     the run is not running (yet, or any more) for what was asked
    │   └── PortClosedError        nothing listens on the run's port (yet): connection refused
    ├── BackendError               a backend failed to provision, reach or terminate
    │   ├── CapacityError          this offer cannot be had now: try the next one
    │   │   ├── RegionNotReadyError  the region is not yet usable by the account (verification)
    │   │   ├── PropagationError   the cloud has not yet propagated what the stack just created
    │   │   └── MachineCheckError  the machine came up broken (its GPU check failed); torn down
    │   ├── QuotaError             an account limit (vCPUs, spot count, IPs, VPCs) in a region
    │   ├── CredentialsError       missing or rejected credentials
    │   │   └── AccountSetupError  the credentials work, but the account lacks a permission or a
    │   │                          registration, or a policy forbids the request: what to grant
    │   ├── ToolMissingError       a program iacrun needs is not installed (`pulumi`, docker)
    │   ├── HostUnreachableError   an SSH host or a VM cannot be reached
    │   │   └── PortFilteredError  a running VM's SSH port never answers: a firewall drops it
    │   ├── StackTimeoutError      a stack's `up` or `destroy` ran past its time limit
    │   ├── StackLockedError       another update holds a stack's lock, not shown to be stale
    │   └── StackOwnerError        the stack belongs to another iacrun home: left alone
    ├── RunnerError                the runner on a host could not start or answer
    └── ServerError                an iacrun server refused the request, or cannot be reached
        ├── AuthError              no token, or a wrong, revoked or expired one (HTTP 401)
        ├── ForbiddenError         the token's user may not do this (HTTP 403)
        ├── NotFoundError          no user, token or upload of that name on the server (404)
        └── ServerUnreachableError the server does not answer (down, wrong URL, network)

Foreign errors (yaml, pydantic, asyncssh, pulumi) are translated at the seam where they occur and
re-raised ``from`` the original, so the CLI prints one line and never a traceback.
"""

from __future__ import annotations


class IacrunError(Exception):
    """Base of every error iacrun raises on purpose."""

    exit_code = 1


class InputError(IacrunError):
    """Something the user wrote or typed is wrong."""

    exit_code = 2


class ConfigError(InputError):
    """A problem in a task, profile or configuration file, located as precisely as possible."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        column: int | None = None,
        field: str | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.column = column
        self.field = field
        super().__init__(self.render())

    def render(self) -> str:
        where = ""
        if self.file:
            where = self.file
            if self.line is not None:
                where += f":{self.line}"
                if self.column is not None:
                    where += f":{self.column}"
            where += ": "
        field = f"{self.field}: " if self.field else ""
        return f"{where}{field}{self.message}"


class ResourceSpecError(InputError):
    """A resources shorthand that cannot be parsed or cannot be satisfied by anything."""


class NoOfferError(IacrunError):
    """No offer meets the requirements."""


class RunError(IacrunError):
    """A problem with a run as recorded in the registry."""


class RunNotFoundError(RunError):
    pass


class RunNameTakenError(RunError):
    exit_code = 2


class RunNotRunningError(RunError):
    """What was asked needs the run's job running: it has not started yet, or it ended."""


class PortClosedError(RunError):
    """The run's job runs, but nothing listens on the port asked for (yet)."""


class BackendError(IacrunError):
    """A backend failed to provision, reach or terminate."""


class CapacityError(BackendError):
    """This offer cannot be had now (capacity, price, zone, region); the next offer may succeed.

    Failover moves to the next offer on this error and every subclass of it."""


class RegionNotReadyError(CapacityError):
    """The account may not yet use the region (AWS still verifying it); other regions may work."""


class PropagationError(CapacityError):
    """The cloud had not yet propagated a resource the stack had just created (an Azure role or
    identity); the stack was destroyed, and the next offer builds everything anew."""


class MachineCheckError(CapacityError):
    """The machine came up but failed its own check before the job (`gpu check failed: ...`).

    The backend has torn it down already; the next offer gets another machine."""


class QuotaError(BackendError):
    """An account limit stops this offer; another region or cloud may succeed."""


class CredentialsError(BackendError):
    """Missing or rejected credentials: nothing else can succeed until they are fixed."""


class AccountSetupError(CredentialsError):
    """The credentials work, but the account lacks a permission or a registration, or a policy
    forbids the request; the message says what to grant or register, and how."""


class ToolMissingError(BackendError):
    pass


class HostUnreachableError(BackendError):
    pass


class PortFilteredError(HostUnreachableError):
    """A running VM's SSH port only ever times out: something between drops the packets."""


class StackTimeoutError(BackendError):
    """`up` or `destroy` ran past its time limit and was cancelled."""


class StackLockedError(BackendError):
    """Another update holds the stack's lock, and it cannot be shown to be stale."""


class StackOwnerError(BackendError):
    """The stack was made by another iacrun home (or by no known one): it is not touched."""


class RunnerError(IacrunError):
    pass


class ServerError(IacrunError):
    """An iacrun server refused the request, or cannot be reached (see `iacrun.client`)."""


class AuthError(ServerError):
    """No token, or one that is wrong, revoked or expired."""


class ForbiddenError(ServerError):
    """The token is good, but its user may not do this (a member asking what only an admin may)."""


class NotFoundError(ServerError):
    """No user, token or upload of that name on the server (runs have RunNotFoundError)."""


class ServerUnreachableError(ServerError):
    """The server does not answer: it is down, the URL is wrong, or the network is."""
