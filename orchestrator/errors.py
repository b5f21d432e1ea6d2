"""Every error iacrun raises on purpose, in one tree.

::

    IacrunError                    any error iacrun raises on purpose (exit 1 unless noted)
    ├── InputError                 something the user wrote or typed is wrong (exit 2)
    │   ├── ConfigError            a task, profile or config file: file, line, column, field
    │   └── ResourceSpecError      a resources shorthand (`80GB`, `A100:2`, `64GB..8GB`)
    ├── NoOfferError               no offer meets the requirements; says which one eliminated them
    ├── RunError
    │   ├── RunNotFoundError       no run of that name
    │   └── RunNameTakenError      a run of that name is still active
    ├── BackendError               a backend failed to provision, reach or terminate
    │   ├── CapacityError          the cloud has no capacity for the offer: try the next one
    │   ├── QuotaError             an account limit (vCPUs, spot count): try another region/cloud
    │   ├── CredentialsError       missing or rejected credentials
    │   ├── ToolMissingError       a program iacrun needs is not installed (`pulumi`, docker)
    │   ├── HostUnreachableError   an SSH host or a VM cannot be reached
    │   │   └── PortFilteredError  a running VM's SSH port never answers: a firewall drops it
    │   ├── StackTimeoutError      a stack's `up` or `destroy` ran past its time limit
    │   ├── StackLockedError       another update holds a stack's lock, not shown to be stale
    │   └── StackOwnerError        the stack belongs to another iacrun home: left alone
    └── RunnerError                the runner on a host could not start or answer

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


class BackendError(IacrunError):
    """A backend failed to provision, reach or terminate."""


class CapacityError(BackendError):
    """No capacity for this offer right now; the next offer may succeed."""


class QuotaError(BackendError):
    """An account limit stops this offer; another region or cloud may succeed."""


class CredentialsError(BackendError):
    pass


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
