"""The offers table, the grouped table and the JSON output, checked as text."""

from __future__ import annotations

import json

import pytest

from iacrun.cli.tables import (
    gpu_key,
    group_offers,
    groups_table,
    offers_json,
    offers_table,
    parse_group_by,
)
from iacrun.orchestrator.models.units import format_price
from iacrun.orchestrator.offers.model import Gpu, InstanceResources, Offer


def offer(
    backend: str,
    region: str,
    itype: str,
    price: float,
    gpus: int = 1,
    *,
    spot: bool = False,
    gpu: str = "A10G",
) -> Offer:
    return Offer(
        backend=backend,
        region=region,
        instance_type=itype,
        resources=InstanceResources(
            cpus=8, memory_gb=32, gpus=(Gpu(name=gpu, memory_gb=24),) * gpus, disk_gb=100
        ),
        spot=spot,
        price=price,
    )


OFFERS = [
    offer("aws", "us-east-2", "g5.xlarge", 0.36, spot=True),
    offer("aws", "us-east-1", "g5.xlarge", 1.006),
    offer("azure", "eastus", "Standard_NV36ads_A10_v5", 3.2, gpu="A10"),
    offer("aws", "us-east-1", "g5.12xlarge", 5.672, 4),
]


def test_table_is_dstacks_with_the_summary_line() -> None:
    text = offers_table(OFFERS, 2)
    lines = text.splitlines()
    assert lines[0].split() == ["#", "BACKEND", "REGION", "INSTANCE", "RESOURCES", "SPOT", "PRICE"]
    assert lines[1].split()[:4] == ["1", "aws", "us-east-2", "g5.xlarge"]
    assert "8xCPU, 32GB, 1xA10G (24GB), 100GB disk" in lines[1]
    assert lines[1].rstrip().endswith("yes   $0.36")
    assert lines[-1] == "Shown 2 of 4 offers, $5.672 max"


def test_all_shown_has_no_summary() -> None:
    assert "Shown" not in offers_table(OFFERS, None)


@pytest.mark.parametrize(
    ("price", "text"), [(0, "$0"), (1.0, "$1"), (98.32, "$98.32"), (0.12345, "$0.1235")]
)
def test_format_price(price: float, text: str) -> None:
    assert format_price(price) == text


def test_group_by_gpu_and_backend() -> None:
    assert parse_group_by("gpu, backend") == ["gpu", "backend"]
    groups = group_offers(OFFERS, ["gpu", "backend"])
    assert [g.key for g in groups] == [
        ("A10G:24GB:1", "aws"),
        ("A10:24GB:1", "azure"),
        ("A10G:24GB:4", "aws"),
    ]
    text = groups_table(OFFERS, ["gpu", "backend"])
    header, first, *_ = text.splitlines()
    assert header.split() == ["#", "GPU", "BACKEND", "SPOT", "PRICE", "$/GPU", "OFFERS", "CHEAPEST"]
    assert first.split() == [
        "1",
        "A10G:24GB:1",
        "aws",
        "spot,on-demand",
        "$0.36..$1.006",
        "$0.36..$1.006",
        "2",
        "aws",
        "g5.xlarge",
    ]
    assert "$1.418" in text  # 5.672 / 4 GPUs


def test_group_by_rejects_unknown_keys() -> None:
    with pytest.raises(
        ValueError, match="cannot group by zone; use gpu, backend, region, instance"
    ):
        parse_group_by("gpu,zone")


def test_gpu_key_of_a_cpu_offer() -> None:
    assert gpu_key(offer("aws", "r", "m7i.large", 0.1, 0)) == "-"


def test_json_has_every_field_and_the_totals() -> None:
    doc = json.loads(offers_json(OFFERS, 1, notes=["n"]))
    assert doc["shown"] == 1 and doc["total"] == 4 and doc["max_price"] == 5.672
    assert doc["offers"][0]["resources"]["gpus"][0]["name"] == "A10G"
    assert doc["notes"] == ["n"]
