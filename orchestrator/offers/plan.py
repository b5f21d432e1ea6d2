"""Offers from every configured backend, filtered by the run's policies and sorted by price.

`collect_offers` asks each backend for what fits the resources (with the policies relaxed), then
applies the policies here, so that when nothing is left it can say which requirement emptied
the list: "no offer has 8xH100 under $20/h; the cheapest is $55.04/h on aws p5.48xlarge".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from pydantic import BaseModel

from iacrun.orchestrator.errors import NoOfferError
from iacrun.orchestrator.models.requirements import Requirements
from iacrun.orchestrator.models.units import format_price
from iacrun.orchestrator.offers.model import Offer
from iacrun.orchestrator.paths import shown_config_file

if TYPE_CHECKING:
    from iacrun.orchestrator.models.resources import ResourcesSpec
    from iacrun.orchestrator.offers.catalog.match import Shortfall


class OfferSource(Protocol):
    """Anything with a name that lists offers: every Backend, and catalog-only sources."""

    name: str

    def offers(self, requirements: Requirements) -> list[Offer]: ...


@runtime_checkable
class ExplainsShortfall(Protocol):
    """An optional ability: say which resource requirement ruled out everything a source has."""

    def shortfall(self, requirements: Requirements) -> Shortfall | None: ...


class OfferPlan(BaseModel):
    offers: list[Offer]
    #: backends that could not be asked, with why (not configured, unreachable, ...)
    notes: list[str] = []

    @property
    def available(self) -> list[Offer]:
        return [o for o in self.offers if o.available]


def policy_filter(offers: Sequence[Offer], req: Requirements) -> list[Offer]:
    """Apply backends, regions, instance_types, max_price and spot_policy; cheapest first.

    `auto` keeps spot and on-demand offers alike, so the two interleave by price.
    """
    out = [o for o in offers if _passes(o, req)]
    out.sort(key=_price_order)
    return out


def _passes(o: Offer, req: Requirements) -> bool:
    return (
        _backend_ok(o, req)
        and _region_ok(o, req)
        and _type_ok(o, req)
        and _spot_ok(o, req)
        and _price_ok(o, req)
    )


def _backend_ok(o: Offer, req: Requirements) -> bool:
    return req.backends is None or o.backend in req.backends


def _region_ok(o: Offer, req: Requirements) -> bool:
    return req.regions is None or o.region in req.regions or o.backend == "local"


def _type_ok(o: Offer, req: Requirements) -> bool:
    return req.instance_types is None or o.instance_type in req.instance_types


def _spot_ok(o: Offer, req: Requirements) -> bool:
    if req.spot_policy == "spot":
        return o.spot
    if req.spot_policy == "on-demand":
        return not o.spot
    return True


def _price_ok(o: Offer, req: Requirements) -> bool:
    return req.max_price is None or o.price <= req.max_price + 1e-9


def _price_order(o: Offer) -> tuple[bool, float, str, str, str, bool]:
    return (not o.available, o.price, o.backend, o.region, o.instance_type, o.spot)


def relaxed(req: Requirements) -> Requirements:
    """The resources alone: what backends are asked, so the policies can be explained here."""
    return req.model_copy(
        update={"spot_policy": "auto", "max_price": None, "regions": None, "instance_types": None}
    )


def collect_offers(
    backends: Sequence[OfferSource],
    req: Requirements,
    *,
    notes: Sequence[str] = (),
    raise_on_empty: bool = True,
    listing: bool = False,
) -> OfferPlan:
    """Offers of every backend that meet `req`, cheapest first.

    Raises NoOfferError with one line naming the requirement that left nothing, unless
    `raise_on_empty` is false (then the plan is simply empty). Runs need an offer available
    now; a `listing` (`iacrun offers`) also shows what is unavailable, with why, and raises
    only when nothing at all is left to show.
    """
    asked = [b for b in backends if req.backends is None or b.name in req.backends]
    notes = list(notes)
    missing = [n for n in req.backends or () if n not in {b.name for b in backends}]
    if missing:
        notes.append(f"{_backends(missing)} not configured in {shown_config_file()}")
    candidates: list[Offer] = []
    loose = relaxed(req)
    for backend in asked:
        candidates.extend(backend.offers(loose))
    selected = policy_filter(candidates, req)
    empty = not selected if listing else not any(o.available for o in selected)
    if raise_on_empty and empty:
        shortfalls = []
        if not candidates:
            shortfalls = [
                s
                for b in asked
                if isinstance(b, ExplainsShortfall)
                for s in [b.shortfall(loose)]
                if s is not None
            ]
        raise NoOfferError(
            explain_no_offer(
                req,
                candidates,
                selected,
                shortfalls=shortfalls,
                asked=[b.name for b in asked],
                missing=missing,
            )
        )
    return OfferPlan(offers=selected, notes=notes)


def explain_no_offer(
    req: Requirements,
    candidates: Sequence[Offer],
    selected: Sequence[Offer],
    *,
    shortfalls: Sequence[Shortfall] = (),
    asked: Sequence[str] | None = None,
    missing: Sequence[str] = (),
) -> str:
    """One line: which requirement eliminated the candidates, and the nearest thing there is.

    `candidates` are the offers that meet the resources; `selected` those that also pass the
    policies (non-empty here only when none of them is available right now).
    """
    need = describe_need(req.resources)
    if selected:
        unavailable = ", ".join(f"{o.backend} {o.instance_type} ({o.note})" for o in selected[:3])
        return f"no offer is available right now: {unavailable}"
    if not candidates:
        return _explain_resources(req.resources, need, shortfalls, asked, missing)
    remaining = list(candidates)
    for check, message in _STAGES:
        kept = [o for o in remaining if check(o, req)]
        if not kept:
            return message(need, req, remaining)
        remaining = kept
    return f"no offer has {need}"


def _explain_resources(
    spec: ResourcesSpec,
    need: str,
    shortfalls: Sequence[Shortfall],
    asked: Sequence[str] | None,
    missing: Sequence[str],
) -> str:
    if asked is not None and not asked:
        if missing:
            return (
                f"no backend to ask for {need}: {_backends(missing)} not configured in "
                f"{shown_config_file()}"
            )
        return (
            "no backend is configured: enable `local`, list `ssh` hosts or set up a cloud in "
            f"{shown_config_file()} (`iacrun offers` without --configured-only compares cloud "
            "prices)"
        )
    where = f" on {', '.join(asked)}" if asked else ""
    if not shortfalls:
        # the backends could not say which requirement it was: show them all
        return f"no offer meets {spec.render()}{where}"
    reasons = {s.reason for s in shortfalls}
    reason = shortfalls[0].reason if len(reasons) == 1 else "; ".join(sorted(reasons))
    hints = [s.hint for s in shortfalls if s.hint]
    text = f"no offer has {need}{where}: no instance type meets {reason}"
    return text + (f"; {hints[0]}" if hints else "")


def _backends(names: Sequence[str]) -> str:
    """`backend ssh is` / `backends aws, azure are`."""
    if len(names) == 1:
        return f"backend {names[0]} is"
    return f"backends {', '.join(names)} are"


def _cheapest(offers: Sequence[Offer]) -> Offer:
    return min(offers, key=_price_order)


def _at(o: Offer) -> str:
    where = f"{o.region}, spot" if o.spot else o.region
    return f"{format_price(o.price)}/h on {o.backend} {o.instance_type} ({where})"


def _regions_message(need: str, req: Requirements, left: Sequence[Offer]) -> str:
    by_price: dict[str, float] = {}
    for o in sorted(left, key=_price_order):
        by_price.setdefault(f"{o.backend} {o.region}", o.price)
    where = ", ".join(list(by_price)[:4])
    return (
        f"no offer has {need} in regions {', '.join(req.regions or [])}; it is offered in {where}"
    )


def _types_message(need: str, req: Requirements, left: Sequence[Offer]) -> str:
    best = _cheapest(left)
    return (
        f"none of the instance types {', '.join(req.instance_types or [])} has {need}; "
        f"the cheapest that does is {_at(best)}"
    )


def _spot_message(need: str, req: Requirements, left: Sequence[Offer]) -> str:
    best = _cheapest(left)
    kind = "spot" if req.spot_policy == "spot" else "on-demand"
    return f"no {kind} offer has {need}; the cheapest other is {_at(best)}"


def _price_message(need: str, req: Requirements, left: Sequence[Offer]) -> str:
    best = _cheapest(left)
    ceiling = format_price(req.max_price or 0)
    return f"no offer has {need} under {ceiling}/h; the cheapest is {_at(best)}"


def _backends_message(need: str, req: Requirements, left: Sequence[Offer]) -> str:
    best = _cheapest(left)
    names = ", ".join(req.backends or [])
    return f"no offer from backends {names} has {need}; the cheapest is {_at(best)}"


_STAGES: list[tuple[Callable[[Offer, Requirements], bool], Callable[..., str]]] = [
    (_backend_ok, _backends_message),
    (_region_ok, _regions_message),
    (_type_ok, _types_message),
    (_spot_ok, _spot_message),
    (_price_ok, _price_message),
]


def describe_need(spec: ResourcesSpec) -> str:
    """What the resources ask for, the way people say it: `8xH100`, `1x80GB GPU`, `4.. CPUs`."""
    gpu = spec.gpu
    if gpu is None:
        return f"{spec.cpu.render()} CPUs and {spec.memory.render(size=True)} memory"
    count = gpu.count.render()
    if gpu.name:
        text = f"{count}x{'/'.join(gpu.name)}"
        if gpu.memory is not None:
            text += f" ({gpu.memory.render(size=True)})"
    elif gpu.memory is not None:
        text = f"{count}x{gpu.memory.render(size=True)} GPU"
    else:
        text = f"{count}x{gpu.vendor or 'any'} GPU"
    if gpu.total_memory is not None:
        text += f" with {gpu.total_memory.render(size=True)} in total"
    return text


def catalog_notes(clouds: Sequence[str]) -> list[str]:
    """Where the prices of `clouds` come from and how old they are."""
    from iacrun.orchestrator.offers.catalog import load_catalog, shipped_catalog_path

    parts = []
    for cloud in clouds:
        catalog = load_catalog(cloud)
        shipped = catalog.path == str(shipped_catalog_path(cloud))
        parts.append(f"{cloud} as of {catalog.as_of}{' (shipped)' if shipped else ''}")
    if not parts:
        return []
    return [f"prices: {', '.join(parts)}; `iacrun offers --refresh` updates them"]
