"""The catalog as data: instance types with their resources, and their prices per region.

A catalog file is compact JSON, one instance type or price row a line::

    {"format": 1, "cloud": "aws", "as_of": "2025-06-01", "currency": "USD",
     "sources": [{"as_of": ..., "approximate": true, "text": "where the figures come from"}],
     "columns": {...},
     "types": {"g5.xlarge": [vcpus, memory_gb, gpu_name, gpu_count, gpu_memory_gb, gpu_vendor,
                             local_disk_gb, arch], ...},
     "prices": [[instance_type, region, price, spot_price, source_index], ...]}

Prices are USD per hour; `spot_price` is null where no spot market exists; `source_index` points
into `sources`, so every figure says where and when it was taken.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

from iacrun.orchestrator.errors import ConfigError
from iacrun.orchestrator.offers.model import Gpu, InstanceResources

FORMAT_VERSION = 1
TYPE_COLUMNS = (
    "vcpus",
    "memory_gb",
    "gpu_name",
    "gpu_count",
    "gpu_memory_gb",
    "gpu_vendor",
    "local_disk_gb",
    "arch",
)
PRICE_COLUMNS = ("instance_type", "region", "price", "spot_price", "source")
_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

Arch = Literal["x86", "arm"]


@dataclass(frozen=True, slots=True)
class InstanceType:
    """What one instance type has, the same in every region."""

    name: str
    vcpus: int
    memory_gb: float
    gpu_name: str | None = None
    gpu_count: int = 0
    gpu_memory_gb: float | None = None
    gpu_vendor: str | None = None
    local_disk_gb: float | None = None
    arch: Arch = "x86"

    def resources(self, disk_gb: float | None = None) -> InstanceResources:
        gpus: tuple[Gpu, ...] = ()
        if self.gpu_count and self.gpu_name:
            gpu = Gpu.model_construct(
                name=self.gpu_name,
                memory_gb=float(self.gpu_memory_gb or 0.0),
                vendor=self.gpu_vendor or "nvidia",
            )
            gpus = (gpu,) * self.gpu_count
        return InstanceResources.model_construct(
            cpus=self.vcpus,
            memory_gb=float(self.memory_gb),
            gpus=gpus,
            disk_gb=disk_gb,
            cpu_arch=self.arch,
        )

    def as_row(self) -> list[Any]:
        return [
            self.vcpus,
            _num(self.memory_gb),
            self.gpu_name,
            self.gpu_count,
            _num(self.gpu_memory_gb),
            self.gpu_vendor,
            _num(self.local_disk_gb),
            self.arch,
        ]


@dataclass(frozen=True, slots=True)
class PriceRow:
    """The price of one instance type in one region, on demand and (where it exists) spot."""

    instance_type: str
    region: str
    price: float
    spot_price: float | None = None
    source: int = 0

    def as_row(self) -> list[Any]:
        return [self.instance_type, self.region, self.price, self.spot_price, self.source]


@dataclass(frozen=True, slots=True)
class Source:
    """Where a set of figures comes from, and the date they describe."""

    as_of: str
    text: str
    approximate: bool = False


@dataclass(eq=False)
class Catalog:
    """Every instance type and price of one cloud, as of a date."""

    cloud: str
    as_of: str
    types: dict[str, InstanceType]
    prices: list[PriceRow]
    sources: list[Source] = field(default_factory=list)
    path: str | None = None

    @cached_property
    def regions(self) -> list[str]:
        return sorted({row.region for row in self.prices})

    @cached_property
    def base_resources(self) -> dict[str, InstanceResources]:
        """Each type's resources without a disk; built once, shared by every match."""
        return {name: t.resources() for name, t in self.types.items()}

    @cached_property
    def prices_by_type(self) -> dict[str, list[PriceRow]]:
        out: dict[str, list[PriceRow]] = {}
        for row in self.prices:
            out.setdefault(row.instance_type, []).append(row)
        return out

    def source_of(self, row: PriceRow) -> Source | None:
        return self.sources[row.source] if 0 <= row.source < len(self.sources) else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "cloud": self.cloud,
            "as_of": self.as_of,
            "currency": "USD",
            "sources": [
                {"as_of": s.as_of, "approximate": s.approximate, "text": s.text}
                for s in self.sources
            ],
            "columns": {"types": list(TYPE_COLUMNS), "prices": list(PRICE_COLUMNS)},
            "types": {name: t.as_row() for name, t in sorted(self.types.items())},
            "prices": [
                r.as_row() for r in sorted(self.prices, key=lambda r: (r.instance_type, r.region))
            ],
        }


def dump_catalog(catalog: Catalog) -> str:
    """The catalog as JSON with one type or price row per line (quick to parse, easy to diff)."""
    doc = catalog.to_dict()
    head = {k: v for k, v in doc.items() if k not in ("types", "prices")}
    lines = [json.dumps(head, separators=(",", ":"))[:-1] + ',\n"types":{']
    type_lines = [
        json.dumps(name) + ":" + json.dumps(row, separators=(",", ":"))
        for name, row in doc["types"].items()
    ]
    lines.append(",\n".join(type_lines))
    lines.append('},\n"prices":[')
    lines.append(",\n".join(json.dumps(r, separators=(",", ":")) for r in doc["prices"]))
    lines.append("]}\n")
    return "\n".join(lines)


def parse_catalog(data: Any, path: str | None = None) -> Catalog:
    """Validate a decoded catalog file; a damaged file is a ConfigError naming what is wrong."""

    def fail(message: str) -> ConfigError:
        return ConfigError(f"invalid catalog: {message}", file=path)

    if not isinstance(data, dict):
        raise fail("expected a JSON object")
    if data.get("format") != FORMAT_VERSION:
        raise fail(f"format {data.get('format')!r} is not {FORMAT_VERSION}; refresh it")
    cloud, as_of = data.get("cloud"), data.get("as_of")
    if not isinstance(cloud, str) or not cloud:
        raise fail("cloud is missing")
    if not isinstance(as_of, str) or not _DATE_RE.match(as_of):
        raise fail("as_of must be a YYYY-MM-DD date")
    sources = [
        Source(
            as_of=str(s.get("as_of", as_of)),
            text=str(s.get("text", "")),
            approximate=bool(s.get("approximate", False)),
        )
        for s in data.get("sources") or []
        if isinstance(s, dict)
    ]
    types: dict[str, InstanceType] = {}
    raw_types = data.get("types")
    if not isinstance(raw_types, dict):
        raise fail("types must be an object")
    for name, row in raw_types.items():
        try:
            vcpus, memory, gname, gcount, gmem, gvendor, disk, arch = row
            if arch not in ("x86", "arm"):
                raise ValueError(f"arch {arch!r}")
            types[name] = InstanceType(
                name=name,
                vcpus=int(vcpus),
                memory_gb=float(memory),
                gpu_name=gname,
                gpu_count=int(gcount or 0),
                gpu_memory_gb=None if gmem is None else float(gmem),
                gpu_vendor=gvendor,
                local_disk_gb=None if disk is None else float(disk),
                arch=arch,
            )
        except (TypeError, ValueError) as exc:
            raise fail(f"instance type {name}: {exc}") from exc
    prices: list[PriceRow] = []
    raw_prices = data.get("prices")
    if not isinstance(raw_prices, list):
        raise fail("prices must be a list")
    for row in raw_prices:
        try:
            itype, region, price, spot, source = row
            if itype not in types:
                raise ValueError(f"unknown instance type {itype!r}")
            prices.append(
                PriceRow(
                    instance_type=itype,
                    region=str(region),
                    price=float(price),
                    spot_price=None if spot is None else float(spot),
                    source=int(source),
                )
            )
        except (TypeError, ValueError) as exc:
            raise fail(f"price row {row!r}: {exc}") from exc
    return Catalog(cloud=cloud, as_of=as_of, types=types, prices=prices, sources=sources, path=path)


def _num(value: float | None) -> float | int | None:
    if value is None:
        return None
    return int(value) if float(value).is_integer() else float(value)
