"""The cloud backend's step from an offer and a job to a StackSpec, and the stack's name."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from iacrun.orchestrator.backends.stack_spec import (
    StackName,
    build_stack_spec,
    parse_stack_name,
    stack_name_for,
)
from iacrun.stacks.spec import StackSpec
from tests.stacks.conftest import CALLER, NOW, client_key, host_key, job

from .conftest import offer


def spec_from_offer(
    backend: str = "aws",
    *,
    gpu: bool = True,
    spot: bool = False,
    max_price: float | None = None,
    job_: dict[str, Any] | None = None,
    **options: Any,
) -> StackSpec:
    return build_stack_spec(
        offer(backend, gpu=gpu, spot=spot),
        job_ if job_ is not None else job(),
        stack_name=options.pop("stack_name", "train-1-7"),
        ssh_public_key=client_key().public_openssh,
        host_key=host_key(),
        ssh_cidrs=[CALLER],
        max_price=max_price,
        now=NOW,
        **options,
    )


def test_the_stack_of_a_run_is_named_after_the_run_its_id_and_the_home() -> None:
    assert stack_name_for("train-1", 7, "k3x9q2ab") == "train-1-7-k3x9q2ab"
    assert stack_name_for("train-1", "<id>", "k3x9q2ab") == "train-1-<id>-k3x9q2ab"
    # two homes, the same first run: two names
    assert stack_name_for("train", 1, "k3x9q2ab") != stack_name_for("train", 1, "m0p4zz71")


@pytest.mark.parametrize(
    ("name", "parsed"),
    [
        ("train-1-k3x9q2ab", StackName("train", 1, "k3x9q2ab")),
        ("brave-otter-12-k3x9q2ab", StackName("brave-otter", 12, "k3x9q2ab")),
        ("exp-3-1-k3x9q2ab", StackName("exp-3", 1, "k3x9q2ab")),
        # older versions: `<run>-<id>`, no home
        ("train-1", StackName("train", 1, None)),
        ("brave-otter-12", StackName("brave-otter", 12, None)),
        # a run called `exp-k3x9q2ab` with id 4, by an older version: its last part is digits
        ("exp-k3x9q2ab-4", StackName("exp-k3x9q2ab", 4, None)),
        # a tag starts with a letter: `train-1-12345678` is run `train-1`, id 12345678
        ("train-1-12345678", StackName("train-1", 12345678, None)),
        # not iacrun's form
        ("someone-elses", None),
        ("dev", None),
        ("Train-1", None),
        ("train-1-K3X9Q2AB", None),
    ],
)
def test_stack_names_are_read_back(name: str, parsed: StackName | None) -> None:
    assert parse_stack_name(name) == parsed


def test_the_longest_stack_name_is_a_valid_stack_and_azure_group_name() -> None:
    """Run names have at most 41 characters; the stack name must stay a Pulumi stack name
    (100 characters at most) and `iacrun-<stack>` an Azure resource group name (90 at most)."""
    from iacrun.stacks.azure import resource_group_name
    from iacrun.stacks.engine import check_stack_name

    longest = stack_name_for("r" + "x" * 40, 10**9, "k3x9q2ab")
    assert check_stack_name(longest) == longest
    spec = spec_from_offer("azure", stack_name=longest)
    assert len(resource_group_name(spec)) <= 90


def test_the_same_offer_and_job_give_the_spec_the_stack_tests_use() -> None:
    from tests.stacks.conftest import make_spec

    for cloud in ("aws", "azure"):
        for gpu in (True, False):
            assert spec_from_offer(cloud, gpu=gpu) == make_spec(cloud, gpu=gpu)  # type: ignore[arg-type]
    assert spec_from_offer("aws", spot=True, max_price=0.7) == make_spec(
        "aws", spot=True, max_price=0.7
    )


def test_built_from_an_offer_and_a_job() -> None:
    spec = spec_from_offer("aws", spot=True, max_price=0.7)
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
    assert spec_from_offer("aws", spot=False, max_price=0.7).max_price is None


def test_without_max_duration_there_is_no_deadline_and_no_expiry() -> None:
    spec = spec_from_offer("azure", job_=job(max_duration=None))
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


def test_dry_runs_in_two_homes_name_different_stacks(tmp_path: Path) -> None:
    """`iacrun up --dry-run` shows the stack a run would get: each home's own, tagged."""
    from iacrun.orchestrator.paths import home_tag
    from tests.orchestrator.backends.test_cloud_backends import aws_backend, run_spec

    labels = []
    for name in ("a", "b"):
        home = tmp_path / name
        plan = aws_backend(tmp_path, environ={}, home=home).dry_run(
            run_spec(tmp_path), offer("aws")
        )
        assert plan.stack_name == f"train-1-<id>-{home_tag(home)}"
        assert plan.spec.owner is not None and plan.spec.owner.startswith(home_tag(home) + " ")
        labels.append(plan.stack_name)
    assert labels[0] != labels[1]


def test_the_owner_is_tagged_on_every_resource_that_takes_tags() -> None:
    spec = spec_from_offer("aws", owner="k3x9q2ab alice@laptop")
    assert spec.tags["iacrun:owner"] == "k3x9q2ab alice@laptop"
    assert "iacrun:owner" not in spec_from_offer("aws").tags
