"""vCPU quotas as `iacrun doctor` last read them, and which offers they rule out.

Clouds cap the vCPUs an account may run per instance family and region (AWS: Service Quotas
per family and market; Azure: per VM family). A fresh account often has 0 for GPU families, and
`up` would only find out from a failed stack. `iacrun doctor` reads the quotas through the
provider and caches them in ``<home>/quotas.json``::

    {"aws": {"read_at": 1733000000.0, "account": "123456789012",
             "quotas": {"us-east-1": {"g/on-demand": {"limit": 0, "used": null}, ...}},
             "sizes": {}},
     "azure": {..., "quotas": {"eastus": {"standardNCADSA100v4Family": {"limit": 24, "used": 0}}},
               "sizes": {"eastus": {"Standard_NC24ads_A100_v4": "standardNCADSA100v4Family"}}}}

Offers whose family has fewer free vCPUs than the machine needs are then shown unavailable with
the reason; without a cache nothing is ruled out.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from iacrun.orchestrator.offers.model import Offer
from iacrun.stacks.probe import aws_quota_family

QUOTA_CACHE = "quotas.json"


def quota_cache_path(home: Path) -> Path:
    return home / QUOTA_CACHE


def load_quota_cache(home: Path) -> dict[str, Any]:
    try:
        data = json.loads(quota_cache_path(home).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save_quota_cache(home: Path, cloud: str, outputs: Mapping[str, Any]) -> None:
    """Record what a probe read for `cloud` (atomically; other clouds' entries are kept)."""
    data = load_quota_cache(home)
    data[cloud] = {
        "read_at": time.time(),
        "account": outputs.get("account"),
        "quotas": outputs.get("quotas") or {},
        "sizes": outputs.get("sizes") or {},
    }
    home.mkdir(parents=True, exist_ok=True)
    path = quota_cache_path(home)
    tmp = path.with_name(f".{QUOTA_CACHE}.{secrets.token_hex(4)}")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)


def quota_family(
    cloud: str, region: str, instance_type: str, spot: bool, sizes: Mapping[str, Any]
) -> str | None:
    """The quota an instance counts against: `g/on-demand` on AWS, the family on Azure."""
    if cloud == "aws":
        family = aws_quota_family(instance_type)
        return None if family is None else f"{family}/{'spot' if spot else 'on-demand'}"
    found = (sizes.get(region) or {}).get(instance_type)
    return str(found) if found else None


def quota_needs(offers: Iterable[Offer], cloud: str, sizes: Mapping[str, Any]) -> dict[str, Any]:
    """{region: {family: vCPUs of the smallest offered machine counting against it}}."""
    needs: dict[str, dict[str, int]] = {}
    for offer in offers:
        family = quota_family(cloud, offer.region, offer.instance_type, offer.spot, sizes)
        if family is None:
            continue
        per_region = needs.setdefault(offer.region, {})
        cpus = int(offer.resources.cpus)
        per_region[family] = min(per_region.get(family, cpus), cpus)
    return needs


def low_quotas(quotas: Mapping[str, Any], needs: Mapping[str, Any]) -> list[str]:
    """The families whose free vCPUs are below their smallest offered machine, in words."""
    out = []
    for region, families in sorted(quotas.items()):
        for family, quota in sorted(families.items()):
            need = (needs.get(region) or {}).get(family)
            if need is None:
                continue
            free = _free(quota)
            if free < need:
                out.append(f"{family} in {region}: {free:g} vCPUs free, {need} needed")
    return out


def quota_shortfall(offer: Offer, cloud: str, cached: Mapping[str, Any] | None) -> str | None:
    """Why the cached quota rules `offer` out, or None (also when nothing is cached)."""
    if not cached:
        return None
    family = quota_family(
        cloud, offer.region, offer.instance_type, offer.spot, cached.get("sizes") or {}
    )
    quota = ((cached.get("quotas") or {}).get(offer.region) or {}).get(family or "")
    if family is None or quota is None:
        return None
    free = _free(quota)
    if free >= offer.resources.cpus:
        return None
    age = _age(time.time() - float(cached.get("read_at") or 0))
    return (
        f"quota: {free:g} vCPUs of {family} free in {offer.region}, "
        f"{offer.resources.cpus} needed (iacrun doctor, {age} ago)"
    )


def mark_quota_shortfalls(offers: list[Offer], cloud: str, home: Path) -> list[Offer]:
    """`offers`, those the cached quotas rule out marked unavailable with the reason."""
    cached = load_quota_cache(home).get(cloud)
    if not cached:
        return offers
    out = []
    for offer in offers:
        reason = quota_shortfall(offer, cloud, cached) if offer.available else None
        out.append(
            offer.model_copy(update={"available": False, "note": reason}) if reason else offer
        )
    return out


def _free(quota: Mapping[str, Any]) -> float:
    return float(quota.get("limit") or 0) - float(quota.get("used") or 0)


def _age(seconds: float) -> str:
    if seconds < 3600:
        return f"{max(1, int(seconds // 60))}m"
    if seconds < 86400:
        return f"{int(seconds // 3600)}h"
    return f"{int(seconds // 86400)}d"
