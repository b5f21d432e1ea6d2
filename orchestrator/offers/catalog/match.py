"""Requirements against a catalog: which instance types fit, in which regions, at what price.

Fitting is decided once per instance type with `offers.unmet_requirement` (the same check the
local and SSH backends use), then expanded to that type's price rows. On a cloud the disk is a
volume iacrun attaches, so `disk` never rules a type out: it sets the root volume of the offer.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from iacrun.orchestrator.models.requirements import Requirements
from iacrun.orchestrator.models.resources import GPUSpec, ResourcesSpec
from iacrun.orchestrator.models.units import Range, format_size_gb
from iacrun.orchestrator.offers.catalog.networking import cluster_network
from iacrun.orchestrator.offers.catalog.store import load_catalog
from iacrun.orchestrator.offers.model import InstanceResources, Offer, is_cloud, unmet_requirement
from iacrun.stacks.images import NotOffered, image_for

if TYPE_CHECKING:
    from pathlib import Path

    from iacrun.orchestrator.offers.catalog.model import Catalog, InstanceType

DEFAULT_ROOT_DISK_GB = 100.0


def root_disk_gb(spec: ResourcesSpec) -> float:
    """The root volume iacrun attaches: the requested minimum, else the maximum, else 100GB."""
    if spec.disk.min is not None:
        return float(spec.disk.min)
    if spec.disk.max is not None:
        return float(spec.disk.max)
    return DEFAULT_ROOT_DISK_GB


def matching_types(catalog: Catalog, spec: ResourcesSpec) -> list[str]:
    """Names of the instance types whose resources meet `spec` (disk aside)."""
    return [
        name
        for name, res in catalog.base_resources.items()
        if unmet_requirement(spec, res, own_host=False) is None
    ]


def offers_from_catalog(
    catalog: Catalog, req: Requirements, regions: list[str] | None = None
) -> list[Offer]:
    """Offers of `catalog` that meet `req`, cheapest first.

    Applies the resources, `regions` (the argument and `req.regions` both, when given),
    `instance_types`, `spot_policy` and `max_price`. `backends` is the caller's business. A type
    without a compatible image (stacks/images.py) is listed unavailable, with the reason.
    """
    wanted: set[str] | None = None
    for given in (regions, req.regions):
        if given is not None:
            wanted = set(given) if wanted is None else wanted & set(given)
    types = set(req.instance_types) if req.instance_types else None
    want_od = req.spot_policy != "spot"
    want_spot = req.spot_policy != "on-demand"
    ceiling = req.max_price
    disk = root_disk_gb(req.resources)
    cloud = catalog.cloud
    offers: list[Offer] = []
    for name in matching_types(catalog, req.resources):
        if types is not None and name not in types:
            continue
        res: InstanceResources | None = None
        why_not: str | None = None
        for row in catalog.prices_by_type.get(name, ()):
            if wanted is not None and row.region not in wanted:
                continue
            if res is None:
                res = catalog.types[name].resources(disk)
                why_not = not_offered(cloud, name, res)
            if want_od and (ceiling is None or row.price <= ceiling):
                offers.append(_offer(cloud, row.region, name, res, False, row.price, why_not))
            spot = row.spot_price
            if want_spot and spot is not None and (ceiling is None or spot <= ceiling):
                offers.append(_offer(cloud, row.region, name, res, True, spot, why_not))
    offers.sort(key=lambda o: (o.price, o.region, o.instance_type, o.spot))
    return offers


def not_offered(cloud: str, instance_type: str, res: InstanceResources) -> str | None:
    """Why iacrun cannot run `instance_type` (no compatible image), or None when it can."""
    if not is_cloud(cloud):
        return None
    image = image_for(cloud, instance_type, gpu=bool(res.gpus), arch=res.cpu_arch)
    return f"not offered: {image.reason}" if isinstance(image, NotOffered) else None


def catalog_offers(
    cloud: str, requirements: Requirements, regions: list[str] | None = None
) -> list[Offer]:
    """Offers of `cloud`'s catalog (the refreshed copy if any, else the shipped one).

    What the AWS and Azure backends call from `Backend.offers`; `regions` narrows to the regions
    the user configured for the backend. Each offer's `resources.disk_gb` is the root volume
    iacrun will attach (the requested disk minimum, 100GB by default).
    """
    return offers_from_catalog(load_catalog(cloud), requirements, regions)


@dataclass(frozen=True)
class Shortfall:
    """Why a catalog has nothing for some resources: the requirement that ruled types out."""

    cloud: str
    reason: str
    eliminated: int
    total: int
    hint: str | None = None

    def render(self) -> str:
        text = f"{self.reason} rules out {self.eliminated} of {self.total} {self.cloud} types"
        return f"{text} ({self.hint})" if self.hint else text


def shortfall(catalog: Catalog, spec: ResourcesSpec) -> Shortfall | None:
    """The requirement that eliminated the most instance types, with the nearest thing there is.

    None when some type meets `spec` (then regions, spot or price are what is missing).
    """
    reasons: Counter[str] = Counter()
    for res in catalog.base_resources.values():
        reason = unmet_requirement(spec, res, own_host=False)
        if reason is None:
            return None
        reasons[reason] += 1
    if not reasons:
        return Shortfall(catalog.cloud, "an empty catalog", 0, 0)
    reason, count = reasons.most_common(1)[0]
    return Shortfall(catalog.cloud, reason, count, len(catalog.types), _hint(catalog, spec, reason))


def _hint(catalog: Catalog, spec: ResourcesSpec, reason: str) -> str | None:
    types = catalog.types
    if reason.startswith("gpu") and spec.gpu is not None:
        relaxed = spec.model_copy(
            update={
                "gpu": spec.gpu.model_copy(update={"count": Range(min=1), "total_memory": None})
            }
        )
        fits = [types[n] for n in matching_types(catalog, relaxed)]
        if fits:
            best = max(fits, key=lambda t: (t.gpu_count, -_cheapest(catalog, t.name)))
            return f"the most there is: {_gpus(best)} on {catalog.cloud} {best.name}"
        return _gpu_names_hint(catalog, spec.gpu)
    if reason.startswith("cpu") and not reason.startswith("cpu arch"):
        top = max(types.values(), key=lambda t: t.vcpus)
        return f"the most there is: {top.vcpus} vCPUs on {catalog.cloud} {top.name}"
    if reason.startswith("memory"):
        top = max(types.values(), key=lambda t: t.memory_gb)
        return f"the most there is: {format_size_gb(top.memory_gb)} on {catalog.cloud} {top.name}"
    return None


def _gpu_names_hint(catalog: Catalog, gpu: GPUSpec) -> str | None:
    names = sorted({t.gpu_name for t in catalog.types.values() if t.gpu_name})
    if gpu.name and not {n.lower() for n in gpu.name} & {n.lower() for n in names}:
        return (
            f"{catalog.cloud} has {', '.join(names)}" if names else f"{catalog.cloud} has no GPUs"
        )
    if gpu.memory is not None:
        sizes = sorted({t.gpu_memory_gb for t in catalog.types.values() if t.gpu_memory_gb})
        shown = ", ".join(format_size_gb(s) for s in sizes if s is not None)
        return f"{catalog.cloud} GPU memory sizes: {shown}"
    return None


def _gpus(t: InstanceType) -> str:
    return f"{t.gpu_count}x{t.gpu_name} ({format_size_gb(t.gpu_memory_gb or 0)})"


def _cheapest(catalog: Catalog, name: str) -> float:
    rows = catalog.prices_by_type.get(name, ())
    return min((r.price for r in rows), default=float("inf"))


def _offer(
    cloud: str,
    region: str,
    name: str,
    res: InstanceResources,
    spot: bool,
    price: float,
    why_not: str | None = None,
) -> Offer:
    # Built without validation: every field comes from a parsed catalog. 30x faster than Offer().
    return Offer.model_construct(
        backend=cloud,
        region=region,
        instance_type=name,
        resources=res,
        spot=spot,
        price=price,
        available=why_not is None,
        note=why_not,
        cluster_network=cluster_network(cloud, name),
    )


class CatalogOfferSource:
    """An offers-only source backed by a catalog: what `iacrun offers` shows for a cloud.

    Has the `name` and `offers(requirements)` of a Backend, plus `shortfall(requirements)` so
    the planner can say which requirement left nothing. The cloud backends delegate to it.
    """

    def __init__(
        self,
        cloud: str,
        regions: list[str] | None = None,
        directory: Path | None = None,
        name: str | None = None,
    ) -> None:
        self.cloud = cloud
        self.name = name or cloud
        self.regions = regions
        self.directory = directory

    def catalog(self) -> Catalog:
        return load_catalog(self.cloud, self.directory)

    def offers(self, requirements: Requirements) -> list[Offer]:
        offers = offers_from_catalog(self.catalog(), requirements, self.regions)
        if self.name != self.cloud:
            offers = [o.model_copy(update={"backend": self.name}) for o in offers]
        return offers

    def shortfall(self, requirements: Requirements) -> Shortfall | None:
        return shortfall(self.catalog(), requirements.resources)
