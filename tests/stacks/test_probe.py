"""The read-only probe programs of `iacrun doctor`, under Pulumi's mocks: what they ask the
provider (every invoke and its arguments), and what they make of the answers."""

from __future__ import annotations

from typing import Any

import pytest

from iacrun.stacks.preview import preview
from iacrun.stacks.probe import AWS_QUOTA_CODES, aws_program, aws_quota_family, azure_program

QUOTA = "aws:servicequotas/getServiceQuota:getServiceQuota"
IDENTITY = "aws:index/getCallerIdentity:getCallerIdentity"
#: what Service Quotas would say: a fresh account with no G quota in us-east-1
LIMITS = {("us-east-1", "L-DB2E81BA"): 0.0, ("us-east-1", "L-417A185B"): 96.0}


def aws_answer(token: str, args: dict[str, Any]) -> dict[str, Any]:
    if token == IDENTITY:
        return {"accountId": "123456789012", "arn": "arn:aws:iam::123456789012:user/ci", "id": "x"}
    if token == QUOTA:
        return {"value": LIMITS.get((args["region"], args["quotaCode"]), 32.0), "id": "q"}
    raise AssertionError(f"unexpected invoke {token}")


def test_aws_probe_asks_for_identity_and_every_family_quota_per_region() -> None:
    result = preview(aws_program(["us-east-1", "eu-west-1"]), answers=aws_answer)
    assert len(result.calls_to(IDENTITY)) == 1
    asked = sorted((c.args["region"], c.args["quotaCode"]) for c in result.calls_to(QUOTA))
    codes = [code for family in AWS_QUOTA_CODES.values() for code in family.values()]
    assert asked == sorted((r, c) for r in ("us-east-1", "eu-west-1") for c in codes)
    assert {c.args["serviceCode"] for c in result.calls_to(QUOTA)} == {"ec2"}
    assert result.resources == []  # a probe creates nothing
    assert result.outputs["account"] == "123456789012"
    assert result.outputs["identity"] == "arn:aws:iam::123456789012:user/ci"
    quotas = result.outputs["quotas"]
    assert quotas["us-east-1"]["g/on-demand"] == {"limit": 0.0, "used": None}
    assert quotas["us-east-1"]["p/on-demand"] == {"limit": 96.0, "used": None}
    assert quotas["eu-west-1"]["g/spot"] == {"limit": 32.0, "used": None}


@pytest.mark.parametrize(
    ("instance_type", "family"),
    [
        ("g5.xlarge", "g"),
        ("g4dn.12xlarge", "g"),
        ("vt1.3xlarge", "g"),
        ("p4d.24xlarge", "p"),
        ("p5.48xlarge", "p"),
        ("m6i.large", "standard"),
        ("c7g.xlarge", "standard"),
        ("inf2.xlarge", None),
        ("trn1.32xlarge", None),
        ("dl1.24xlarge", None),
        ("x2idn.16xlarge", None),
    ],
)
def test_aws_quota_families(instance_type: str, family: str | None) -> None:
    assert aws_quota_family(instance_type) == family


def test_azure_probe_reads_usages_and_sku_families_with_the_providers_token() -> None:
    fetched: list[tuple[str, str]] = []

    def fetch(url: str, token: str) -> Any:
        fetched.append((url, token))
        if "/usages?" in url:
            return {
                "value": [
                    {
                        "name": {"value": "standardNCADSA100v4Family"},
                        "limit": 24,
                        "currentValue": 0,
                    },
                    {"name": {"value": "cores"}, "limit": 100, "currentValue": 4},
                ]
            }
        return {
            "value": [
                {
                    "resourceType": "virtualMachines",
                    "name": "Standard_NC24ads_A100_v4",
                    "family": "standardNCADSA100v4Family",
                },
                {"resourceType": "disks", "name": "Premium_LRS"},
            ]
        }

    def answer(token: str, args: dict[str, Any]) -> dict[str, Any]:
        if token == "azure-native:authorization:getClientConfig":
            return {
                "subscriptionId": "sub-1",
                "objectId": "obj-1",
                "tenantId": "t",
                "clientId": "c",
            }
        if token == "azure-native:authorization:getClientToken":
            return {"token": "token-abc"}
        raise AssertionError(f"unexpected invoke {token}")

    result = preview(azure_program(["eastus"], fetch=fetch), answers=answer)
    assert result.resources == []
    base = "https://management.azure.com/subscriptions/sub-1/providers/Microsoft.Compute"
    assert fetched == [
        (f"{base}/locations/eastus/usages?api-version=2024-07-01", "token-abc"),
        (f"{base}/skus?api-version=2021-07-01&$filter=location eq 'eastus'", "token-abc"),
    ]
    assert result.outputs["account"] == "sub-1"
    assert result.outputs["quotas"] == {
        "eastus": {"standardNCADSA100v4Family": {"limit": 24, "used": 0}}
    }
    assert result.outputs["sizes"] == {
        "eastus": {"Standard_NC24ads_A100_v4": "standardNCADSA100v4Family"}
    }
    assert "token-abc" not in str(result.outputs)
