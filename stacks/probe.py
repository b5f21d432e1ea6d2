"""Read-only probes of a cloud account, as Pulumi programs that create nothing.

`iacrun doctor` runs one in a throwaway stack to learn who the credentials resolve to and the
vCPU quotas of the GPU families in the configured regions, through the same provider plugin and
credentials a run uses (so what doctor says is what `up` will meet). Programs export:

    account   the AWS account id / the Azure subscription id
    identity  the caller's ARN / the Azure object id
    quotas    {region: {family: {"limit": vCPUs, "used": vCPUs or None}}}

AWS quotas come from Service Quotas (EC2's per-family vCPU quotas, on-demand and spot). Azure's
come from the Compute usages API of each region, read with the provider's own token; Azure
families are reported by the names the usages API gives (`standardNCADSA100v4Family`), and
`sizes` maps each VM size of the region to its family (from the Compute resource SKUs API).
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from typing import Any

#: EC2 vCPU quotas (Service Quotas codes) of the families iacrun offers, per market
AWS_QUOTA_CODES: Mapping[str, Mapping[str, str]] = {
    "g": {"on-demand": "L-DB2E81BA", "spot": "L-3819A6DF"},  # G and VT
    "p": {"on-demand": "L-417A185B", "spot": "L-7212CCBC"},
    "standard": {"on-demand": "L-1216C47A"},  # A, C, D, H, I, M, R, T, Z
}
AZURE_API = "https://management.azure.com"
AZURE_USAGES_VERSION = "2024-07-01"
AZURE_SKUS_VERSION = "2021-07-01"

Program = Callable[[], None]
Fetch = Callable[[str, str], Any]


def aws_quota_family(instance_type: str) -> str | None:
    """The EC2 vCPU quota family of an instance type (g5.xlarge → g, p4d.24xlarge → p,
    m6i.large → standard); None for families with quotas of their own not probed here
    (Inf, Trn, DL, F, X, HPC, high memory)."""
    prefix = instance_type.split(".", 1)[0].lower()
    if prefix.startswith(("g", "vt")):
        return "g"
    if prefix.startswith("p"):
        return "p"
    if prefix[:1] in tuple("acdhimrtz") and not prefix.startswith(("inf", "hpc", "dl", "trn")):
        return "standard"
    return None


def aws_program(regions: Sequence[str]) -> Program:
    """Who the AWS credentials are, and the EC2 vCPU quotas of each family in `regions`."""

    def program() -> None:
        import pulumi
        import pulumi_aws as aws

        caller = aws.get_caller_identity()
        pulumi.export("account", caller.account_id)
        pulumi.export("identity", caller.arn)
        quotas: dict[str, dict[str, dict[str, Any]]] = {}
        for region in regions:
            per_family: dict[str, dict[str, Any]] = {}
            for family, codes in AWS_QUOTA_CODES.items():
                for market, code in codes.items():
                    quota = aws.servicequotas.get_service_quota(
                        service_code="ec2", quota_code=code, region=region
                    )
                    per_family[f"{family}/{market}"] = {"limit": quota.value, "used": None}
            quotas[region] = per_family
        pulumi.export("quotas", quotas)

    return program


def azure_program(regions: Sequence[str], fetch: Fetch | None = None) -> Program:
    """Who the Azure credentials are, and the vCPU usage and limit of each family in `regions`.

    `fetch(url, token)` reads one ARM GET (JSON); the default uses urllib."""
    get = fetch or _arm_get

    def program() -> None:
        import pulumi
        import pulumi_azure_native as azure

        config = azure.authorization.get_client_config()
        token = azure.authorization.get_client_token().token
        pulumi.export("account", config.subscription_id)
        pulumi.export("identity", config.object_id)
        subscription = f"{AZURE_API}/subscriptions/{config.subscription_id}"
        quotas: dict[str, dict[str, dict[str, Any]]] = {}
        sizes: dict[str, dict[str, str]] = {}
        for region in regions:
            usages = get(
                f"{subscription}/providers/Microsoft.Compute/locations/{region}/usages"
                f"?api-version={AZURE_USAGES_VERSION}",
                token,
            )
            quotas[region] = {
                str(u["name"]["value"]): {"limit": u["limit"], "used": u["currentValue"]}
                for u in usages.get("value", [])
                if str(u["name"]["value"]).endswith("Family")
            }
            skus = get(
                f"{subscription}/providers/Microsoft.Compute/skus?api-version="
                f"{AZURE_SKUS_VERSION}&$filter=location eq '{region}'",
                token,
            )
            sizes[region] = {
                str(s["name"]): str(s["family"])
                for s in skus.get("value", [])
                if s.get("resourceType") == "virtualMachines" and s.get("family")
            }
        pulumi.export("quotas", quotas)
        pulumi.export("sizes", sizes)

    return program


def _arm_get(url: str, token: str) -> Any:
    request = urllib.request.Request(
        url.replace(" ", "%20"), headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())
