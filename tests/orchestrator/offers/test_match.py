"""Matching requirements against a catalog: disk sizing, filters, spot policies, shortfalls."""

from __future__ import annotations

import pytest

from iacrun.orchestrator.models.requirements import Requirements
from iacrun.orchestrator.models.resources import ResourcesSpec
from iacrun.orchestrator.offers.catalog import (
    Catalog,
    CatalogOfferSource,
    InstanceType,
    PriceRow,
    offers_from_catalog,
    root_disk_gb,
    shortfall,
)


def small_catalog() -> Catalog:
    types = {
        "c.large": InstanceType("c.large", 2, 8),
        "c.arm": InstanceType("c.arm", 4, 16, arch="arm"),
        "g.1": InstanceType("g.1", 8, 32, "L4", 1, 24, "nvidia", 250),
        "g.4": InstanceType("g.4", 48, 192, "L4", 4, 24, "nvidia", 3760),
        "h.8": InstanceType("h.8", 192, 2048, "H100", 8, 80, "nvidia", 30720),
    }
    prices = [
        PriceRow("c.large", "r1", 0.10, 0.03),
        PriceRow("c.large", "r2", 0.12, None),
        PriceRow("c.arm", "r1", 0.09, 0.02),
        PriceRow("g.1", "r1", 0.80, 0.40),
        PriceRow("g.1", "r2", 0.90, 0.30),
        PriceRow("g.4", "r1", 4.60, 1.90),
        PriceRow("h.8", "r2", 55.04, 19.25),
    ]
    return Catalog(cloud="test", as_of="2026-01-01", types=types, prices=prices)


def req(**kw: object) -> Requirements:
    resources = {k: kw.pop(k) for k in list(kw) if k in ("gpu", "cpu", "memory", "disk")}
    return Requirements(resources=ResourcesSpec.model_validate(resources), **kw)  # type: ignore[arg-type]


def test_disk_sets_the_root_volume_instead_of_filtering() -> None:
    offers = offers_from_catalog(small_catalog(), req(gpu="L4", disk="500GB.."))
    assert {o.instance_type for o in offers} == {"g.1"}  # g.1 has 250GB local: not a filter
    assert all(o.resources.disk_gb == 500 for o in offers)
    assert "500GB disk" in offers[0].resources.render()


@pytest.mark.parametrize(
    ("disk", "want"), [(None, 100.0), ("200GB..", 200.0), ("..50GB", 50.0), ("1TB", 1024.0)]
)
def test_root_disk(disk: str | None, want: float) -> None:
    spec = ResourcesSpec.model_validate({"disk": disk} if disk else {})
    assert root_disk_gb(spec) == want


def test_on_demand_is_the_default_and_spot_and_auto_follow_the_policy() -> None:
    cat = small_catalog()
    od = offers_from_catalog(cat, req(gpu="L4"))
    assert od and not any(o.spot for o in od)
    spot = offers_from_catalog(cat, req(gpu="L4", spot_policy="spot"))
    assert spot and all(o.spot for o in spot)
    auto = offers_from_catalog(cat, req(gpu="L4", spot_policy="auto"))
    assert [o.price for o in auto] == [0.3, 0.4, 0.8, 0.9]
    assert [o.spot for o in auto] == [True, True, False, False]


def test_regions_argument_and_requirement_narrow_together() -> None:
    cat = small_catalog()
    assert {o.region for o in offers_from_catalog(cat, req(gpu="L4"), ["r2"])} == {"r2"}
    both = offers_from_catalog(cat, req(gpu="L4", regions=["r1"]), ["r1", "r2"])
    assert {o.region for o in both} == {"r1"}
    assert offers_from_catalog(cat, req(gpu="L4", regions=["r1"]), ["r2"]) == []


def test_instance_types_and_max_price() -> None:
    cat = small_catalog()
    only = offers_from_catalog(cat, req(instance_types=["c.arm"]))
    assert [o.instance_type for o in only] == ["c.arm"]
    cheap = offers_from_catalog(cat, req(max_price=0.1, spot_policy="auto"))
    assert cheap and all(o.price <= 0.1 for o in cheap)


def test_cpu_architecture_and_counts() -> None:
    cat = small_catalog()
    arm = offers_from_catalog(cat, req(cpu="arm:2.."))
    assert {o.instance_type for o in arm} == {"c.arm"}
    many = offers_from_catalog(cat, req(cpu="100..", memory="1TB.."))
    assert {o.instance_type for o in many} == {"h.8"}


def test_gpu_count_range_total_memory_and_vendor() -> None:
    cat = small_catalog()
    assert {o.instance_type for o in offers_from_catalog(cat, req(gpu="L4:2.."))} == {"g.4"}
    total = offers_from_catalog(cat, req(gpu={"count": "1..", "total_memory": "96GB.."}))
    assert {o.instance_type for o in total} == {"g.4", "h.8"}
    assert offers_from_catalog(cat, req(gpu="amd:1")) == []


def test_shortfall_names_the_requirement_and_the_nearest_offer() -> None:
    cat = small_catalog()
    short = shortfall(cat, ResourcesSpec.model_validate({"gpu": "H100:16"}))
    assert short is not None
    assert short.reason == "gpu H100:16"
    assert short.eliminated == 5 and short.total == 5
    assert short.hint == "the most there is: 8xH100 (80GB) on test h.8"
    assert "rules out 5 of 5 test types" in short.render()


def test_shortfall_for_unknown_gpu_names_lists_what_there_is() -> None:
    short = shortfall(small_catalog(), ResourcesSpec.model_validate({"gpu": "MI300X"}))
    assert short is not None and short.hint == "test has H100, L4"


def test_shortfall_for_memory_and_none_when_something_fits() -> None:
    cat = small_catalog()
    short = shortfall(cat, ResourcesSpec.model_validate({"memory": "4TB.."}))
    assert short is not None and short.reason.startswith("memory")
    assert short.hint == "the most there is: 2TB on test h.8"
    assert shortfall(cat, ResourcesSpec.model_validate({"gpu": "L4"})) is None


def test_catalog_source_renames_offers_and_narrows_regions() -> None:
    source = CatalogOfferSource("aws", regions=["us-east-1"], name="aws-prod")
    offers = source.offers(req(gpu="A10G"))
    assert offers and {o.backend for o in offers} == {"aws-prod"}
    assert {o.region for o in offers} == {"us-east-1"}
    assert source.shortfall(req(gpu="A10G")) is None
