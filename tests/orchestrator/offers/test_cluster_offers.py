"""Offers for a multi-node run: which types have a cluster network, and the offers table's
price per node and for the whole cluster."""

from __future__ import annotations

import pytest

from iacrun.cli.tables import offers_table
from iacrun.orchestrator.offers.catalog.networking import cluster_network
from iacrun.orchestrator.offers.model import InstanceResources, Offer


@pytest.mark.parametrize(
    ("cloud", "instance_type", "expected"),
    [
        ("aws", "p4d.24xlarge", "efa"),
        ("aws", "p5.48xlarge", "efa"),
        ("aws", "p5en.48xlarge", "efa"),
        ("aws", "p6-b200.48xlarge", "efa"),
        ("aws", "g5.48xlarge", "efa"),
        ("aws", "g6.12xlarge", "efa"),
        ("aws", "g5.xlarge", None),
        ("aws", "g6.4xlarge", None),
        ("aws", "p3.2xlarge", None),
        ("aws", "t3.micro", None),
        ("azure", "Standard_ND96isr_H100_v5", "infiniband"),
        ("azure", "Standard_ND96asr_v4", "infiniband"),
        ("azure", "Standard_ND96amsr_A100_v4", "infiniband"),
        ("azure", "Standard_ND40rs_v2", "infiniband"),
        ("azure", "Standard_NC24ads_A100_v4", None),
        ("azure", "Standard_ND6s", None),
        ("azure", "Standard_NV36ads_A10_v5", None),
        ("ssh", "p5.48xlarge", None),
    ],
)
def test_cluster_network_per_type(cloud: str, instance_type: str, expected: str | None) -> None:
    assert cluster_network(cloud, instance_type) == expected


def _offer(instance_type: str, price: float, network: str | None = None) -> Offer:
    return Offer(
        backend="aws",
        region="us-east-1",
        instance_type=instance_type,
        resources=InstanceResources(cpus=8, memory_gb=32),
        price=price,
        cluster_network=network,  # type: ignore[arg-type]
    )


def test_the_table_shows_the_price_per_node_and_in_total_for_a_cluster() -> None:
    offers = [_offer("g6.xlarge", 0.8), _offer("p5.48xlarge", 55.04, "efa")]
    table = offers_table(offers, None, nodes=4).splitlines()
    assert table[0].split() == [
        "#", "BACKEND", "REGION", "INSTANCE", "RESOURCES", "SPOT", "NET", "PRICE/NODE", "TOTAL",
        "(4", "NODES)",
    ]  # fmt: skip
    assert table[1].split()[-3:] == ["-", "$0.8", "$3.2"]
    assert table[2].split()[-3:] == ["efa", "$55.04", "$220.16"]
    # one node: the table as it always was
    assert offers_table(offers, None).splitlines()[0].split()[-1] == "PRICE"


def test_catalog_offers_carry_the_types_network() -> None:
    from iacrun.orchestrator.models.requirements import Requirements
    from iacrun.orchestrator.models.resources import ResourcesSpec
    from iacrun.orchestrator.offers.catalog.match import CatalogOfferSource

    source = CatalogOfferSource("aws")
    wanted = Requirements(resources=ResourcesSpec.model_validate({"gpu": "H100:8"}))
    offers = {o.instance_type: o for o in source.offers(wanted)}
    assert offers, "the shipped catalog has 8xH100 types"
    assert offers["p5.48xlarge"].cluster_network == "efa"
