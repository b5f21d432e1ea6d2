"""The documented IAM policy and Azure role cover every resource type and call the programs,
`iacrun doctor`'s probe and the Azure role check use — and nothing more."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from iacrun.stacks import aws, azure, probe
from iacrun.stacks.permissions import (
    AWS_ACTIONS,
    AZURE_ACTIONS,
    PROVIDER_TYPES,
    needed_actions,
)
from iacrun.stacks.preview import PreviewResult, preview

from .conftest import make_spec

DOCS = Path(__file__).resolve().parents[2] / "docs" / "permissions"


def _used(results: list[PreviewResult]) -> set[str]:
    used = set()
    for result in results:
        used |= {r.type for r in result.resources if r.type not in PROVIDER_TYPES}
        used |= {c.token for c in result.calls}
    return used


def aws_uses() -> set[str]:
    results = [
        preview(aws.program(make_spec("aws", **options)), default_vpc=default_vpc)
        for options in ({}, {"gpu": False}, {"spot": True, "max_price": 2.0})
        for default_vpc in (True, False)
    ]
    results.append(preview(aws.program(make_spec("aws", network="iacrun-vpc"))))
    # a cluster: placement group; on an EFA type the launch template and Elastic IPs
    results.append(preview(aws.program(make_spec("aws", nodes=2))))

    def efa(token: str, args: dict[str, Any]) -> dict[str, Any] | None:
        if token.endswith("getInstanceType"):
            return {"id": "t", "efaSupported": True, "efaMaximumInterfaces": 4}
        return None

    cluster = make_spec("aws", nodes=2, instance_type="p4d.24xlarge", cluster_network="efa")
    results.append(preview(aws.program(cluster), answers=efa))

    def answers(token: str, args: dict[str, Any]) -> dict[str, Any] | None:
        if token.endswith("getCallerIdentity"):
            return {"accountId": "1", "arn": "arn:aws:iam::1:user/x", "id": "1"}
        return {"value": 8.0, "id": "q"}

    results.append(preview(probe.aws_program(["us-east-1"]), answers=answers))
    return _used(results)


def azure_uses() -> set[str]:
    results = [
        preview(azure.program(make_spec("azure", **options)))
        for options in (
            {},
            {"gpu": False},
            {"spot": True, "max_price": 2.0},
            {"instance_type": "Standard_NC24ads_A100_v4"},
            {"azure_self_delete": False},
            # a cluster: placement group; on an ND size the availability set
            {"nodes": 2},
            {
                "nodes": 2,
                "instance_type": "Standard_ND96isr_H100_v5",
                "cluster_network": "infiniband",
            },
        )
    ]
    urls: list[str] = []

    def fetch(url: str, token: str) -> Any:
        urls.append(url)
        return {"value": []}

    def answers(token: str, args: dict[str, Any]) -> dict[str, Any] | None:
        return {
            "subscriptionId": "s",
            "objectId": "o",
            "tenantId": "t",
            "clientId": "c",
            "token": "x",
        }

    results.append(preview(probe.azure_program(["eastus"], fetch=fetch), answers=answers))
    used = _used(results)
    used |= {"rest:compute-usages" for u in urls if "/usages?" in u}
    used |= {"rest:compute-skus" for u in urls if "/skus?" in u}
    backend = Path(__file__).resolve().parents[2] / "orchestrator" / "backends" / "azure.py"
    if "Microsoft.Authorization/permissions" in backend.read_text():
        used.add("rest:authorization-permissions")
    return used


@pytest.mark.parametrize(
    ("table", "uses"), [(AWS_ACTIONS, aws_uses), (AZURE_ACTIONS, azure_uses)], ids=["aws", "azure"]
)
def test_every_type_and_call_is_in_the_table_and_every_row_is_used(table: Any, uses: Any) -> None:
    used = uses()
    assert used - set(table) == set(), "add these to stacks/permissions.py"
    assert set(table) - used == set(), "no program uses these rows any more"


def test_the_aws_policy_is_exactly_what_the_table_needs() -> None:
    policy = json.loads((DOCS / "aws-iam-policy.json").read_text())
    granted: set[str] = set()
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        granted |= set(statement["Action"])
        if statement["Action"] == ["iam:CreateServiceLinkedRole"]:
            assert statement["Condition"] == {
                "StringEquals": {"iam:AWSServiceName": "spot.amazonaws.com"}
            }
    assert granted == needed_actions(AWS_ACTIONS)


def test_the_azure_role_is_exactly_what_the_table_needs() -> None:
    role = json.loads((DOCS / "azure-role.json").read_text())
    assert role["IsCustom"] is True and role["NotActions"] == []
    assert set(role["Actions"]) == needed_actions(AZURE_ACTIONS)
    assert all(a.startswith("Microsoft.") for a in role["Actions"])
