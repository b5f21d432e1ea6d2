"""The catalogs shipped in the package: consistent, dated, and answering the issue's questions."""

from __future__ import annotations

import re

import pytest

from iacrun.orchestrator.models.requirements import Requirements
from iacrun.orchestrator.models.resources import ResourcesSpec
from iacrun.orchestrator.offers.catalog import (
    CLOUDS,
    catalog_offers,
    load_catalog,
    shipped_catalog_path,
)
from iacrun.orchestrator.offers.catalog.check import check_catalog
from iacrun.orchestrator.offers.catalog.families import (
    AWS_GPU_FAMILIES,
    AZURE_GPU_SIZES,
    cpu_family,
    gpu_spec,
)
from iacrun.orchestrator.offers.model import Offer


def req(**kw: object) -> Requirements:
    resources = {k: kw.pop(k) for k in list(kw) if k in ("gpu", "cpu", "memory", "disk")}
    return Requirements(resources=ResourcesSpec.model_validate(resources), **kw)  # type: ignore[arg-type]


def both(r: Requirements) -> list[Offer]:
    offers = catalog_offers("aws", r) + catalog_offers("azure", r)
    return sorted(offers, key=lambda o: o.price)


@pytest.mark.parametrize("cloud", CLOUDS)
def test_every_row_agrees_with_its_family_and_prices_are_sane(cloud: str) -> None:
    catalog = load_catalog(cloud)
    assert catalog.path == str(shipped_catalog_path(cloud))
    assert check_catalog(catalog) == []


@pytest.mark.parametrize("cloud", CLOUDS)
def test_each_file_records_the_date_and_source_of_its_figures(cloud: str) -> None:
    catalog = load_catalog(cloud)
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", catalog.as_of)
    assert catalog.sources and all(s.text and s.as_of for s in catalog.sources)
    assert {row.source for row in catalog.prices} <= set(range(len(catalog.sources)))


def test_covers_the_current_nvidia_families_and_cpu_types() -> None:
    aws = load_catalog("aws")
    families = {name.split(".")[0] for name in aws.types}
    # p5e is sold through Capacity Blocks only: no on-demand price exists to ship
    assert {"g4dn", "g5", "g6", "g6e", "gr6", "p4d", "p4de", "p5", "p5en", "p6-b200"} <= families
    assert {"m7i", "m8g"} <= families
    assert {
        "us-east-1",
        "us-east-2",
        "us-west-2",
        "eu-west-1",
        "eu-central-1",
        "ap-northeast-1",
    } <= set(aws.regions)
    azure = load_catalog("azure")
    for size in (
        "Standard_NC4as_T4_v3",
        "Standard_NV36ads_A10_v5",
        "Standard_NC24ads_A100_v4",
        "Standard_ND96asr_v4",
        "Standard_ND96amsr_A100_v4",
        "Standard_NC40ads_H100_v5",
        "Standard_ND96isr_H100_v5",
        "Standard_ND96isr_H200_v5",
        "Standard_E8s_v5",
        "Standard_E8ps_v5",
    ):
        assert size in azure.types, size
    assert {"eastus", "eastus2", "westus2", "westus3", "southcentralus"} <= set(azure.regions)
    arm = [t for t in {**aws.types, **azure.types}.values() if t.arch == "arm"]
    assert arm, "a useful catalog has ARM types too"


def test_80gb_finds_a100_and_h100_on_both_clouds() -> None:
    offers = both(req(gpu="80GB"))
    names = {o.resources.gpus[0].name for o in offers}
    assert {"A100", "H100"} <= names
    assert {o.backend for o in offers} == {"aws", "azure"}
    assert all(o.resources.gpus[0].memory_gb == 80 for o in offers)


def test_80gb_with_eight_gpus_finds_the_big_boxes_of_both_clouds() -> None:
    types = {(o.backend, o.instance_type) for o in both(req(gpu="80GB:8"))}
    assert {
        ("aws", "p4de.24xlarge"),
        ("aws", "p5.48xlarge"),
        ("azure", "Standard_ND96amsr_A100_v4"),
        ("azure", "Standard_ND96isr_H100_v5"),
    } <= types


def test_a100_times_eight() -> None:
    types = {(o.backend, o.instance_type) for o in both(req(gpu="A100:8"))}
    assert types == {
        ("aws", "p4d.24xlarge"),
        ("aws", "p4de.24xlarge"),
        ("azure", "Standard_ND96asr_v4"),
        ("azure", "Standard_ND96amsr_A100_v4"),
    }


def test_24gb_or_more_under_a_dollar_fifty() -> None:
    offers = both(req(gpu="24GB..", max_price=1.5, spot_policy="auto"))
    assert offers
    assert all(o.price <= 1.5 for o in offers)
    assert all(o.resources.gpus[0].memory_gb >= 24 for o in offers)
    assert {"g5.xlarge", "g6.xlarge"} <= {o.instance_type for o in offers}


def test_spot_policy_spot_gives_only_spot_rows() -> None:
    offers = both(req(gpu="A10G", spot_policy="spot"))
    assert offers and all(o.spot for o in offers)


def test_rows_come_in_price_order() -> None:
    offers = both(req(gpu="24GB..", spot_policy="auto"))
    prices = [o.price for o in offers]
    assert prices == sorted(prices)
    assert len({o.spot for o in offers}) == 2  # auto interleaves spot and on-demand


@pytest.mark.parametrize("cloud", CLOUDS)
def test_the_family_table_covers_every_shipped_type(cloud: str) -> None:
    for name in load_catalog(cloud).types:
        assert gpu_spec(cloud, name) or cpu_family(cloud, name), name


def test_family_tables_are_internally_sane() -> None:
    for family, sizes in AWS_GPU_FAMILIES.items():
        for size, spec in sizes.items():
            assert spec.count >= 1 and spec.memory_gb > 0, f"{family}.{size}"
    assert all(s.count >= 1 for s in AZURE_GPU_SIZES.values())
