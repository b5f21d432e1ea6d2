"""The catalog of cloud instance types and prices that `iacrun offers` and the cloud backends use.

Shipped with the package as versioned data (`data/aws.json`, `data/azure.json`, each with the
date of its figures); `refresh()` rebuilds it from the clouds' public price lists into
`~/.iacrun/catalog/`, which is then preferred over the shipped copy::

    from iacrun.orchestrator.offers.catalog import catalog_offers
    offers = catalog_offers("aws", requirements, regions=["us-east-1"])
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from iacrun.orchestrator.offers.catalog.match import (
    CatalogOfferSource,
    Shortfall,
    catalog_offers,
    offers_from_catalog,
    root_disk_gb,
    shortfall,
)
from iacrun.orchestrator.offers.catalog.model import Catalog, InstanceType, PriceRow, Source
from iacrun.orchestrator.offers.catalog.store import (
    catalog_path,
    load_catalog,
    shipped_catalog_path,
    user_catalog_dir,
)
from iacrun.orchestrator.offers.model import CLOUDS

if TYPE_CHECKING:
    from iacrun.orchestrator.offers.catalog.refresh import RefreshResult

__all__ = [
    "CLOUDS",
    "Catalog",
    "CatalogOfferSource",
    "InstanceType",
    "PriceRow",
    "Shortfall",
    "Source",
    "catalog_offers",
    "catalog_path",
    "load_catalog",
    "offers_from_catalog",
    "refresh",
    "root_disk_gb",
    "shipped_catalog_path",
    "shortfall",
    "user_catalog_dir",
]


def refresh(*args: Any, **kwargs: Any) -> RefreshResult:
    """Rebuild the catalogs from the clouds' public sources; see `catalog.refresh.refresh`."""
    from iacrun.orchestrator.offers.catalog.refresh import refresh as _refresh

    return _refresh(*args, **kwargs)
