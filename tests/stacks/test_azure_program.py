"""The Azure program under Pulumi's mocks: the inputs of every resource it declares."""

from __future__ import annotations

import base64
import gzip
import json
import secrets
import uuid
from importlib import resources
from typing import Any

import pytest
import yaml

from iacrun.orchestrator.errors import InputError
from iacrun.stacks import azure
from iacrun.stacks.cloudinit import compact_python
from iacrun.stacks.preview import PreviewResult, preview

from .conftest import CALLER, client_key, host_key, job, make_spec

VM = "azure-native:compute:VirtualMachine"
NSG = "azure-native:network:NetworkSecurityGroup"
IP = "azure-native:network:PublicIPAddress"
NIC = "azure-native:network:NetworkInterface"
RG = "azure-native:resources:ResourceGroup"
ROLE_DEFINITION = "azure-native:authorization:RoleDefinition"
ASSIGNMENT = "azure-native:authorization:RoleAssignment"
EXTENSION = "azure-native:compute:VirtualMachineExtension"
#: resources that take no tags
UNTAGGED = {"azure-native:network:Subnet", ASSIGNMENT}


def run(**kwargs: Any) -> PreviewResult:
    return preview(azure.program(make_spec("azure", **kwargs)))


def vm(result: PreviewResult) -> dict[str, Any]:
    return result.one(VM).inputs


def custom_data(result: PreviewResult) -> dict[str, Any]:
    text = gzip.decompress(base64.b64decode(vm(result)["osProfile"]["customData"])).decode()
    assert text.startswith("#cloud-config\n")
    loaded: dict[str, Any] = yaml.safe_load(text)
    return loaded


def test_on_demand_gpu_python() -> None:
    result = run()
    spec = make_spec("azure")
    assert sorted(r.type for r in result.cloud_resources) == sorted(
        [
            RG,
            "azure-native:network:VirtualNetwork",
            "azure-native:network:Subnet",
            NSG,
            IP,
            NIC,
            VM,
            EXTENSION,
            ASSIGNMENT,  # of a built-in role: no role definition is created
        ]
    )
    group = result.one(RG).inputs
    assert group["resourceGroupName"] == "iacrun-train-1-7"
    assert group["location"] == "eastus"
    machine = vm(result)
    assert machine["hardwareProfile"] == {"vmSize": "Standard_NV36ads_A10_v5"}
    assert machine["resourceGroupName"] == "iacrun-train-1-7"
    # an A10 size needs NVIDIA's GRID driver: Ubuntu plus Azure's NVIDIA GPU Driver Extension
    assert machine["storageProfile"]["imageReference"] == {
        "publisher": "Canonical",
        "offer": "0001-com-ubuntu-server-jammy",
        "sku": "22_04-lts-gen2",
        "version": "latest",
    }
    driver = result.one(EXTENSION).inputs
    assert driver == {
        "vmExtensionName": "NvidiaGpuDriverLinux",
        "resourceGroupName": "iacrun-train-1-7",
        "vmName": machine["vmName"],
        "location": "eastus",
        "publisher": "Microsoft.HpcCompute",
        "type": "NvidiaGpuDriverLinux",
        "typeHandlerVersion": "1.8",
        "autoUpgradeMinorVersion": True,
        "tags": spec.tags,
    }
    assert machine["storageProfile"]["osDisk"] == {
        "createOption": "FromImage",
        "diskSizeGB": spec.disk_gb,
        "caching": "ReadWrite",
        "deleteOption": "Delete",
        "managedDisk": {"storageAccountType": "Premium_LRS"},
    }
    for key in ("priority", "evictionPolicy", "billingProfile"):
        assert key not in machine
    assert machine["networkProfile"]["networkInterfaces"] == [
        {"id": f"{result.one(NIC).name}-id", "primary": True, "deleteOption": "Delete"}
    ]
    profile = machine["osProfile"]
    assert profile["adminUsername"] == "ubuntu"
    linux = profile["linuxConfiguration"]
    assert linux["disablePasswordAuthentication"] is True
    assert linux["ssh"]["publicKeys"] == [
        {"path": "/home/ubuntu/.ssh/authorized_keys", "keyData": client_key().public_openssh}
    ]
    assert result.outputs == {
        "public_ip": "203.0.113.10",
        "ssh_user": "ubuntu",
        "instance_id": f"{result.one(VM).name}-id",
        "resource_group": "iacrun-train-1-7",
        # one machine: the list of nodes is rank 0 alone
        "nodes": [
            {
                "rank": 0,
                "public_ip": "203.0.113.10",
                "private_ip": "10.0.0.4",
                "instance_id": f"{result.one(VM).name}-id",
            }
        ],
    }


@pytest.mark.parametrize(
    "size", ["Standard_NC24ads_A100_v4", "Standard_ND96isr_H100_v5", "Standard_NC4as_T4_v3"]
)
def test_nc_and_nd_sizes_get_the_hpc_image_with_its_datacenter_driver(size: str) -> None:
    result = run(instance_type=size)
    assert vm(result)["storageProfile"]["imageReference"] == {
        "publisher": "microsoft-dsvm",
        "offer": "ubuntu-hpc",
        "sku": "2204",
        "version": "latest",
    }
    assert result.of_type(EXTENSION) == []


def test_spot_priority_eviction_and_max_price() -> None:
    machine = vm(run(spot=True, max_price=1.5))
    assert machine["priority"] == "Spot"
    assert machine["evictionPolicy"] == "Delete"
    assert machine["billingProfile"] == {"maxPrice": 1.5}


def test_spot_without_max_price_pays_up_to_on_demand() -> None:
    assert vm(run(spot=True))["billingProfile"] == {"maxPrice": -1}


def test_a_cpu_only_size_gets_canonical_ubuntu() -> None:
    machine = vm(run(gpu=False))
    assert machine["hardwareProfile"] == {"vmSize": "Standard_D4s_v5"}
    assert machine["storageProfile"]["imageReference"] == {
        "publisher": "Canonical",
        "offer": "0001-com-ubuntu-server-jammy",
        "sku": "22_04-lts-gen2",
        "version": "latest",
    }
    assert machine["storageProfile"]["osDisk"]["diskSizeGB"] == 100


@pytest.mark.parametrize(
    ("size", "sku"),
    [
        ("Standard_NC24ads_A100_v4", "Premium_LRS"),
        ("Standard_ND96isr_H100_v5", "Premium_LRS"),
        ("Standard_NC6s_v3", "Premium_LRS"),
        ("Standard_D4_v5", "StandardSSD_LRS"),
        ("Standard_NV12", "StandardSSD_LRS"),
    ],
)
def test_premium_disks_only_where_the_size_supports_them(size: str, sku: str) -> None:
    assert azure.os_disk_sku(size) == sku


def test_ssh_only_on_port_22_only_from_the_caller() -> None:
    nsg = run().one(NSG).inputs
    (rule,) = nsg["securityRules"]
    assert rule["direction"] == "Inbound"
    assert rule["access"] == "Allow"
    assert rule["protocol"] == "Tcp"
    assert rule["destinationPortRange"] == "22"
    assert rule["sourceAddressPrefixes"] == [CALLER]
    assert "sourceAddressPrefix" not in rule
    result = run()
    assert result.one(NIC).inputs["networkSecurityGroup"] == {"id": f"{result.one(NSG).name}-id"}


def test_a_static_standard_public_ip_deleted_with_the_vm() -> None:
    ip = run().one(IP).inputs
    assert ip["publicIPAllocationMethod"] == "Static"
    assert ip["sku"] == {"name": "Standard", "tier": "Regional"}
    assert ip["deleteOption"] == "Delete"


def test_every_resource_carries_the_run_and_its_expiry() -> None:
    for resource in run().cloud_resources:
        if resource.type in UNTAGGED:
            continue
        tags = resource.inputs["tags"]
        assert tags["iacrun:run"] == "train-1", resource.type
        assert tags["iacrun:expires-at"] == "2025-01-02T05:34:05Z"


def test_the_vm_identity_gets_the_builtin_contributor_role_on_its_resource_group_only() -> None:
    result = run()
    assert vm(result)["identity"] == {"type": "SystemAssigned"}
    assert result.of_type(ROLE_DEFINITION) == []  # no custom role, no replication race
    group_id = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/iacrun-train-1-7"
    assignment = result.one(ASSIGNMENT).inputs
    assert assignment["scope"] == group_id
    assert assignment["principalId"] == "principal-of-the-vm"
    assert assignment["principalType"] == "ServicePrincipal"
    assert assignment["roleDefinitionId"] == (
        "/subscriptions/00000000-0000-0000-0000-000000000000/providers/"
        "Microsoft.Authorization/roleDefinitions/b24988ac-6180-42a0-ab88-20f7382dd24c"
    )
    # one name per stack, the same on every update of it
    assert assignment["roleAssignmentName"] == str(
        uuid.uuid5(azure._NAMESPACE, "train-1-7/assignment")
    )


def test_the_guard_on_the_vm_deletes_the_whole_resource_group() -> None:
    doc = custom_data(run())
    guard = next(f for f in doc["write_files"] if f["path"].endswith("bin/iacrun-guard"))
    original = resources.files("iacrun.stacks").joinpath("vmguard.py").read_text()
    assert guard["content"] == compact_python(original)  # the same statements, compacted
    # what it does with it is run for real against a fake Resource Manager: test_vmguard.py
    settings = next(f for f in doc["write_files"] if f["path"].endswith("guard.json"))
    assert json.loads(settings["content"])["azure"] == {
        "self_delete": True,
        "delete": "group",  # one machine: its whole resource group
        "imds": "http://169.254.169.254",
        "arm": "https://management.azure.com",
        "resource": "https://management.azure.com/",
    }


def test_without_self_delete_no_identity_and_no_role() -> None:
    result = run(azure_self_delete=False)
    assert "identity" not in vm(result)
    assert result.of_type(ROLE_DEFINITION) == [] and result.of_type(ASSIGNMENT) == []
    guard = next(f for f in custom_data(result)["write_files"] if f["path"].endswith("guard.json"))
    assert '"self_delete": false' in guard["content"]


def test_custom_data_is_the_plain_cloud_init_as_a_secret() -> None:
    result = run()
    assert "osProfile" in result.one(VM).secrets
    doc = custom_data(result)
    assert doc["ssh_keys"]["ed25519_private"] == host_key().private_openssh
    guard = next(f for f in doc["write_files"] if f["path"].endswith("guard.json"))
    assert '"cloud": "azure"' in guard["content"]
    assert '"self_delete": true' in guard["content"]


def test_an_image_job_on_azure() -> None:
    doc = custom_data(run(job_=job(python=None, image="ubuntu:24.04")))
    setup = next(f for f in doc["write_files"] if f["path"].endswith("iacrun-setup"))
    assert "IMAGE=ubuntu:24.04" in setup["content"]
    assert "GPU=1" in setup["content"]


def test_a_given_image_urn() -> None:
    machine = vm(run(machine_image="Canonical:ubuntu-24_04-lts:server:latest"))
    assert machine["storageProfile"]["imageReference"] == {
        "publisher": "Canonical",
        "offer": "ubuntu-24_04-lts",
        "sku": "server",
        "version": "latest",
    }


def test_an_oversized_custom_data_fails_before_any_resource() -> None:
    # gzip'd, so only text that does not compress (here random) can pass 64 KB
    commands = ["echo " + secrets.token_urlsafe(1500) for _ in range(70)]
    with pytest.raises(InputError, match="Azure takes at most 64 KB of custom data"):
        run(job_=job(commands=commands))
