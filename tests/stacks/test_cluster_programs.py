"""Multi-node stacks (`nodes: N`) under Pulumi's mocks: the placement, the intra-cluster rule, the
cluster network per type (EFA on AWS, InfiniBand on Azure ND) and every node's cloud-init."""

from __future__ import annotations

import base64
import gzip
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from iacrun.stacks import aws, azure
from iacrun.stacks.preview import PreviewResult, preview

from .conftest import CALLER, make_spec

INSTANCE = "aws:ec2/instance:Instance"
GROUP = "aws:ec2/securityGroup:SecurityGroup"
PLACEMENT = "aws:ec2/placementGroup:PlacementGroup"
TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
EIP = "aws:ec2/eip:Eip"
INSTANCE_TYPE_CALL = "aws:ec2/getInstanceType:getInstanceType"
VM = "azure-native:compute:VirtualMachine"
NIC = "azure-native:network:NetworkInterface"
NSG = "azure-native:network:NetworkSecurityGroup"
PPG = "azure-native:compute:ProximityPlacementGroup"
AVSET = "azure-native:compute:AvailabilitySet"
IP = "azure-native:network:PublicIPAddress"
ASSIGNMENT = "azure-native:authorization:RoleAssignment"
EXTENSION = "azure-native:compute:VirtualMachineExtension"


def efa_answer(supported: bool, maximum: int, strategies: tuple[str, ...] = ("cluster",)) -> Any:
    """EC2's DescribeInstanceTypes for the type: EFA support and how many interfaces, and the
    placement strategies it takes."""

    def answer(token: str, args: dict[str, Any]) -> dict[str, Any] | None:
        if token != INSTANCE_TYPE_CALL:
            return None
        return {
            "id": args["instanceType"],
            "instanceType": args["instanceType"],
            "efaSupported": supported,
            "efaMaximumInterfaces": maximum if supported else None,
            "supportedPlacementStrategies": list(strategies),
        }

    return answer


def aws_cluster(nodes: int = 2, efa: tuple[Any, ...] | None = None, **kwargs: Any) -> Any:
    spec = make_spec("aws", nodes=nodes, **kwargs)
    answers = efa_answer(*efa) if efa else None
    return spec, preview(aws.program(spec), answers=answers)


def by_name(result: PreviewResult, type_: str) -> dict[str, dict[str, Any]]:
    return {r.name: r.inputs for r in result.of_type(type_)}


def user_data(inputs: dict[str, Any], key: str = "userDataBase64") -> str:
    raw = inputs[key] if key in inputs else inputs["osProfile"]["customData"]
    return gzip.decompress(base64.b64decode(raw)).decode()


# ---------------------------------------------------------------------------- AWS


def test_aws_two_plain_nodes_share_a_cluster_placement_group_one_subnet_and_a_self_rule() -> None:
    spec, result = aws_cluster(instance_type="g5.2xlarge")  # no cluster network in the spec
    (placement,) = result.of_type(PLACEMENT)
    assert placement.name == "iacrun-train-1-cluster"
    assert placement.inputs == {"strategy": "cluster", "tags": spec.tags}
    vms = by_name(result, INSTANCE)
    assert sorted(vms) == ["iacrun-train-1-vm", "iacrun-train-1-vm-node-1"]  # rank 0 keeps its name
    group_id = f"{result.one(GROUP).name}-id"
    for rank, name in enumerate(["iacrun-train-1-vm", "iacrun-train-1-vm-node-1"]):
        vm = vms[name]
        assert vm["placementGroup"] == "iacrun-train-1-cluster"
        assert (vm["availabilityZone"], vm["subnetId"]) == ("zone-a", "subnet-a")  # one subnet
        assert vm["vpcSecurityGroupIds"] == [group_id]
        assert vm["associatePublicIpAddress"] is True
        assert vm["instanceType"] == "g5.2xlarge"
        assert "launchTemplate" not in vm
        assert vm["tags"]["iacrun:node"] == str(rank)
        assert vm["tags"]["iacrun:run"] == "train-1"
        assert vm["rootBlockDevice"]["tags"] == vm["tags"]
    assert vms["iacrun-train-1-vm-node-1"]["tags"]["Name"] == "iacrun-train-1-node-1"
    # no EFA without the type's cluster network: no template, no EIP; EC2 is asked only
    # whether the type takes a cluster placement group
    (call,) = result.calls_to(INSTANCE_TYPE_CALL)
    assert call.args == {"instanceType": "g5.2xlarge"}
    assert result.of_type(TEMPLATE) == [] and result.of_type(EIP) == []


def test_aws_a_type_without_cluster_placement_gets_none_but_still_the_rest() -> None:
    _, result = aws_cluster(instance_type="t3.large", gpu=False, efa=(False, 0, ("partition",)))
    assert result.of_type(PLACEMENT) == []
    vms = by_name(result, INSTANCE)
    assert len(vms) == 2 and all("placementGroup" not in vm for vm in vms.values())
    assert len(result.one(GROUP).inputs["ingress"]) == 2  # the members' rule all the same


def test_aws_the_cluster_rule_is_the_group_itself_both_ways_and_ssh_stays_the_callers() -> None:
    _, result = aws_cluster()
    group = result.one(GROUP).inputs
    ssh, cluster = group["ingress"]
    assert ssh == {
        "description": "SSH from the iacrun caller",
        "protocol": "tcp",
        "fromPort": 22,
        "toPort": 22,
        "cidrBlocks": [CALLER],
    }
    rule = {
        "description": "all traffic between the machines of the run",
        "protocol": "-1",
        "fromPort": 0,
        "toPort": 0,
        "self": True,
    }
    assert cluster == rule  # from the members of the group only: no CIDR at all
    outbound, to_members = group["egress"]
    assert outbound["cidrBlocks"] == ["0.0.0.0/0"]
    assert to_members == rule  # EFA needs the group as a destination too
    assert "between the run's machines" in group["description"]


def test_aws_a_one_node_stack_has_no_cluster_resources_even_on_an_efa_type() -> None:
    _, result = aws_cluster(nodes=1, instance_type="p5.48xlarge", cluster_network="efa")
    assert sorted(r.type for r in result.cloud_resources) == sorted(
        [GROUP, "aws:ec2/keyPair:KeyPair", INSTANCE]
    )
    assert len(result.one(GROUP).inputs["ingress"]) == 1
    assert "placementGroup" not in result.one(INSTANCE).inputs
    assert result.calls_to(INSTANCE_TYPE_CALL) == []


def test_aws_an_efa_type_gets_every_efa_interface_it_supports_and_an_elastic_ip() -> None:
    spec, result = aws_cluster(
        instance_type="p5.48xlarge", cluster_network="efa", efa=(True, 32), spot=True
    )
    (call,) = result.calls_to(INSTANCE_TYPE_CALL)
    assert call.args == {"instanceType": "p5.48xlarge"}
    template = result.one(TEMPLATE)
    interfaces = template.inputs["networkInterfaces"]
    assert len(interfaces) == 32
    group_id = f"{result.one(GROUP).name}-id"
    for card, interface in enumerate(interfaces):
        assert interface == {
            "networkCardIndex": card,
            "deviceIndex": 0 if card == 0 else 1,
            "interfaceType": "efa",
            "subnetId": "subnet-a",
            "securityGroups": [group_id],
            "deleteOnTermination": "true",
            "description": f"EFA {card}",
        }  # no public address asked: EC2 refuses one with several interfaces
    assert template.inputs["tags"] == spec.tags
    vms = by_name(result, INSTANCE)
    for vm in vms.values():
        assert vm["launchTemplate"] == {"id": "lt-0123456789abcdef0", "version": "1"}
        # subnet, group and address are the template's interfaces': none on the instance
        for key in ("subnetId", "vpcSecurityGroupIds", "associatePublicIpAddress"):
            assert key not in vm
        assert vm["placementGroup"] == "iacrun-train-1-cluster"
        assert vm["instanceMarketOptions"]["marketType"] == "spot"
    eips = by_name(result, EIP)
    assert eips["iacrun-train-1-ip"]["networkInterface"] == "eni-0"
    assert eips["iacrun-train-1-ip-node-1"]["networkInterface"] == "eni-1"
    assert all(e["domain"] == "vpc" for e in eips.values())
    assert result.outputs["nodes"] == [
        {
            "rank": 0,
            "public_ip": "198.51.100.10",
            "private_ip": "10.0.0.10",
            "instance_id": "i-0123456789abcdef0",
        },
        {
            "rank": 1,
            "public_ip": "198.51.100.11",
            "private_ip": "10.0.0.11",
            "instance_id": "i-0123456789abcdef1",
        },
    ]
    assert result.outputs["public_ip"] == "198.51.100.10"  # rank 0's, as before


def test_aws_a_type_with_one_efa_gets_its_public_address_on_that_interface() -> None:
    _, result = aws_cluster(instance_type="g6e.8xlarge", cluster_network="efa", efa=(True, 1))
    (interface,) = result.one(TEMPLATE).inputs["networkInterfaces"]
    assert interface["associatePublicIpAddress"] == "true"
    assert (interface["networkCardIndex"], interface["deviceIndex"]) == (0, 0)
    assert result.of_type(EIP) == []
    assert result.outputs["nodes"][1]["public_ip"] == "203.0.113.11"


def test_aws_no_efa_when_ec2_says_the_type_has_none() -> None:
    _, result = aws_cluster(instance_type="p5.48xlarge", cluster_network="efa", efa=(False, 0))
    assert result.of_type(TEMPLATE) == [] and result.of_type(EIP) == []
    assert all(vm["associatePublicIpAddress"] for vm in by_name(result, INSTANCE).values())


def test_aws_every_node_boots_the_same_cloud_init() -> None:
    single = user_data(preview(aws.program(make_spec("aws"))).one(INSTANCE).inputs)
    _, result = aws_cluster(nodes=3)
    texts = [user_data(vm) for vm in by_name(result, INSTANCE).values()]
    assert len(texts) == 3
    # nothing per rank (the rank comes with the job, over SSH); a cluster's guard ends its own
    # machine only, the one difference from a single machine's
    assert texts == [single.replace('"delete": "group"', '"delete": "vm"')] * 3
    assert all("userDataBase64" in r.secrets for r in result.of_type(INSTANCE))


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"efa": (True, 4)}, {"efa": 4, "eip": 2}),
        ({"efa": (True, 1)}, {"efa": 1, "eip": 0}),
        ({}, {"efa": 0, "eip": 0}),
    ],
)
def test_aws_dry_run_lists_the_cluster_resources(
    changes: dict[str, Any], expected: dict[str, int]
) -> None:
    network = "efa" if changes else None
    _, result = aws_cluster(instance_type="p4d.24xlarge", cluster_network=network, **changes)
    types = [r.type for r in result.cloud_resources]
    assert types.count(INSTANCE) == 2 and types.count(PLACEMENT) == 1
    assert types.count(EIP) == expected["eip"]
    templates = result.of_type(TEMPLATE)
    count = len(templates[0].inputs["networkInterfaces"]) if templates else 0
    assert count == expected["efa"]


# ---------------------------------------------------------------------------- Azure


def azure_cluster(nodes: int = 2, **kwargs: Any) -> Any:
    spec = make_spec("azure", nodes=nodes, **kwargs)
    return spec, preview(azure.program(spec))


ND = "Standard_ND96isr_H100_v5"


def test_azure_two_nodes_share_a_proximity_placement_group_and_an_intra_subnet_rule() -> None:
    spec, result = azure_cluster(instance_type="Standard_NC24ads_A100_v4")
    ppg = result.one(PPG)
    assert ppg.inputs == {
        "proximityPlacementGroupName": "iacrun-train-1-ppg",
        "resourceGroupName": "iacrun-train-1-7",
        "location": "eastus",
        "proximityPlacementGroupType": "Standard",
        "tags": spec.tags,
    }
    assert result.of_type(AVSET) == []  # not an ND size: no InfiniBand fabric to share
    vms = by_name(result, VM)
    assert sorted(vms) == ["iacrun-train-1-vm", "iacrun-train-1-vm-node-1"]
    for vm in vms.values():
        assert vm["proximityPlacementGroup"] == {"id": "iacrun-train-1-ppg-id"}
        assert "availabilitySet" not in vm
        assert vm["hardwareProfile"] == {"vmSize": "Standard_NC24ads_A100_v4"}
    hostnames = [vm["osProfile"]["computerName"] for vm in vms.values()]
    assert sorted(hostnames) == ["iacrun-train-1", "iacrun-train-1-node-1"]
    nics = by_name(result, NIC)
    assert sorted(nics) == ["iacrun-train-1-nic", "iacrun-train-1-nic-node-1"]
    assert all(n["enableAcceleratedNetworking"] is True for n in nics.values())
    assert vms["iacrun-train-1-vm-node-1"]["networkProfile"]["networkInterfaces"][0]["id"] == (
        "iacrun-train-1-nic-node-1-id"
    )
    assert len(result.of_type(IP)) == 2
    ssh, cluster = result.one(NSG).inputs["securityRules"]
    assert ssh["sourceAddressPrefixes"] == [CALLER]
    assert ssh["destinationPortRange"] == "22"
    assert cluster == {
        "name": "cluster-within-subnet",
        "description": "all traffic between the machines of the run",
        "priority": 110,
        "direction": "Inbound",
        "access": "Allow",
        "protocol": "*",
        "sourceAddressPrefix": "10.0.0.0/24",
        "sourcePortRange": "*",
        "destinationAddressPrefix": "10.0.0.0/24",
        "destinationPortRange": "*",
    }
    assert [n["private_ip"] for n in result.outputs["nodes"]] == ["10.0.0.4", "10.0.0.5"]
    assert [n["public_ip"] for n in result.outputs["nodes"]] == ["203.0.113.10", "203.0.113.11"]


def test_azure_an_nd_size_shares_one_infiniband_fabric_through_an_availability_set() -> None:
    spec, result = azure_cluster(instance_type=ND, cluster_network="infiniband")
    avset = result.one(AVSET)
    assert avset.inputs == {
        "availabilitySetName": "iacrun-train-1-avset",
        "resourceGroupName": "iacrun-train-1-7",
        "location": "eastus",
        "platformFaultDomainCount": 1,
        "platformUpdateDomainCount": 1,
        "proximityPlacementGroup": {"id": "iacrun-train-1-ppg-id"},
        "sku": {"name": "Aligned"},
        "tags": spec.tags,
    }
    for vm in by_name(result, VM).values():
        assert vm["availabilitySet"] == {"id": "iacrun-train-1-avset-id"}
        assert vm["proximityPlacementGroup"] == {"id": "iacrun-train-1-ppg-id"}
        # the HPC image carries the InfiniBand (and NVIDIA) drivers
        assert vm["storageProfile"]["imageReference"]["offer"] == "ubuntu-hpc"
    assert all(n["enableAcceleratedNetworking"] is True for n in by_name(result, NIC).values())


def test_azure_a_size_without_accelerated_networking_does_not_ask_for_it() -> None:
    _, result = azure_cluster(gpu=False, instance_type="Standard_D1_v2")
    assert all("enableAcceleratedNetworking" not in n for n in by_name(result, NIC).values())
    assert result.of_type(AVSET) == []


def test_azure_a_one_node_stack_has_no_cluster_resources() -> None:
    _, result = azure_cluster(nodes=1, instance_type=ND, cluster_network="infiniband")
    assert result.of_type(PPG) == [] and result.of_type(AVSET) == []
    assert len(result.one(NSG).inputs["securityRules"]) == 1
    assert "enableAcceleratedNetworking" not in result.one(NIC).inputs
    assert result.one(VM).inputs["osProfile"]["computerName"] == "iacrun-train-1"


def test_azure_every_node_gets_its_own_identity_role_and_driver_extension() -> None:
    _, result = azure_cluster(nodes=3)  # an A10 size: the GRID driver extension
    assignments = by_name(result, ASSIGNMENT)
    assert sorted(assignments) == [
        "iacrun-train-1-self-delete",
        "iacrun-train-1-self-delete-node-1",
        "iacrun-train-1-self-delete-node-2",
    ]
    assert len({a["roleAssignmentName"] for a in assignments.values()}) == 3
    assert len(result.of_type(EXTENSION)) == 3
    assert {e["vmName"] for e in by_name(result, EXTENSION).values()} == {
        "iacrun-train-1-vm",
        "iacrun-train-1-vm-node-1",
        "iacrun-train-1-vm-node-2",
    }


def test_azure_every_node_boots_the_same_cloud_init_whose_guard_deletes_only_its_vm() -> None:
    _, result = azure_cluster(nodes=2)
    texts = [user_data(vm) for vm in by_name(result, VM).values()]
    assert texts[0] == texts[1]
    doc = yaml.safe_load(texts[0])
    settings = next(f for f in doc["write_files"] if f["path"].endswith("guard.json"))
    assert json.loads(settings["content"])["azure"]["delete"] == "vm"


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ("Standard_ND96isr_H100_v5", True),
        ("Standard_ND96asr_v4", True),
        ("Standard_NC4as_T4_v3", True),
        ("Standard_NV36ads_A10_v5", True),
        ("Standard_D4s_v5", True),
        ("Standard_E16ds_v4", True),
        ("Standard_D1_v2", False),
        ("Standard_B2s", False),
    ],
)
def test_accelerated_networking_by_size(size: str, expected: bool) -> None:
    assert azure.accelerated_networking(size) is expected


# ---------------------------------------------------------------------------- cloud-init schema

CLOUD_INIT = shutil.which("cloud-init")


def node_user_data() -> list[tuple[str, str]]:
    """(node, cloud-init) of every node of an AWS EFA cluster and an Azure ND cluster."""
    out = []
    _, result = aws_cluster(instance_type="p5.48xlarge", cluster_network="efa", efa=(True, 32))
    out += [(f"aws {name}", user_data(vm)) for name, vm in by_name(result, INSTANCE).items()]
    _, result = azure_cluster(instance_type=ND, cluster_network="infiniband")
    out += [(f"azure {name}", user_data(vm)) for name, vm in by_name(result, VM).items()]
    return out


@pytest.mark.skipif(CLOUD_INIT is None, reason="needs Debian's cloud-init (cloud-init schema)")
def test_every_nodes_cloud_init_passes_cloud_init_schema(tmp_path: Path) -> None:
    checked = 0
    for node, text in node_user_data():
        path = tmp_path / "user-data"
        path.write_text(text)
        assert CLOUD_INIT is not None
        done = subprocess.run(
            [CLOUD_INIT, "schema", "--config-file", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, f"{node}: {done.stdout}{done.stderr}"
        assert "Valid cloud-config" in done.stdout
        checked += 1
    assert checked == 4
