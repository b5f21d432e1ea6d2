"""Collecting offers across backends, the policies, and the one-line "no offer" explanations."""

from __future__ import annotations

import pytest

from iacrun.orchestrator.errors import NoOfferError
from iacrun.orchestrator.models.requirements import Requirements
from iacrun.orchestrator.models.resources import ResourcesSpec
from iacrun.orchestrator.offers.catalog import CatalogOfferSource
from iacrun.orchestrator.offers.model import InstanceResources, Offer
from iacrun.orchestrator.offers.plan import (
    collect_offers,
    describe_need,
    policy_filter,
)
from iacrun.orchestrator.paths import shown_config_file


def req(**kw: object) -> Requirements:
    resources = {k: kw.pop(k) for k in list(kw) if k in ("gpu", "cpu", "memory", "disk")}
    return Requirements(resources=ResourcesSpec.model_validate(resources), **kw)  # type: ignore[arg-type]


class Fixed:
    """A backend with a fixed list of offers; records what it was asked."""

    def __init__(self, name: str, offers: list[Offer]) -> None:
        self.name = name
        self._offers = offers
        self.asked: list[Requirements] = []

    def offers(self, requirements: Requirements) -> list[Offer]:
        self.asked.append(requirements)
        return list(self._offers)


def offer(
    backend: str, price: float, *, spot: bool = False, region: str = "r1", available: bool = True
) -> Offer:
    return Offer(
        backend=backend,
        region=region,
        instance_type=f"{backend}-box",
        resources=InstanceResources(cpus=4, memory_gb=16),
        spot=spot,
        price=price,
        available=available,
        note=None if available else "busy",
    )


def test_backends_are_asked_for_the_resources_alone_and_policies_are_applied_here() -> None:
    a = Fixed("a", [offer("a", 2.0), offer("a", 0.5, spot=True)])
    plan = collect_offers([a], req(spot_policy="on-demand", max_price=3, regions=["r1"]))
    asked = a.asked[0]
    assert (asked.spot_policy, asked.max_price, asked.regions) == ("auto", None, None)
    assert [o.price for o in plan.offers] == [2.0]


def test_auto_interleaves_spot_and_on_demand_by_price_and_unavailable_go_last() -> None:
    a = Fixed("a", [offer("a", 2.0), offer("a", 0.5, spot=True), offer("a", 0.1, available=False)])
    b = Fixed("b", [offer("b", 1.0), offer("b", 1.5, spot=True)])
    plan = collect_offers([a, b], req(spot_policy="auto"))
    assert [(o.price, o.spot) for o in plan.offers] == [
        (0.5, True),
        (1.0, False),
        (1.5, True),
        (2.0, False),
        (0.1, False),
    ]
    assert plan.available[-1].price == 2.0


def test_local_offers_ignore_regions() -> None:
    local = Fixed("local", [offer("local", 0.0, region="local")])
    plan = collect_offers([local], req(regions=["us-east-1"]))
    assert [o.backend for o in plan.offers] == ["local"]


def test_max_price_eliminating_everything_names_the_cheapest_offer() -> None:
    source = CatalogOfferSource("aws")
    with pytest.raises(NoOfferError) as err:
        collect_offers([source], req(gpu="H100:8", max_price=20))
    assert str(err.value) == (
        "no offer has 8xH100 under $20/h; the cheapest is $55.04/h on aws p5.48xlarge (us-east-1)"
    )


def test_spot_only_with_no_spot_market_says_so() -> None:
    a = Fixed("a", [offer("a", 2.0)])
    with pytest.raises(
        NoOfferError, match=r"no spot offer has .*; the cheapest other is \$2/h on a a-box"
    ):
        collect_offers([a], req(spot_policy="spot"))


def test_regions_and_instance_types_that_eliminate_everything() -> None:
    aws = CatalogOfferSource("aws")
    with pytest.raises(
        NoOfferError, match=r"no offer has 1xL40S in regions mars-1; it is offered in aws "
    ):
        collect_offers([aws], req(gpu="L40S", regions=["mars-1"]))
    with pytest.raises(
        NoOfferError,
        match=r"none of the instance types m7i.large has 1xL40S; the cheapest that does",
    ):
        collect_offers([aws], req(gpu="L40S", instance_types=["m7i.large"]))


def test_resources_nothing_has_name_the_requirement_and_the_nearest() -> None:
    sources = [CatalogOfferSource("aws"), CatalogOfferSource("azure")]
    with pytest.raises(NoOfferError) as err:
        collect_offers(sources, req(gpu="H100:16"))
    assert str(err.value) == (
        "no offer has 16xH100 on aws, azure: no instance type meets gpu H100:16; "
        "the most there is: 8xH100 (80GB) on aws p5.48xlarge"
    )


def test_backends_filter_and_unconfigured_backends() -> None:
    a = Fixed("a", [offer("a", 1.0)])
    with pytest.raises(
        NoOfferError, match=r"no backend to ask for .*: backend gcp is not configured"
    ):
        collect_offers([a], req(backends=["gcp"]))
    plan = collect_offers([a, Fixed("b", [offer("b", 0.1)])], req(backends=["a", "gcp"]))
    assert [o.backend for o in plan.offers] == ["a"]
    assert plan.notes == [f"backend gcp is not configured in {shown_config_file()}"]


def test_only_unavailable_offers() -> None:
    a = Fixed("a", [offer("a", 1.0, available=False)])
    with pytest.raises(NoOfferError, match=r"no offer is available right now: a a-box \(busy\)"):
        collect_offers([a], req())


def test_raise_on_empty_false_returns_an_empty_plan() -> None:
    assert collect_offers([], req(), raise_on_empty=False).offers == []


def test_policy_filter_keeps_the_lead_contract() -> None:
    offers = [offer("a", 3.0), offer("a", 1.0, spot=True), offer("b", 2.0, region="r2")]
    assert [o.price for o in policy_filter(offers, req(spot_policy="auto"))] == [1.0, 2.0, 3.0]
    assert [o.price for o in policy_filter(offers, req(regions=["r2"]))] == [2.0]


@pytest.mark.parametrize(
    ("resources", "text"),
    [
        ({"gpu": "H100:8"}, "8xH100"),
        ({"gpu": "80GB"}, "1x80GB GPU"),
        ({"gpu": "A100:80GB:2..4"}, "2..4xA100 (80GB)"),
        ({"gpu": {"count": "1..", "total_memory": "160GB.."}}, "1..xany GPU with 160GB.. in total"),
        ({"cpu": "4.."}, "4.. CPUs and 8GB.. memory"),
    ],
)
def test_describe_need(resources: dict[str, object], text: str) -> None:
    assert describe_need(ResourcesSpec.model_validate(resources)) == text
