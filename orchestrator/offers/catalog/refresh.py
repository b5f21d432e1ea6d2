"""`iacrun offers --refresh`: rebuild the catalogs from the clouds' public sources.

Each cloud's fresh catalog is checked (`check.check_catalog`) before it replaces the old one in
`~/.iacrun/catalog/`; a catalog that fails the check is not written, so a broken download never
hides the working copy.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from iacrun.orchestrator.errors import BackendError, InputError
from iacrun.orchestrator.offers.catalog.check import check_catalog
from iacrun.orchestrator.offers.catalog.http import Http, UrllibHttp
from iacrun.orchestrator.offers.catalog.model import Catalog
from iacrun.orchestrator.offers.catalog.store import save_catalog, user_catalog_dir
from iacrun.orchestrator.offers.model import CLOUDS

DEFAULT_REGIONS: dict[str, tuple[str, ...]] = {
    "aws": (
        "us-east-1",
        "us-east-2",
        "us-west-2",
        "eu-west-1",
        "eu-central-1",
        "eu-north-1",
        "ap-northeast-1",
    ),
    "azure": (
        "eastus",
        "eastus2",
        "westus2",
        "westus3",
        "southcentralus",
        "centralus",
        "northcentralus",
        "westus",
        "westeurope",
        "northeurope",
        "swedencentral",
        "uksouth",
    ),
}


@dataclass
class RefreshResult:
    written: list[Path] = field(default_factory=list)
    catalogs: list[Catalog] = field(default_factory=list)


def refresh(
    target_dir: Path | None = None,
    *,
    clouds: Sequence[str] = CLOUDS,
    regions: Mapping[str, Sequence[str] | None] | None = None,
    http: Http | None = None,
    progress: Callable[[str], None] = lambda _m: None,
    azure_subscription: str | None = None,
    azure_token: str | None = None,
    today: date | None = None,
) -> RefreshResult:
    """Fetch, check and write the catalogs of `clouds` into `target_dir` (~/.iacrun/catalog).

    `regions` maps a cloud to its regions (default `DEFAULT_REGIONS`). The Azure token defaults
    to `$AZURE_ACCESS_TOKEN`; without it sizes come from `families.py`.
    """
    from iacrun.orchestrator.offers.catalog.fetch_aws import fetch_aws
    from iacrun.orchestrator.offers.catalog.fetch_azure import fetch_azure

    target = target_dir or user_catalog_dir()
    http = http or UrllibHttp()
    token = azure_token or os.environ.get("AZURE_ACCESS_TOKEN")
    result = RefreshResult()
    for cloud in clouds:
        if cloud not in CLOUDS:
            raise InputError(f"cannot refresh {cloud!r}; known clouds: {', '.join(CLOUDS)}")
        wanted = list((regions or {}).get(cloud) or DEFAULT_REGIONS[cloud])
        if cloud == "aws":
            catalog = fetch_aws(wanted, http, progress=progress, today=today)
        else:
            catalog = fetch_azure(
                wanted,
                http,
                subscription=azure_subscription,
                token=token,
                progress=progress,
                today=today,
            )
        if not catalog.prices:
            raise BackendError(
                f"{cloud}: the public price list had no prices for {', '.join(wanted)}"
            )
        problems = check_catalog(catalog)
        if problems:
            shown = "; ".join(problems[:3]) + (
                f" and {len(problems) - 3} more" if len(problems) > 3 else ""
            )
            raise BackendError(
                f"{cloud}: the fetched catalog is inconsistent, not written: {shown}"
            )
        result.written.append(save_catalog(catalog, target))
        result.catalogs.append(catalog)
        progress(
            f"{cloud}: {len(catalog.types)} instance types, {len(catalog.prices)} prices in "
            f"{len(catalog.regions)} regions → {target / (cloud + '.json')}"
        )
    return result
