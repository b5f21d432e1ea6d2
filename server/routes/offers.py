"""Offers (`iacrun offers`' filters as query parameters) and the backends with their preflight."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from iacrun.orchestrator.backends.base import Preflight
from iacrun.orchestrator.errors import IacrunError
from iacrun.orchestrator.models.requirements import SpotPolicy
from iacrun.orchestrator.models.runspec import Overrides, requirements_for
from iacrun.server.auth import User
from iacrun.server.errors import RESPONSES
from iacrun.server.schema import BackendStatus, PlanResponse
from iacrun.server.state import state_of

router = APIRouter(tags=["offers"], responses=RESPONSES)


@router.get("/offers")
def offers(
    request: Request,
    principal: User,
    gpu: str | None = None,
    cpu: str | None = None,
    memory: str | None = None,
    disk: str | None = None,
    spot: SpotPolicy | None = None,
    max_price: float | None = None,
    backend: Annotated[list[str] | None, Query()] = None,
    region: Annotated[list[str] | None, Query()] = None,
    instance_type: Annotated[list[str] | None, Query()] = None,
    configured_only: bool = False,
) -> PlanResponse:
    """What `iacrun offers` lists, with the same filters (each one the flag of that name;
    `spot` is `spot`, `on-demand` or `auto`; list filters repeat: `?backend=aws&backend=local`)."""
    overrides = Overrides.model_validate(
        {
            "gpu": gpu,
            "cpu": cpu,
            "memory": memory,
            "disk": disk,
            "spot_policy": spot,
            "max_price": max_price,
            "backends": backend or None,
            "regions": region or None,
            "instance_types": instance_type or None,
        }
    )
    plan = state_of(request).orchestrator.offers(
        requirements_for(None, overrides), configured_only=configured_only
    )
    return PlanResponse(offers=plan.offers, notes=plan.notes)


@router.get("/backends")
def backends(request: Request, principal: User) -> list[BackendStatus]:
    """The configured backends, each with its preflight's result."""
    result: list[BackendStatus] = []
    for backend in state_of(request).orchestrator.backends():
        try:
            if isinstance(backend, Preflight):
                backend.preflight(None)
        except IacrunError as exc:
            result.append(BackendStatus(name=backend.name, ready=False, problem=str(exc)))
            continue
        result.append(BackendStatus(name=backend.name, ready=True))
    return result
