"""Settling the pending operations of an interrupted update, as data (stacks/pending.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from iacrun.stacks.pending import Leak, read_ledger, settle, write_ledger

STACK_URN = "urn:pulumi:s::iacrun::pulumi:pulumi:Stack::iacrun-s"
AWS_PROVIDER = "urn:pulumi:s::iacrun::pulumi:providers:aws::default_7_51_1"
AZ_PROVIDER = "urn:pulumi:s::iacrun::pulumi:providers:azure-native::default"


def deployment(*pending: dict[str, Any], subscription: str | None = None) -> dict[str, Any]:
    az_inputs = {"subscriptionId": subscription, "clientSecret": "x"} if subscription else {}
    return {
        "version": 3,
        "deployment": {
            "resources": [
                {"urn": STACK_URN, "type": "pulumi:pulumi:Stack", "custom": False},
                {
                    "urn": AWS_PROVIDER,
                    "id": "p1",
                    "type": "pulumi:providers:aws",
                    "inputs": {"region": "us-west-2", "accessKey": "secret!"},
                },
                {
                    "urn": AZ_PROVIDER,
                    "id": "p2",
                    "type": "pulumi:providers:azure-native",
                    "inputs": az_inputs,
                },
            ],
            "pending_operations": list(pending),
        },
    }


def op(
    kind: str, name: str, inputs: dict[str, Any], provider: str, what: str = "creating"
) -> dict[str, Any]:
    return {
        "type": what,
        "resource": {
            "urn": f"urn:pulumi:s::iacrun::{kind}::{name}",
            "type": kind,
            "custom": True,
            "parent": STACK_URN,
            "provider": f"{provider}::{'p1' if 'aws' in provider else 'p2'}",
            "inputs": inputs,
        },
    }


EC2 = op("aws:ec2/instance:Instance", "r-vm", {"tags": {"iacrun:stack": "s"}}, AWS_PROVIDER)
RG = op(
    "azure-native:resources:ResourceGroup", "r-rg", {"resourceGroupName": "iacrun-s"}, AZ_PROVIDER
)
VM = op(
    "azure-native:compute:VirtualMachine",
    "r-vm",
    {"resourceGroupName": "iacrun-s", "vmName": "r-vm"},
    AZ_PROVIDER,
)


def test_an_ec2_instance_without_a_lookup_is_named_with_its_region_console_and_command() -> None:
    result = settle(deployment(EC2), "s")
    assert result.changed and result.adopted == [] and result.dropped == []
    [leak] = result.leaks
    assert (leak.type, leak.name) == ("aws:ec2/instance:Instance", "r-vm")
    assert leak.console.startswith("https://us-west-2.console.aws.amazon.com/ec2/")
    assert leak.command.startswith("aws ec2 terminate-instances --region us-west-2 --instance-ids")
    assert "Name=tag:iacrun:stack,Values=s" in leak.command
    assert leak.provider == {"region": "us-west-2"}  # never the provider's credentials
    assert "iacrun down s" in leak.line("s")
    assert result.deployment["deployment"]["pending_operations"] == []


def test_a_lookup_finds_the_instance_and_it_is_adopted_for_the_destroy() -> None:
    seen: list[Any] = []

    def lookup(inputs: Any) -> str:
        seen.append(inputs)
        return "i-0abc"

    result = settle(deployment(EC2), "s", {"aws:ec2/instance:Instance": lookup})
    assert seen == [{"tags": {"iacrun:stack": "s"}}]
    assert result.leaks == [] and result.adopted == [EC2["resource"]["urn"]]
    adopted = result.deployment["deployment"]["resources"][-1]
    assert adopted["id"] == "i-0abc" and adopted["outputs"]["tags"] == {"iacrun:stack": "s"}


def test_a_lookup_that_says_gone_drops_it_and_one_that_cannot_tell_names_it() -> None:
    gone = settle(deployment(EC2), "s", {"aws:ec2/instance:Instance": lambda _i: None})
    assert [r["urn"] for r in gone.dropped] == [EC2["resource"]["urn"]] and gone.leaks == []

    def unreachable(_inputs: Any) -> str:
        raise LookupError("no credentials")

    unknown = settle(deployment(EC2), "s", {"aws:ec2/instance:Instance": unreachable})
    assert [leak.name for leak in unknown.leaks] == ["r-vm"]


def test_azure_resources_are_adopted_by_deterministic_ids_when_the_subscription_is_known() -> None:
    result = settle(deployment(RG, VM, subscription="sub-1"), "s")
    ids = [r["id"] for r in result.deployment["deployment"]["resources"][3:]]
    assert ids == [
        "/subscriptions/sub-1/resourceGroups/iacrun-s",
        "/subscriptions/sub-1/resourceGroups/iacrun-s/providers/Microsoft.Compute/virtualMachines/r-vm",
    ]
    unknown = settle(deployment(RG), "s")
    [leak] = unknown.leaks
    assert leak.command == "az group delete --name iacrun-s --yes"
    assert leak.console.startswith("https://portal.azure.com/")


def test_pending_updates_and_deletes_are_dropped_a_dynamic_create_adopted() -> None:
    dynamic = op("pulumi-python:dynamic:Resource", "vm", {"root_dir": "/x", "__provider": "p"}, "")
    update = op("aws:ec2/instance:Instance", "old", {}, AWS_PROVIDER, what="updating")
    result = settle(deployment(dynamic, update), "s")
    assert result.leaks == [] and result.adopted == [dynamic["resource"]["urn"]]
    assert result.deployment["deployment"]["resources"][-1]["outputs"]["root_dir"] == "/x"
    assert settle(deployment(), "s").changed is False


def test_a_recorded_leak_is_looked_up_again_and_survives_a_round_trip(tmp_path: Path) -> None:
    [leak] = settle(deployment(EC2), "s").leaks
    write_ledger(tmp_path, [leak])
    assert (tmp_path / "unresolved.json").stat().st_mode & 0o077 == 0
    [again] = read_ledger(tmp_path)
    assert isinstance(again, Leak) and again == leak and again.resource == leak.resource
    # the stack's state no longer has the pending operation; the record still names it
    still = settle(deployment(), "s", recorded=[again])
    assert [x.name for x in still.leaks] == ["r-vm"]
    found = settle(deployment(), "s", {"aws:ec2/instance:Instance": lambda _i: None}, [again])
    assert found.leaks == [] and len(found.dropped) == 1
    write_ledger(tmp_path, [])
    assert read_ledger(tmp_path) == [] and not (tmp_path / "unresolved.json").exists()
