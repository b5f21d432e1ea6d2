"""The provisioning loop against backends that fail on command, with a fake clock."""

from __future__ import annotations

import pytest

from iacrun.orchestrator.backends.base import Backend, ProgressCallback
from iacrun.orchestrator.backends.failover import (
    Backoff,
    failover_order,
    instance_family,
    provision_with_failover,
)
from iacrun.orchestrator.errors import CapacityError, CredentialsError, NoOfferError, QuotaError
from iacrun.orchestrator.host.transport import Host
from iacrun.orchestrator.models.requirements import Requirements
from iacrun.orchestrator.models.taskfile import RetrySpec
from iacrun.orchestrator.offers.model import InstanceResources, Offer
from iacrun.orchestrator.registry import RunRecord


def offer(backend: str, itype: str, region: str, price: float, *, available: bool = True) -> Offer:
    return Offer(
        backend=backend,
        region=region,
        instance_type=itype,
        resources=InstanceResources(cpus=8, memory_gb=32),
        price=price,
        available=available,
    )


Script = dict[tuple[str, str], list[Exception | None]]


class Scripted(Backend):
    """Answers each (type, region) with its script: an error to raise or None for a machine.

    Outcomes are used in turn; the last one repeats. Unscripted offers succeed. Every attempt
    is recorded."""

    def __init__(self, name: str, script: Script | None = None) -> None:
        self.name = name
        self.script = script or {}
        self.attempts: list[tuple[str, str]] = []

    def offers(self, requirements: Requirements) -> list[Offer]:
        return []

    def provision(self, run: RunRecord, offer: Offer, progress: ProgressCallback) -> Host:
        key = (offer.instance_type, offer.region)
        self.attempts.append(key)
        outcomes = self.script.get(key, [None])
        outcome = outcomes.pop(0) if len(outcomes) > 1 else outcomes[0]
        if outcome is not None:
            raise outcome
        return Host(kind="ssh", run_dir="/run", address=f"{offer.instance_type}.{offer.region}")

    def terminate(self, run: RunRecord) -> None:
        pass


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


RUN = RunRecord(id=1, name="r", status="provisioning", spec={}, submitted_at=0.0)
OFFERS = [
    offer("aws", "g6.xlarge", "us-east-1", 0.80),
    offer("aws", "g6.xlarge", "us-west-2", 0.81),
    offer("aws", "g5.xlarge", "us-east-1", 1.00),
    offer("azure", "Standard_NC4as_T4_v3", "eastus", 0.53),
    offer("azure", "Standard_NC8as_T4_v3", "eastus", 0.75),
    offer("aws", "g6.2xlarge", "us-east-1", 0.97),
    offer("aws", "g4dn.xlarge", "us-east-1", 0.20, available=False),
]


def keys(offers: list[Offer]) -> list[tuple[str, str, str]]:
    return [(o.backend, o.instance_type, o.region) for o in offers]


def test_order_is_cheapest_first_then_region_then_type_then_cloud() -> None:
    assert keys(failover_order(OFFERS)) == [
        ("azure", "Standard_NC4as_T4_v3", "eastus"),
        ("azure", "Standard_NC8as_T4_v3", "eastus"),
        ("aws", "g6.xlarge", "us-east-1"),
        ("aws", "g6.xlarge", "us-west-2"),
        ("aws", "g6.2xlarge", "us-east-1"),
        ("aws", "g5.xlarge", "us-east-1"),
    ]


def test_first_success_wins() -> None:
    aws, azure = Scripted("aws"), Scripted("azure")
    got, host = provision_with_failover(
        {"aws": aws, "azure": azure}, OFFERS, RUN, None, lambda _m: None
    )
    assert (
        got.instance_type == "Standard_NC4as_T4_v3"
        and host.address == "Standard_NC4as_T4_v3.eastus"
    )
    assert aws.attempts == []


def test_capacity_moves_to_the_next_region_then_type_then_cloud() -> None:
    azure = Scripted(
        "azure",
        {
            ("Standard_NC4as_T4_v3", "eastus"): [CapacityError("sold out")],
            ("Standard_NC8as_T4_v3", "eastus"): [CapacityError("sold out")],
        },
    )
    aws = Scripted(
        "aws", {("g6.xlarge", "us-east-1"): [CapacityError("InsufficientInstanceCapacity")]}
    )
    messages: list[str] = []
    got, _ = provision_with_failover(
        {"aws": aws, "azure": azure}, OFFERS, RUN, None, messages.append
    )
    assert (got.instance_type, got.region) == ("g6.xlarge", "us-west-2")
    assert azure.attempts == [
        ("Standard_NC4as_T4_v3", "eastus"),
        ("Standard_NC8as_T4_v3", "eastus"),
    ]
    assert aws.attempts == [("g6.xlarge", "us-east-1"), ("g6.xlarge", "us-west-2")]
    assert any("no capacity for aws g6.xlarge in us-east-1" in m for m in messages)


def test_quota_skips_the_family_in_that_region() -> None:
    azure = Scripted(
        "azure", {("Standard_NC4as_T4_v3", "eastus"): [QuotaError("NCASv3_T4 cores: 0 of 4")]}
    )
    aws = Scripted("aws")
    got, _ = provision_with_failover(
        {"aws": aws, "azure": azure}, OFFERS, RUN, None, lambda _m: None
    )
    assert azure.attempts == [("Standard_NC4as_T4_v3", "eastus")]  # NC8as shares the quota
    assert got.backend == "aws"
    assert instance_family("Standard_NC8as_T4_v3") == instance_family("Standard_NC4as_T4_v3")
    assert instance_family("g6e.12xlarge") == "g6e"


def test_without_retry_every_failure_gives_one_line() -> None:
    full = CapacityError("none left")
    aws = Scripted(
        "aws", {(o.instance_type, o.region): [full] for o in OFFERS if o.backend == "aws"}
    )
    azure = Scripted(
        "azure", {(o.instance_type, o.region): [full] for o in OFFERS if o.backend == "azure"}
    )
    clock = FakeClock()
    with pytest.raises(CapacityError) as err:
        provision_with_failover(
            {"aws": aws, "azure": azure},
            OFFERS,
            RUN,
            None,
            lambda _m: None,
            sleep=clock.sleep,
            clock=clock,
        )
    text = str(err.value)
    assert text.startswith(
        "no capacity for any of 6 offers: "
        "azure Standard_NC4as_T4_v3 eastus (no capacity: none left)"
    )
    assert text.endswith("and 3 more")
    assert clock.slept == []


def test_retry_on_no_capacity_backs_off_until_capacity_appears() -> None:
    full = CapacityError("full")
    script: Script = {(o.instance_type, o.region): [full] for o in OFFERS if o.backend == "aws"}
    script[("g6.xlarge", "us-east-1")] = [full, full, None]  # capacity on the third round
    aws = Scripted("aws", script)
    clock = FakeClock()
    waits: list[tuple[float, str]] = []
    got, host = provision_with_failover(
        {"aws": aws},
        [o for o in OFFERS if o.backend == "aws"],
        RUN,
        RetrySpec(on_events=["no-capacity"], duration=3600),
        lambda _m: None,
        sleep=clock.sleep,
        clock=clock,
        backoff=Backoff(first=30, most=300, jitter=0),
        on_wait=lambda s, why: waits.append((s, why)),
    )
    assert (got.instance_type, got.region) == ("g6.xlarge", "us-east-1")
    assert host.address == "g6.xlarge.us-east-1"
    assert clock.slept == [30.0, 60.0]
    assert waits[0][0] == 30.0
    assert waits[0][1].startswith("waiting for a machine: aws g6.xlarge us-east-1: no capacity")
    assert len(aws.attempts) == 4 + 4 + 1


def test_retry_stops_when_the_duration_is_spent() -> None:
    full = CapacityError("full")
    aws = Scripted("aws", {("g5.xlarge", "us-east-1"): [full]})
    clock = FakeClock()
    with pytest.raises(CapacityError, match=r"after retrying for 5m"):
        provision_with_failover(
            {"aws": aws},
            [offer("aws", "g5.xlarge", "us-east-1", 1.0)],
            RUN,
            RetrySpec(on_events=["no-capacity"], duration=300),
            lambda _m: None,
            sleep=clock.sleep,
            clock=clock,
            backoff=Backoff(first=120, most=600, jitter=0),
        )
    assert clock.slept == [120.0, 180.0]  # the last wait is cut to the time left
    assert len(aws.attempts) == 3


def test_retry_without_no_capacity_event_does_not_wait() -> None:
    aws = Scripted("aws", {("g5.xlarge", "us-east-1"): [CapacityError("full")]})
    clock = FakeClock()
    with pytest.raises(CapacityError):
        provision_with_failover(
            {"aws": aws},
            [offer("aws", "g5.xlarge", "us-east-1", 1.0)],
            RUN,
            RetrySpec(on_events=["error"], duration=3600),
            lambda _m: None,
            sleep=clock.sleep,
            clock=clock,
        )
    assert clock.slept == []


def test_other_errors_stop_the_loop() -> None:
    aws = Scripted("aws", {("g6.xlarge", "us-east-1"): [CredentialsError("expired token")]})
    with pytest.raises(CredentialsError, match="expired token"):
        provision_with_failover(
            {"aws": aws}, [o for o in OFFERS if o.backend == "aws"], RUN, None, lambda _m: None
        )
    assert aws.attempts == [("g6.xlarge", "us-east-1")]


def test_nothing_available_and_unknown_backends() -> None:
    with pytest.raises(NoOfferError, match="no offer is available"):
        provision_with_failover({}, [OFFERS[-1]], RUN, None, lambda _m: None)
    with pytest.raises(CapacityError, match=r"\(backend not configured\)"):
        provision_with_failover({}, OFFERS[:1], RUN, None, lambda _m: None)


def test_backoff_doubles_up_to_the_ceiling() -> None:
    assert [Backoff(30, 300, 0).delay(n) for n in range(1, 7)] == [30, 60, 120, 240, 300, 300]
    assert [Backoff().delay(n, lambda: 0.5) for n in range(1, 6)] == [5, 10, 20, 40, 60]


def test_backoff_is_jittered_within_its_spread() -> None:
    assert Backoff().delay(2, lambda: 0.0) == 8.0 and Backoff().delay(2, lambda: 1.0) == 12.0


def test_no_offer_available_waits_with_replanning_when_retrying() -> None:
    busy = offer("ssh", "gpu1", "gpu1", 0.0, available=False).model_copy(
        update={"note": "busy with train-1"}
    )
    free = busy.model_copy(update={"available": True, "note": None})
    plans = [[busy], [free]]
    ssh = Scripted("ssh")
    clock = FakeClock()
    lines: list[str] = []
    got, _ = provision_with_failover(
        {"ssh": ssh},
        [busy],
        RUN,
        RetrySpec(on_events=["no-capacity"], duration=600),
        lines.append,
        sleep=clock.sleep,
        clock=clock,
        backoff=Backoff(jitter=0),
        replan=lambda: plans.pop(0),
    )
    assert got == free and clock.slept == [5.0, 10.0] and ssh.attempts == [("gpu1", "gpu1")]
    assert lines[0].startswith("waiting 5s for a machine: ssh gpu1: busy with train-1 (retry until")


def test_no_offer_available_without_retry_is_refused_at_once() -> None:
    busy = offer("ssh", "gpu1", "gpu1", 0.0, available=False)
    with pytest.raises(NoOfferError):
        provision_with_failover({}, [busy], RUN, None, lambda _m: None)


def test_the_pace_of_waiting_depends_on_what_is_waited_for() -> None:
    """Own hosts are asked again within seconds; clouds, where a try may create a stack, less."""
    full = CapacityError("full")
    clock = FakeClock()
    with pytest.raises(CapacityError):
        provision_with_failover(
            {"aws": Scripted("aws", {("g5.xlarge", "us-east-1"): [full]})},
            [offer("aws", "g5.xlarge", "us-east-1", 1.0)],
            RUN,
            RetrySpec(on_events=["no-capacity"], duration=40),
            lambda _m: None,
            sleep=clock.sleep,
            clock=clock,
        )
    assert 24 <= clock.slept[0] <= 36  # 30s ±20%
    clock = FakeClock()
    busy = offer("ssh", "gpu1", "gpu1", 0.0, available=False)
    with pytest.raises(CapacityError, match=r"^no capacity after retrying for 40s: ssh gpu1"):
        provision_with_failover(
            {"ssh": Scripted("ssh")},
            [busy],
            RUN,
            RetrySpec(on_events=["no-capacity"], duration=40),
            lambda _m: None,
            sleep=clock.sleep,
            clock=clock,
            replan=lambda: [busy],
        )
    assert 4 <= clock.slept[0] <= 6  # 5s ±20%
