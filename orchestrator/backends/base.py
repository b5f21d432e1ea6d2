"""The Backend interface: how runs get a machine and give it back.

A backend knows how to get a machine and how to give it back::

    offers(requirements) -> list[Offer]     what it could run the task on, with prices
    provision(run, offer) -> Host           get the machine (a folder here, an SSH host, a VM)
    terminate(run) -> None                  give it back; idempotent: what is gone is no error

Everything after provisioning (shipping the code, starting the runner, following the log,
forwarding ports, stopping the job) goes through a `Transport` opened on the `Host`
(orchestrator/host/transport.py), the same for every backend. Optional abilities are small
separate interfaces, not flags.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from iacrun.orchestrator.errors import InputError
from iacrun.orchestrator.host.transport import Host
from iacrun.orchestrator.models.requirements import BACKEND_NAMES, Requirements
from iacrun.orchestrator.offers.model import Offer
from iacrun.orchestrator.paths import config_file, iacrun_home, shown_path

if TYPE_CHECKING:
    from pathlib import Path

    from iacrun.orchestrator.models.runspec import RunSpec
    from iacrun.orchestrator.registry import RunRecord


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


def backend_named(backends: Iterable[Backend], name: str, config: Path | None = None) -> Backend:
    """The backend called `name`; an InputError when there is no such backend, or when
    `config` (default: the home's config.yml) does not configure it."""
    for backend in backends:
        if backend.name == name:
            return backend
    if name not in BACKEND_NAMES:
        raise InputError(f"unknown backend {name!r}; known: {', '.join(BACKEND_NAMES)}")
    where = shown_path(config or config_file(iacrun_home()))
    raise InputError(f"backend {name!r} is not configured in {where}")


@runtime_checkable
class Preflight(Protocol):
    """A backend that can tell, cheaply and before a run is recorded, that it cannot work
    (missing credentials or tools): `up` then says so in one line, or uses other offers.
    What it sets up on the way (a provider plugin installed once) is told to `on_progress`."""

    def preflight(self, on_progress: Callable[[str], None] | None = None) -> None: ...


@runtime_checkable
class RunPreflight(Protocol):
    """A backend that can tell, before a run is recorded, that this machine cannot run this
    run (no container engine for `image:`, no nvcc for `nvcc: true`): one line, nothing made."""

    def check_run(self, spec: RunSpec) -> None: ...


@runtime_checkable
class StackBacked(Protocol):
    """A backend whose runs are Pulumi stacks: the registry records each run's stack name."""

    def stack_name(self, run: RunRecord) -> str: ...


@runtime_checkable
class MultiNode(Protocol):
    """A backend that can give a run several machines at once (`nodes: N`)."""

    def provision_nodes(
        self, run: RunRecord, offer: Offer, count: int, progress: ProgressCallback
    ) -> list[Host]: ...


#: the backends that implement `MultiNode`, for the line that refuses the others
MULTI_NODE_BACKENDS = ("ssh", "aws", "azure")


def multi_node_backends(
    backends: Iterable[Backend], requirements: Requirements, config_path: str | None = None
) -> list[Backend]:
    """The backends that may take a run of `requirements.nodes` machines: all of them for one
    node; those that are `MultiNode` for more, or one line that says which backends can."""
    backends = list(backends)
    if requirements.nodes <= 1:
        return backends
    asked = [
        b for b in backends if requirements.backends is None or b.name in requirements.backends
    ]
    able: list[Backend] = [b for b in asked if isinstance(b, MultiNode)]
    if able:
        return able
    where = f"{config_path}: " if config_path else ""
    cannot = ", ".join(sorted({b.name for b in asked})) or "none configured"
    raise InputError(
        f"{where}nodes: {requirements.nodes} needs {requirements.nodes} machines at once, which "
        f"the backends at hand ({cannot}) cannot give; use {_or(MULTI_NODE_BACKENDS)} "
        f"(ssh: list {requirements.nodes} hosts in {shown_path(config_file(iacrun_home()))})"
    )


class Plan(Protocol):
    def render(self) -> str: ...


@runtime_checkable
class DryRunnable(Protocol):
    """A backend that can show what it would create for an offer, without credentials."""

    def dry_run(self, spec: RunSpec, offer: Offer) -> Plan: ...


def _or(names: tuple[str, ...]) -> str:
    return f"{', '.join(names[:-1])} or {names[-1]}" if len(names) > 1 else names[0]
