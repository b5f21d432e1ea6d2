"""The AWS and Azure fetchers against recorded responses, and `refresh` writing what they build."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from iacrun.orchestrator.errors import BackendError
from iacrun.orchestrator.offers.catalog import load_catalog, refresh, user_catalog_dir
from iacrun.orchestrator.offers.catalog.fetch_aws import (
    PRICE_LIST_URL,
    SPOT_FEED_URL,
    fetch_aws,
    parse_price_list,
    parse_spot_feed,
)
from iacrun.orchestrator.offers.catalog.fetch_azure import (
    RESOURCE_SKUS_URL,
    fetch_azure,
    retail_prices_url,
)

from .conftest import FIXTURES, RecordedHttp

SUB = "00000000-0000-0000-0000-000000000000"
SKUS_URL = RESOURCE_SKUS_URL.format(subscription=SUB) + "?api-version=2021-07-01"
SKUS_NEXT = SKUS_URL + "&%24skipToken=page2"
RETAIL_NEXT = (
    "https://prices.azure.com:443/api/retail/prices?api-version=2023-01-01-preview&%24filter="
    "serviceName%20eq%20%27Virtual%20Machines%27%20and%20priceType%20eq%20%27Consumption%27%20and"
    "%20armRegionName%20eq%20%27eastus%27&%24skip=100"
)


def aws_http() -> RecordedHttp:
    return RecordedHttp(
        {
            SPOT_FEED_URL: "aws-spot.js",
            PRICE_LIST_URL.format(region="us-east-1"): "aws-pricelist-us-east-1.csv",
            PRICE_LIST_URL.format(region="us-west-2"): "aws-pricelist-us-west-2.csv",
        }
    )


def azure_http() -> RecordedHttp:
    return RecordedHttp(
        {
            retail_prices_url("eastus"): "azure-retail-eastus-1.json",
            RETAIL_NEXT: "azure-retail-eastus-2.json",
            SKUS_URL: "azure-skus-1.json",
            SKUS_NEXT: "azure-skus-2.json",
        }
    )


def test_price_list_keeps_only_on_demand_linux_shared_used_hourly_rows() -> None:
    with (FIXTURES / "aws-pricelist-us-east-1.csv").open(newline="") as fh:
        published, rows = parse_price_list(fh)
    assert published == "2025-05-29"
    # reserved, Windows, RHEL, dedicated, host, capacity reservation, SQL and per-quantity rows
    # of g5.xlarge and m7i.xlarge are all dropped: one on-demand Linux price each remains
    assert rows["g5.xlarge"].price == 1.006
    assert "m7i.xlarge" not in rows
    assert rows["g5.xlarge"].local_disk_gb == 250
    assert rows["g4dn.metal"].local_disk_gb == 1800  # bare metal product family is kept
    assert rows["p5.48xlarge"].memory_gb == 2048 and rows["p5.48xlarge"].gpu_count == 8
    assert rows["m7i.large"].local_disk_gb is None
    assert rows["t3.micro"].price == 0.0104  # parse keeps everything; the fetcher filters


def test_spot_feed_maps_legacy_region_names_and_skips_missing_prices() -> None:
    spot = parse_spot_feed((FIXTURES / "aws-spot.js").read_text())
    assert spot[("us-east-1", "g5.xlarge")] == 0.4005
    assert spot[("us-west-2", "g5.xlarge")] == 0.357
    assert ("us-east-1", "m7i.large") not in spot  # "N/A*"


def test_spot_feed_that_is_not_jsonp_is_a_backend_error() -> None:
    with pytest.raises(BackendError, match="callback"):
        parse_spot_feed("<html>maintenance</html>")


def test_fetch_aws_builds_a_consistent_catalog_with_spot_below_on_demand() -> None:
    http = aws_http()
    catalog = fetch_aws(["us-east-1", "us-west-2"], http, today=date(2026, 3, 1))
    assert catalog.as_of == "2026-03-01"
    assert catalog.sources[0].as_of == "2025-05-29"
    assert set(catalog.types) == {
        "g5.xlarge",
        "g4dn.xlarge",
        "g4dn.metal",
        "p5.48xlarge",
        "m7i.large",
        "m8g.xlarge",
    }
    g5 = catalog.types["g5.xlarge"]
    assert (g5.gpu_name, g5.gpu_count, g5.gpu_memory_gb, g5.vcpus) == ("A10G", 1, 24.0, 4)
    assert catalog.types["m8g.xlarge"].arch == "arm"
    by = {(r.instance_type, r.region): r for r in catalog.prices}
    assert by[("g5.xlarge", "us-east-1")].spot_price == 0.4005
    assert by[("m8g.xlarge", "us-east-1")].spot_price is None  # feed said 0.90 > 0.17952
    assert by[("m7i.large", "us-west-2")].spot_price == 0.0364
    assert by[("p5.48xlarge", "us-west-2")].spot_price is None
    assert http.requested[0][0] == SPOT_FEED_URL


def test_fetch_azure_follows_pages_and_keeps_linux_consumption_meters() -> None:
    http = azure_http()
    catalog = fetch_azure(["eastus"], http, today=date(2026, 3, 1))
    by = {r.instance_type: r for r in catalog.prices}
    assert set(by) == {
        "Standard_NC24ads_A100_v4",
        "Standard_E8s_v5",
        "Standard_NC40ads_H100_v5",
        "Standard_ND96isr_H100_v5",
    }
    a100 = by["Standard_NC24ads_A100_v4"]
    assert (a100.price, a100.spot_price) == (3.673, 0.444433)  # not Windows/DevTest/Reservation
    assert by["Standard_E8s_v5"].price == 0.504  # the newest of two meters
    assert by["Standard_NC40ads_H100_v5"].spot_price is None  # spot == on-demand is no spot
    assert catalog.types["Standard_NC24ads_A100_v4"].vcpus == 24  # from families.py
    assert [u for u, _ in http.requested] == [retail_prices_url("eastus"), RETAIL_NEXT]


def test_fetch_azure_with_a_token_reads_resource_skus_and_drops_restricted_sizes() -> None:
    http = azure_http()
    catalog = fetch_azure(["eastus"], http, subscription=SUB, token="tok", today=date(2026, 3, 1))
    assert "Standard_NC40ads_H100_v5" not in catalog.types  # NotAvailableForSubscription here
    assert catalog.types["Standard_ND96isr_H100_v5"].memory_gb == 1900
    skus_calls = [(u, h) for u, h in http.requested if "Microsoft.Compute" in u]
    assert [u for u, _ in skus_calls] == [SKUS_URL, SKUS_NEXT]
    assert all(h["Authorization"] == "Bearer tok" for _, h in skus_calls)
    assert "resource SKU list" in catalog.sources[0].text


def test_pagination_that_loops_is_stopped() -> None:
    http = RecordedHttp(
        {
            retail_prices_url("eastus"): "azure-retail-eastus-1.json",
            RETAIL_NEXT: "azure-retail-eastus-1.json",
        }
    )
    with pytest.raises(BackendError, match="pagination does not end"):
        fetch_azure(["eastus"], http)


def test_refresh_writes_checked_catalogs_that_then_win_over_the_shipped_ones(
    isolated_home: Path,
) -> None:
    http = RecordedHttp({**aws_http().routes, **azure_http().routes})
    seen: list[str] = []
    result = refresh(
        regions={"aws": ["us-east-1", "us-west-2"], "azure": ["eastus"]},
        http=http,
        progress=seen.append,
        today=date(2026, 3, 1),
    )
    assert result.written == [user_catalog_dir() / "aws.json", user_catalog_dir() / "azure.json"]
    aws = load_catalog("aws")
    assert aws.path == str(isolated_home / "catalog" / "aws.json")
    assert aws.as_of == "2026-03-01"
    assert any("aws: 6 instance types" in line for line in seen)


def test_refresh_without_network_keeps_the_old_catalog(isolated_home: Path) -> None:
    with pytest.raises(BackendError, match="unexpected request"):
        refresh(clouds=["aws"], http=RecordedHttp({}))
    assert not (isolated_home / "catalog" / "aws.json").exists()
    assert load_catalog("aws").as_of == "2025-06-01"
