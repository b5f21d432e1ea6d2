"""Rebuild the Azure catalog from Azure's public Retail Prices API (and resource SKUs if allowed).

* Prices: `https://prices.azure.com/api/retail/prices`, no credentials, 100 items a page,
  followed through `NextPageLink`. Kept: `Consumption` meters per hour in USD, Linux. Skipped:
  Windows (`productName` ends in "Windows"), Low Priority meters, reservations and savings plans
  (`type` other than Consumption), DevTest prices. Meters whose name ends in " Spot" give the
  spot price.
* Sizes: the Compute resource SKU list (vCPUs, memory, GPUs, architecture, restrictions) when a
  subscription id and an access token are given (`az account get-access-token`); otherwise the
  figures in `families.py`.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from iacrun.orchestrator.errors import BackendError
from iacrun.orchestrator.offers.catalog.families import (
    AZURE_GPU_SIZE_RESOURCES,
    cpu_family,
    gpu_spec,
    is_known,
)
from iacrun.orchestrator.offers.catalog.http import Http
from iacrun.orchestrator.offers.catalog.model import Arch, Catalog, InstanceType, PriceRow, Source

RETAIL_PRICES_URL = "https://prices.azure.com/api/retail/prices"
RETAIL_API_VERSION = "2023-01-01-preview"
RESOURCE_SKUS_URL = (
    "https://management.azure.com/subscriptions/{subscription}/providers/Microsoft.Compute/skus"
)
RESOURCE_SKUS_API_VERSION = "2021-07-01"
MAX_PAGES = 2000


def retail_prices_url(region: str) -> str:
    query = (
        "serviceName eq 'Virtual Machines' and priceType eq 'Consumption' "
        f"and armRegionName eq '{region}'"
    )
    params = {"api-version": RETAIL_API_VERSION, "$filter": query}
    return f"{RETAIL_PRICES_URL}?{urllib.parse.urlencode(params, quote_via=urllib.parse.quote)}"


def iter_pages(
    http: Http, url: str, next_key: str, headers: dict[str, str] | None = None
) -> Iterator[dict[str, Any]]:
    """Every page of a paginated Azure answer, following `next_key` until it is empty."""
    seen: set[str] = set()
    next_url: str | None = url
    while next_url:
        if next_url in seen or len(seen) >= MAX_PAGES:
            raise BackendError(f"Azure pagination does not end (at {next_url})")
        seen.add(next_url)
        try:
            page = json.loads(http.get_text(next_url, headers))
        except ValueError as exc:
            raise BackendError(f"{next_url} did not answer JSON: {exc}") from exc
        if not isinstance(page, dict):
            raise BackendError(f"{next_url} answered {type(page).__name__}, not an object")
        yield page
        next_url = page.get(next_key) or None


@dataclass
class RetailPrice:
    price: float | None = None
    spot: float | None = None
    started: str = ""
    spot_started: str = ""


def parse_retail_items(
    items: Iterable[dict[str, Any]], wanted: Callable[[str], bool] | None = None
) -> dict[tuple[str, str], RetailPrice]:
    """(size, region) → on-demand and spot hourly Linux prices; newest meter wins on duplicates."""
    out: dict[tuple[str, str], RetailPrice] = {}
    for item in items:
        sku = item.get("armSkuName") or ""
        region = item.get("armRegionName") or ""
        if not sku or not region or (wanted is not None and not wanted(sku)):
            continue
        if item.get("type") != "Consumption" or item.get("currencyCode", "USD") != "USD":
            continue
        if item.get("unitOfMeasure") != "1 Hour":
            continue
        product = item.get("productName") or ""
        meter = item.get("meterName") or ""
        if product.endswith("Windows") or "Low Priority" in meter:
            continue
        try:
            price = float(item.get("retailPrice") or item.get("unitPrice") or 0)
        except (TypeError, ValueError):
            continue
        if price <= 0:
            continue
        started = str(item.get("effectiveStartDate") or "")
        entry = out.setdefault((sku, region), RetailPrice())
        is_spot = meter.endswith(" Spot") or (item.get("skuName") or "").endswith(" Spot")
        if is_spot:
            if entry.spot is None or started >= entry.spot_started:
                entry.spot, entry.spot_started = price, started
        elif entry.price is None or started >= entry.started:
            entry.price, entry.started = price, started
    return out


@dataclass
class SkuResources:
    vcpus: int
    memory_gb: float
    gpus: int
    arch: Arch
    restricted: set[str] = field(default_factory=set)


def parse_resource_skus(items: Iterable[dict[str, Any]]) -> dict[str, SkuResources]:
    """Size → resources and the regions where the subscription may not use it."""
    out: dict[str, SkuResources] = {}
    for item in items:
        if item.get("resourceType") != "virtualMachines" or not item.get("name"):
            continue
        caps = {c.get("name"): c.get("value") for c in item.get("capabilities") or []}
        try:
            vcpus = int(caps.get("vCPUs") or 0)
            memory = float(caps.get("MemoryGB") or 0)
            gpus = int(caps.get("GPUs") or 0)
        except ValueError:
            continue
        if vcpus <= 0 or memory <= 0:
            continue
        arch: Arch = "arm" if str(caps.get("CpuArchitectureType", "")).lower() == "arm64" else "x86"
        restricted: set[str] = set()
        for r in item.get("restrictions") or []:
            if r.get("type") == "Location":
                restricted.update(v.lower() for v in r.get("values") or [])
        known = out.get(item["name"])
        if known is None:
            out[item["name"]] = SkuResources(vcpus, memory, gpus, arch, restricted)
        else:
            known.restricted |= restricted
    return out


def fetch_azure(
    regions: Iterable[str],
    http: Http,
    *,
    subscription: str | None = None,
    token: str | None = None,
    progress: Callable[[str], None] = lambda _m: None,
    today: date | None = None,
) -> Catalog:
    """A fresh Azure catalog for `regions`, limited to the sizes in `families.py`."""
    regions = list(regions)
    skus: dict[str, SkuResources] = {}
    if subscription and token:
        url = (
            RESOURCE_SKUS_URL.format(subscription=subscription)
            + "?"
            + urllib.parse.urlencode({"api-version": RESOURCE_SKUS_API_VERSION})
        )
        progress("azure: reading the resource SKU list")
        headers = {"Authorization": f"Bearer {token}"}
        skus = parse_resource_skus(
            item
            for page in iter_pages(http, url, "nextLink", headers)
            for item in page.get("value", [])
        )
    types: dict[str, InstanceType] = {}
    prices: list[PriceRow] = []
    for region in regions:
        progress(f"azure: reading retail prices of {region}")
        items = (
            item
            for page in iter_pages(http, retail_prices_url(region), "NextPageLink")
            for item in page.get("Items", [])
        )
        for (sku, where), retail in sorted(parse_retail_items(items, _known).items()):
            if retail.price is None:
                continue
            resources = skus.get(sku)
            if resources is not None and where.lower() in resources.restricted:
                continue
            itype = types.get(sku) or _instance_type(sku, resources, progress)
            if itype is None:
                continue
            types[sku] = itype
            spot = retail.spot if retail.spot is not None and retail.spot < retail.price else None
            prices.append(PriceRow(sku, where, retail.price, spot, 0))
    when = (today or date.today()).isoformat()
    source = Source(
        as_of=when,
        text=f"Azure Retail Prices API ({', '.join(regions)}) as read on {when}"
        + ("; sizes from the Compute resource SKU list" if skus else ""),
    )
    return Catalog(cloud="azure", as_of=when, types=types, prices=prices, sources=[source])


def _known(sku: str) -> bool:
    return is_known("azure", sku)


def _instance_type(
    sku: str, resources: SkuResources | None, progress: Callable[[str], None]
) -> InstanceType | None:
    spec = gpu_spec("azure", sku)
    if spec is not None:
        if resources is not None:
            if resources.gpus != spec.count:
                progress(
                    f"azure: skipping {sku}: {resources.gpus} GPUs, families.py says {spec.count}"
                )
                return None
            vcpus, memory = resources.vcpus, resources.memory_gb
        elif sku in AZURE_GPU_SIZE_RESOURCES:
            vcpus, mem = AZURE_GPU_SIZE_RESOURCES[sku]
            memory = float(mem)
        else:
            return None
        return InstanceType(
            name=sku,
            vcpus=vcpus,
            memory_gb=memory,
            gpu_name=spec.name,
            gpu_count=spec.count,
            gpu_memory_gb=float(spec.memory_gb),
            gpu_vendor=spec.vendor,
            arch=spec.arch,
        )
    fam = cpu_family("azure", sku)
    if fam is None:
        return None
    family, vcpus = fam
    memory = resources.memory_gb if resources is not None else vcpus * family.memory_per_vcpu
    return InstanceType(name=sku, vcpus=vcpus, memory_gb=memory, arch=family.arch)
