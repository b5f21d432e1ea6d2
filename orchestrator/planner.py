"""Offers from every configured backend, filtered by the run's policies and sorted by price."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel

from iacrun.orchestrator.backends.base import Backend
from iacrun.orchestrator.errors import NoOfferError
from iacrun.orchestrator.offers import Offer, Requirements


class OfferPlan(BaseModel):
    offers: list[Offer]
    #: backends that could not be asked, with why (not configured, unreachable, ...)
    notes: list[str] = []


def policy_filter(offers: Sequence[Offer], req: Requirements) -> list[Offer]:
    """Apply backends, regions, instance_types, max_price and spot_policy; cheapest first."""
    out = []
    for offer in offers:
        if req.backends is not None and offer.backend not in req.backends:
            continue
        if req.regions is not None and offer.region not in req.regions and offer.backend != "local":
            continue
        if req.instance_types is not None and offer.instance_type not in req.instance_types:
            continue
        if req.max_price is not None and offer.price > req.max_price:
            continue
        if req.spot_policy == "spot" and not offer.spot:
            continue
        if req.spot_policy == "on-demand" and offer.spot:
            continue
        out.append(offer)
    out.sort(key=lambda o: (not o.available, o.price, o.backend, o.region, o.instance_type))
    return out


def collect_offers(backends: Sequence[Backend], req: Requirements) -> OfferPlan:
    offers: list[Offer] = []
    notes: list[str] = []
    for backend in backends:
        if req.backends is not None and backend.name not in req.backends:
            continue
        offers.extend(backend.offers(req))
    selected = policy_filter(offers, req)
    if not any(o.available for o in selected):
        raise NoOfferError(explain_no_offer(req, offers, selected))
    return OfferPlan(offers=selected, notes=notes)


def explain_no_offer(req: Requirements, candidates: Sequence[Offer], selected: Sequence[Offer]) -> str:
    if selected:
        unavailable = ", ".join(f"{o.backend} {o.instance_type} ({o.note})" for o in selected[:3])
        return f"no offer is available right now: {unavailable}"
    if req.backends is not None:
        where = ", ".join(req.backends)
        return f"no offer from backends {where} meets {req.resources.render()}"
    return (
        f"no offer meets {req.resources.render()} with spot_policy {req.spot_policy}"
        + (f" under ${req.max_price:g}/h" if req.max_price is not None else "")
        + "; relax the resources or configure more backends in ~/.iacrun/config.yml"
    )
