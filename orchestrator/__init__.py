"""iacrun's Python API: plan, submit, follow, stop and tear down runs.

::

    from iacrun.orchestrator import Orchestrator, Overrides, build_run_spec

    orch = Orchestrator()
    spec = build_run_spec("train.dstack.yml", Overrides(gpu="24GB.."), args=["--epochs", "3"])
    run = orch.submit(spec, orch.plan(spec))
    final = orch.attach(run.name, sys.stdout.buffer.write)

What this package exports is the public API; every other module may move. Names load on first
use (PEP 562), so `import iacrun.orchestrator` costs nothing until one is touched.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from iacrun.orchestrator.api import Orchestrator
    from iacrun.orchestrator.backends.base import Backend
    from iacrun.orchestrator.backends.stack_inventory import StackDetail, StackRow
    from iacrun.orchestrator.errors import (
        BackendError,
        CapacityError,
        ConfigError,
        CredentialsError,
        HostUnreachableError,
        IacrunError,
        InputError,
        NoOfferError,
        QuotaError,
        RunError,
        RunNameTakenError,
        RunNotFoundError,
        ToolMissingError,
    )
    from iacrun.orchestrator.host.transport import Host
    from iacrun.orchestrator.models.requirements import Requirements
    from iacrun.orchestrator.models.runspec import Overrides, RunSpec, build_run_spec
    from iacrun.orchestrator.models.settings import Settings, load_settings
    from iacrun.orchestrator.models.taskfile import TaskConfig
    from iacrun.orchestrator.offers.model import Offer
    from iacrun.orchestrator.offers.plan import OfferPlan
    from iacrun.orchestrator.registry import RunEvent, RunRecord, RunStatus

_WHERE = {
    "Orchestrator": "api",
    "Backend": "backends.base",
    "StackDetail": "backends.stack_inventory",
    "StackRow": "backends.stack_inventory",
    "BackendError": "errors",
    "CapacityError": "errors",
    "ConfigError": "errors",
    "CredentialsError": "errors",
    "HostUnreachableError": "errors",
    "IacrunError": "errors",
    "InputError": "errors",
    "NoOfferError": "errors",
    "QuotaError": "errors",
    "RunError": "errors",
    "RunNameTakenError": "errors",
    "RunNotFoundError": "errors",
    "ToolMissingError": "errors",
    "Host": "host.transport",
    "Requirements": "models.requirements",
    "Overrides": "models.runspec",
    "RunSpec": "models.runspec",
    "build_run_spec": "models.runspec",
    "Settings": "models.settings",
    "load_settings": "models.settings",
    "TaskConfig": "models.taskfile",
    "Offer": "offers.model",
    "OfferPlan": "offers.plan",
    "RunEvent": "registry",
    "RunRecord": "registry",
    "RunStatus": "registry",
}

__all__ = [
    "Backend",
    "BackendError",
    "CapacityError",
    "ConfigError",
    "CredentialsError",
    "Host",
    "HostUnreachableError",
    "IacrunError",
    "InputError",
    "NoOfferError",
    "Offer",
    "OfferPlan",
    "Orchestrator",
    "Overrides",
    "QuotaError",
    "Requirements",
    "RunError",
    "RunEvent",
    "RunNameTakenError",
    "RunNotFoundError",
    "RunRecord",
    "RunSpec",
    "RunStatus",
    "Settings",
    "StackDetail",
    "StackRow",
    "TaskConfig",
    "ToolMissingError",
    "build_run_spec",
    "load_settings",
]


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{where}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
