"""StackSpec: what a stack program gets, built from an offer and a job."""

from __future__ import annotations

from datetime import datetime

import pytest
from pydantic import ValidationError

from iacrun.stacks.spec import StackSpec, build_stack_spec

from .conftest import NOW, client_key, host_key, job, make_spec, offer


def test_built_from_an_offer_and_a_job() -> None:
    spec = make_spec("aws", spot=True, max_price=0.7)
    assert (spec.cloud, spec.region, spec.instance_type) == ("aws", "us-east-1", "g5.2xlarge")
    assert spec.spot and spec.max_price == 0.7
    assert spec.gpu and spec.disk_gb == 150
    assert spec.python == "3.11" and spec.image is None
    assert spec.max_duration == 7200
    assert spec.deadline == 7200 + 1800
    assert spec.expires_at == datetime.fromisoformat("2025-01-02T05:34:05+00:00")
    assert spec.tags == {
        "Name": "iacrun-train-1",
        "iacrun:run": "train-1",
        "iacrun:stack": "train-1-7",
        "iacrun:expires-at": "2025-01-02T05:34:05Z",
        "managed-by": "iacrun",
    }


def test_max_price_only_for_spot() -> None:
    assert make_spec("aws", spot=False, max_price=0.7).max_price is None


def test_without_max_duration_there_is_no_deadline_and_no_expiry() -> None:
    spec = make_spec("azure", job_=job(max_duration=None))
    assert spec.deadline is None and spec.expires_at is None
    assert spec.tags["iacrun:expires-at"] == "none"


def test_disk_defaults_to_the_offer_then_100_gb() -> None:
    bare = offer("aws", gpu=False).model_copy(
        update={"resources": offer("aws", gpu=False).resources.model_copy(update={"disk_gb": None})}
    )
    spec = build_stack_spec(
        bare,
        job(),
        stack_name="s-1",
        ssh_public_key=client_key().public_openssh,
        host_key=host_key(),
        ssh_cidrs=["203.0.113.9"],
        now=NOW,
    )
    assert spec.disk_gb == 100
    assert spec.ssh_cidrs == ["203.0.113.9/32"]  # an address becomes its /32


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"ssh_cidrs": ["not-an-ip"]}, "is not an IP address or CIDR block"),
        ({"ssh_cidrs": []}, "at least 1 item"),
        ({"stack_name": "bad name"}, "not a valid stack name"),
        ({"ssh_public_key": "AAAA"}, "OpenSSH format"),
        ({"image": "ubuntu"}, "python and image exclude each other"),
        ({"max_duration": 60}, "job.max_duration"),
        ({"run_name": "other"}, "job.run_name differs"),
        ({"disk_gb": 4}, "greater than or equal to 8"),
        ({"expires_at": datetime(2025, 1, 1)}, "time zone"),
        ({"extra": 1}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_specs_are_refused(change: dict[str, object], message: str) -> None:
    data = make_spec().model_dump()
    data.update(change)
    with pytest.raises(ValidationError, match=message):
        StackSpec.model_validate(data)


def test_only_cloud_offers_have_a_stack() -> None:
    with pytest.raises(ValueError, match="not a cloud backend"):
        build_stack_spec(
            offer("aws").model_copy(update={"backend": "local"}),
            job(),
            stack_name="s",
            ssh_public_key=client_key().public_openssh,
            host_key=host_key(),
            ssh_cidrs=["10.0.0.1/32"],
        )
