"""Rebuild the AWS catalog from AWS's public sources, without credentials.

* On-demand prices and instance descriptions (vCPUs, memory, GPU count, local storage): the bulk
  Price List, one CSV per region, streamed line by line (it is hundreds of MB). Rows kept: on
  demand, Linux, shared tenancy, no pre-installed software, capacity status "Used", hourly, USD,
  product family "Compute Instance" (bare metal included). Skipped: reserved terms,
  Windows/RHEL/SUSE, dedicated instances and hosts, capacity reservations, other units.
* Spot prices: the feed behind AWS's Spot pricing page (`spot.js`), the lowest price per type
  in each region.

GPU names and memory come from `families.py` (the price list only counts GPUs).
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date

from iacrun.orchestrator.errors import BackendError
from iacrun.orchestrator.offers.catalog.families import cpu_family, gpu_spec, is_known
from iacrun.orchestrator.offers.catalog.http import Http
from iacrun.orchestrator.offers.catalog.model import Catalog, InstanceType, PriceRow, Source

PRICE_LIST_URL = (
    "https://pricing.us-east-1.amazonaws.com/offers/v1.0/aws/AmazonEC2/current/{region}/index.csv"
)
SPOT_FEED_URL = "https://website.spot.ec2.aws.a2z.com/spot.js"

#: the spot feed still names a few old regions the old way
SPOT_REGION_ALIASES = {
    "us-east": "us-east-1",
    "us-west": "us-west-1",
    "eu-ireland": "eu-west-1",
    "eu-frankfurt": "eu-central-1",
    "apac-sin": "ap-southeast-1",
    "apac-syd": "ap-southeast-2",
    "apac-tokyo": "ap-northeast-1",
}

_KEEP = {
    "TermType": "OnDemand",
    "Unit": "Hrs",
    "Currency": "USD",
    "Tenancy": "Shared",
    "Operating System": "Linux",
    "Pre Installed S/W": "NA",
    "License Model": "No License required",
    "CapacityStatus": "Used",
}
_STORAGE_RE = re.compile(r"(\d+)\s*x\s*([\d,.]+)\s*(GB|TB)?", re.IGNORECASE)


@dataclass(frozen=True)
class OnDemandRow:
    instance_type: str
    price: float
    vcpus: int
    memory_gb: float
    gpu_count: int
    local_disk_gb: float | None


def parse_price_list(
    lines: Iterable[str], wanted: Callable[[str], bool] | None = None
) -> tuple[str | None, dict[str, OnDemandRow]]:
    """The publication date and the on-demand Linux price of every wanted type in one region."""
    meta: dict[str, str] = {}
    col: dict[str, int] = {}
    out: dict[str, OnDemandRow] = {}
    for row in csv.reader(lines):
        if not col:
            if row and row[0] == "SKU":
                col = {name: i for i, name in enumerate(row)}
                missing = {"Instance Type", "PricePerUnit", "vCPU", "Memory"} - set(col)
                if missing:
                    raise BackendError(f"AWS price list lacks columns {sorted(missing)}")
            elif len(row) >= 2:
                meta[row[0]] = row[1]
            continue
        if len(row) < len(col):
            continue
        itype = row[col["Instance Type"]]
        if not itype or (wanted is not None and not wanted(itype)):
            continue
        if any(name in col and row[col[name]] != value for name, value in _KEEP.items()):
            continue
        # "Compute Instance" or "Compute Instance (bare metal)"
        if "Product Family" in col and not row[col["Product Family"]].startswith(
            "Compute Instance"
        ):
            continue
        try:
            price = float(row[col["PricePerUnit"]])
            vcpus = int(row[col["vCPU"]])
            memory = _gib(row[col["Memory"]])
        except ValueError:
            continue
        if price <= 0:
            continue
        gpus = _int(row[col["GPU"]]) if "GPU" in col else 0
        disk = _storage_gb(row[col["Storage"]]) if "Storage" in col else None
        known = out.get(itype)
        if known is None or price < known.price:
            out[itype] = OnDemandRow(itype, price, vcpus, memory, gpus, disk)
    published = meta.get("Publication Date")
    return (published[:10] if published else None), out


def parse_spot_feed(text: str) -> dict[tuple[str, str], float]:
    """(region, type) → lowest Linux spot price, from the JSONP `callback({...})` feed."""
    start, end = text.find("("), text.rfind(")")
    if start < 0 or end <= start:
        raise BackendError("the AWS spot price feed is not in the expected callback(...) form")
    try:
        data = json.loads(text[start + 1 : end])
        regions = data["config"]["regions"]
    except (ValueError, KeyError, TypeError) as exc:
        raise BackendError(f"the AWS spot price feed could not be read: {exc}") from exc
    out: dict[tuple[str, str], float] = {}
    for region in regions:
        code = SPOT_REGION_ALIASES.get(region.get("region", ""), region.get("region", ""))
        for group in region.get("instanceTypes", []):
            for size in group.get("sizes", []):
                for column in size.get("valueColumns", []):
                    if column.get("name") != "linux":
                        continue
                    try:
                        price = float(column["prices"]["USD"])
                    except (KeyError, TypeError, ValueError):
                        continue  # "N/A*": no spot market for this type
                    if price > 0:
                        out[(code, size["size"])] = price
    return out


def fetch_aws(
    regions: Iterable[str],
    http: Http,
    *,
    progress: Callable[[str], None] = lambda _m: None,
    today: date | None = None,
) -> Catalog:
    """A fresh AWS catalog for `regions`, limited to the families in `families.py`."""
    regions = list(regions)
    progress(f"aws: reading the spot price feed {SPOT_FEED_URL}")
    spot = parse_spot_feed(http.get_text(SPOT_FEED_URL))
    types: dict[str, InstanceType] = {}
    prices: list[PriceRow] = []
    published: list[str] = []
    for region in regions:
        url = PRICE_LIST_URL.format(region=region)
        progress(f"aws: reading the price list of {region} ({url})")
        day, rows = parse_price_list(http.get_lines(url), lambda t: is_known("aws", t))
        if day:
            published.append(day)
        for row in rows.values():
            itype = _instance_type(row, progress)
            if itype is None:
                continue
            types.setdefault(itype.name, itype)
            spot_price = spot.get((region, row.instance_type))
            if spot_price is not None and not spot_price < row.price:
                spot_price = None
            prices.append(PriceRow(row.instance_type, region, row.price, spot_price, 0))
    when = (today or date.today()).isoformat()
    source = Source(
        as_of=min(published) if published else when,
        text=f"AWS Price List bulk API ({', '.join(regions)}) and the EC2 spot price feed "
        f"(lowest price per region) as read on {when}",
    )
    return Catalog(cloud="aws", as_of=when, types=types, prices=prices, sources=[source])


def _instance_type(row: OnDemandRow, progress: Callable[[str], None]) -> InstanceType | None:
    spec = gpu_spec("aws", row.instance_type)
    if spec is not None:
        if row.gpu_count != spec.count:
            progress(
                f"aws: skipping {row.instance_type}: the price list says {row.gpu_count} GPUs, "
                f"families.py says {spec.count}"
            )
            return None
        return InstanceType(
            name=row.instance_type,
            vcpus=row.vcpus,
            memory_gb=row.memory_gb,
            gpu_name=spec.name,
            gpu_count=spec.count,
            gpu_memory_gb=float(spec.memory_gb),
            gpu_vendor=spec.vendor,
            local_disk_gb=row.local_disk_gb,
            arch=spec.arch,
        )
    fam = cpu_family("aws", row.instance_type)
    if fam is None or row.gpu_count:
        return None
    return InstanceType(
        name=row.instance_type,
        vcpus=row.vcpus,
        memory_gb=row.memory_gb,
        local_disk_gb=row.local_disk_gb,
        arch=fam[0].arch,
    )


def _gib(text: str) -> float:
    return float(text.replace(",", "").split()[0])


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return 0


def _storage_gb(text: str) -> float | None:
    """`2 x 1900 NVMe SSD` → 3800; `EBS only` → None."""
    match = _STORAGE_RE.search(text)
    if not match:
        return None
    count, size, unit = int(match.group(1)), float(match.group(2).replace(",", "")), match.group(3)
    return count * size * (1000 if unit and unit.upper() == "TB" else 1)
