"""The AWS program under Pulumi's mocks: the inputs of every resource it declares."""

from __future__ import annotations

import base64
import gzip
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from iacrun.stacks import aws
from iacrun.stacks.preview import PLACEHOLDER_AMI, PreviewResult, preview

from .conftest import CALLER, client_key, host_key, job, make_spec

INSTANCE = "aws:ec2/instance:Instance"
GROUP = "aws:ec2/securityGroup:SecurityGroup"
KEY = "aws:ec2/keyPair:KeyPair"
NETWORK_TYPES = {
    "aws:ec2/vpc:Vpc",
    "aws:ec2/internetGateway:InternetGateway",
    "aws:ec2/subnet:Subnet",
    "aws:ec2/route:Route",
}
#: resources that take no tags
UNTAGGED = {"aws:ec2/route:Route"}


def run(default_vpc: bool = True, **kwargs: Any) -> PreviewResult:
    return preview(aws.program(make_spec("aws", **kwargs)), default_vpc=default_vpc)


def instance(result: PreviewResult) -> dict[str, Any]:
    return result.one(INSTANCE).inputs


def decoded_user_data(result: PreviewResult) -> dict[str, Any]:
    raw = base64.b64decode(instance(result)["userDataBase64"])
    text = gzip.decompress(raw).decode()
    assert text.startswith("#cloud-config\n")
    loaded: dict[str, Any] = yaml.safe_load(text)
    return loaded


def test_on_demand_gpu_python_in_the_default_vpc() -> None:
    result = run()
    spec = make_spec("aws")
    types = [r.type for r in result.cloud_resources]
    assert sorted(types) == sorted([GROUP, KEY, INSTANCE])
    vm = instance(result)
    assert vm["instanceType"] == "g5.2xlarge"
    assert vm["ami"] == PLACEHOLDER_AMI
    assert "instanceMarketOptions" not in vm
    assert vm["instanceInitiatedShutdownBehavior"] == "terminate"
    assert vm["metadataOptions"] == {
        "httpEndpoint": "enabled",
        "httpTokens": "required",
        "httpPutResponseHopLimit": 1,
        "instanceMetadataTags": "disabled",
    }
    assert vm["rootBlockDevice"] == {
        "volumeSize": 150,
        "volumeType": "gp3",
        "encrypted": True,
        "deleteOnTermination": True,
        "tags": spec.tags,
    }
    assert vm["associatePublicIpAddress"] is True
    assert vm["subnetId"] == "subnet-a"  # the default subnet of the first zone offering g5
    assert vm["availabilityZone"] == "zone-a"
    assert vm["keyName"] == result.one(KEY).name
    assert vm["vpcSecurityGroupIds"] == [f"{result.one(GROUP).name}-id"]
    assert vm["userDataReplaceOnChange"] is True
    assert result.one(KEY).inputs["publicKey"] == client_key().public_openssh
    assert result.outputs == {
        "public_ip": "203.0.113.10",
        "ssh_user": "ubuntu",
        "instance_id": "i-0123456789abcdef0",
        "network": "default-vpc",
        "zone": "zone-a",
        "image_id": PLACEHOLDER_AMI,
        # one machine: the list of nodes is rank 0 alone
        "nodes": [
            {
                "rank": 0,
                "public_ip": "203.0.113.10",
                "private_ip": "10.0.0.10",
                "instance_id": "i-0123456789abcdef0",
            }
        ],
    }


def test_the_gpu_image_is_the_deep_learning_ami_looked_up_in_the_region() -> None:
    result = run()
    provider = result.one("pulumi:providers:aws")
    assert provider.inputs["region"] == "us-east-1"
    (call,) = result.calls_to("aws:ec2/getAmi:getAmi")
    assert call.args["owners"] == ["amazon"]
    assert call.args["mostRecent"] is True
    filters = {f["name"]: f["values"] for f in call.args["filters"]}
    assert filters["name"] == ["Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) *"]
    assert filters["architecture"] == ["x86_64"]
    assert filters["state"] == ["available"]


def test_a_cpu_only_type_gets_canonical_ubuntu() -> None:
    result = run(gpu=False)
    assert instance(result)["instanceType"] == "m6i.xlarge"
    assert instance(result)["rootBlockDevice"]["volumeSize"] == 100
    (call,) = result.calls_to("aws:ec2/getAmi:getAmi")
    assert call.args["owners"] == ["099720109477"]
    filters = {f["name"]: f["values"] for f in call.args["filters"]}
    assert filters["name"] == ["ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-*"]


def test_an_arm_gpu_type_gets_the_arm64_deep_learning_ami() -> None:
    result = run(arm=True, instance_type="g5g.2xlarge")
    (call,) = result.calls_to("aws:ec2/getAmi:getAmi")
    filters = {f["name"]: f["values"] for f in call.args["filters"]}
    assert filters["architecture"] == ["arm64"]
    assert "ARM64" in filters["name"][0]


def test_a_given_ami_skips_the_lookup() -> None:
    result = run(machine_image="ami-0fedcba9876543210")
    assert instance(result)["ami"] == "ami-0fedcba9876543210"
    assert result.calls_to("aws:ec2/getAmi:getAmi") == []


def test_spot_is_one_time_terminate_with_the_max_price() -> None:
    vm = instance(run(spot=True, max_price=0.85))
    assert vm["instanceMarketOptions"] == {
        "marketType": "spot",
        "spotOptions": {
            "spotInstanceType": "one-time",
            "instanceInterruptionBehavior": "terminate",
            "maxPrice": "0.85",
        },
    }
    assert vm["instanceInitiatedShutdownBehavior"] == "terminate"


def test_spot_without_max_price_leaves_the_cap_at_on_demand() -> None:
    vm = instance(run(spot=True))
    assert "maxPrice" not in vm["instanceMarketOptions"]["spotOptions"]


def test_ssh_only_on_port_22_only_from_the_caller() -> None:
    group = run().one(GROUP).inputs
    assert group["vpcId"] == "vpc-default"
    (rule,) = group["ingress"]
    assert rule["protocol"] == "tcp"
    assert (rule["fromPort"], rule["toPort"]) == (22, 22)
    assert rule["cidrBlocks"] == [CALLER]
    assert "ipv6CidrBlocks" not in rule
    (egress,) = group["egress"]
    assert egress["protocol"] == "-1"


def test_several_cidrs_split_into_ipv4_and_ipv6() -> None:
    spec = make_spec("aws").model_copy(update={"ssh_cidrs": ["10.1.2.0/24", "2001:db8::/64"]})
    (rule,) = preview(aws.program(spec)).one(GROUP).inputs["ingress"]
    assert rule["cidrBlocks"] == ["10.1.2.0/24"]
    assert rule["ipv6CidrBlocks"] == ["2001:db8::/64"]


def test_without_a_default_vpc_it_makes_the_regions_iacrun_vpc_once_and_keeps_it() -> None:
    result = run(default_vpc=False)
    assert {r.type for r in result.resources} >= NETWORK_TYPES
    vpc = result.one("aws:ec2/vpc:Vpc")
    assert vpc.name == "iacrun-us-east-1-vpc"  # the region's, not the run's
    assert vpc.inputs["cidrBlock"] == "10.0.0.0/16"
    # the kept network carries no run's tags: nothing calls it a run's leftover
    assert vpc.inputs["tags"] == {
        "Name": "iacrun-us-east-1",
        "iacrun:network": "shared",
        "managed-by": "iacrun",
    }
    subnets = {r.inputs["availabilityZone"]: r for r in result.of_type("aws:ec2/subnet:Subnet")}
    assert sorted(subnets) == ["zone-a", "zone-b"]  # one per zone of the region
    assert subnets["zone-a"].inputs["cidrBlock"] == "10.0.0.0/20"
    assert subnets["zone-b"].inputs["cidrBlock"] == "10.0.16.0/20"
    assert all(s.inputs["mapPublicIpOnLaunch"] is False for s in subnets.values())
    route = result.one("aws:ec2/route:Route").inputs
    assert route["destinationCidrBlock"] == "0.0.0.0/0"
    assert route["gatewayId"] == f"{result.one('aws:ec2/internetGateway:InternetGateway').name}-id"
    assert route["routeTableId"] == "rtb-main"
    vm = instance(result)
    assert vm["subnetId"] == f"{subnets['zone-a'].name}-id"
    assert vm["availabilityZone"] == "zone-a"
    assert vm["associatePublicIpAddress"] is True  # explicit: the subnets do not map one
    assert result.one(GROUP).inputs["vpcId"] == "vpc-new"
    assert result.outputs["network"] == "iacrun-vpc"
    (zones,) = result.calls_to("aws:index/getAvailabilityZones:getAvailabilityZones")
    assert zones.args["state"] == "available"
    assert zones.args["filters"] == [{"name": "opt-in-status", "values": ["opt-in-not-required"]}]


def shared_vpc(token: str, args: dict[str, Any]) -> dict[str, Any] | None:
    """A region without a default VPC whose iacrun VPC exists, with subnets in 1a and 1c."""
    filters = {f["name"]: f["values"] for f in args.get("filters") or []}
    if token == "aws:ec2/getVpcs:getVpcs":
        return {"id": "v", "ids": ["vpc-iacrun"] if "tag:iacrun:network" in filters else []}
    if token == "aws:ec2/getSubnets:getSubnets":
        if filters.get("tag:iacrun:network") == ["shared"]:
            return {"id": "s", "ids": ["subnet-1c", "subnet-1a"]}
        return {"id": "s", "ids": []}
    if token == "aws:ec2/getSubnet:getSubnet":
        return {"id": args["id"], "availabilityZone": "us-east-" + args["id"].split("-")[1]}
    if token == "aws:ec2/getInstanceTypeOfferings:getInstanceTypeOfferings":
        return {"id": "o", "locations": ["us-east-1a", "us-east-1b", "us-east-1c"]}
    return None


def test_the_kept_iacrun_vpc_is_found_by_its_tag_and_nothing_is_made() -> None:
    result = preview(aws.program(make_spec("aws")), default_vpc=False, answers=shared_vpc)
    assert not {r.type for r in result.resources} & NETWORK_TYPES
    vpc_lookups = [c.args["filters"] for c in result.calls_to("aws:ec2/getVpcs:getVpcs")]
    assert vpc_lookups == [
        [{"name": "is-default", "values": ["true"]}],
        [{"name": "tag:iacrun:network", "values": ["shared"]}],
    ]
    assert result.one(GROUP).inputs["vpcId"] == "vpc-iacrun"
    assert instance(result)["subnetId"] == "subnet-1a"
    assert instance(result)["availabilityZone"] == "us-east-1a"
    assert result.outputs["network"] == "iacrun-vpc"


def test_the_iacrun_vpc_can_be_forced() -> None:
    result = run(network="iacrun-vpc")
    vpc_lookups = [c.args["filters"] for c in result.calls_to("aws:ec2/getVpcs:getVpcs")]
    assert vpc_lookups == [[{"name": "tag:iacrun:network", "values": ["shared"]}]]
    assert result.outputs["network"] == "iacrun-vpc"


def offered_in(*zones: str) -> Callable[[str, dict[str, Any]], dict[str, Any] | None]:
    def answer(token: str, args: dict[str, Any]) -> dict[str, Any] | None:
        if token != "aws:ec2/getInstanceTypeOfferings:getInstanceTypeOfferings":
            return None
        return {"id": "o", "locations": list(zones), "instanceTypes": ["g5.2xlarge"] * len(zones)}

    return answer


def test_the_zone_is_one_that_offers_the_type() -> None:
    result = preview(aws.program(make_spec("aws")), answers=offered_in("zone-b", "zone-z"))
    (call,) = result.calls_to("aws:ec2/getInstanceTypeOfferings:getInstanceTypeOfferings")
    assert call.args["locationType"] == "availability-zone"
    assert call.args["filters"] == [{"name": "instance-type", "values": ["g5.2xlarge"]}]
    vm = instance(result)
    assert (vm["availabilityZone"], vm["subnetId"]) == ("zone-b", "subnet-b")
    assert result.outputs["zone"] == "zone-b"


def test_zones_without_capacity_are_left_out() -> None:
    seen: list[aws.ZoneChoice] = []
    spec = make_spec("aws", avoid_zones=("zone-a",))
    result = preview(aws.program(spec, seen.append))
    assert instance(result)["subnetId"] == "subnet-b"
    assert seen == [aws.ZoneChoice("zone-b", "subnet-b", ("zone-a", "zone-b"))]


def test_with_no_zone_left_no_machine_is_declared() -> None:
    seen: list[aws.ZoneChoice] = []
    result = preview(aws.program(make_spec("aws"), seen.append), answers=offered_in("zone-q"))
    assert result.cloud_resources == []
    assert result.outputs == {"network": "default-vpc", "zone": None}
    assert seen == [aws.ZoneChoice(None, None, ())]


@pytest.mark.parametrize(
    ("offered", "subnets", "avoid", "expected"),
    [
        (["b", "a"], {"a": "s-a", "b": "s-b"}, [], ("a", "s-a", ("a", "b"))),
        (["b", "a"], {"a": "s-a", "b": "s-b"}, ["a"], ("b", "s-b", ("a", "b"))),
        (["a", "b"], {"a": "s-a", "b": "s-b"}, ["a", "b"], (None, None, ("a", "b"))),
        (["c"], {"a": "s-a", "b": "s-b"}, [], (None, None, ())),  # offered where no subnet is
        (["a", "b", "c"], {"c": "s-c", "b": "s-b"}, [], ("b", "s-b", ("b", "c"))),
        ([], {"a": "s-a"}, [], (None, None, ())),
    ],
)
def test_choose_zone_as_data(
    offered: list[str],
    subnets: dict[str, str],
    avoid: list[str],
    expected: tuple[str | None, str | None, tuple[str, ...]],
) -> None:
    choice = aws.choose_zone(offered, subnets, avoid)
    assert (choice.zone, choice.subnet, choice.candidates) == expected


def test_the_default_vpc_lookup_filters() -> None:
    result = run()
    (vpcs,) = result.calls_to("aws:ec2/getVpcs:getVpcs")  # found: no iacrun VPC lookup
    assert vpcs.args["filters"] == [{"name": "is-default", "values": ["true"]}]
    (subnets,) = result.calls_to("aws:ec2/getSubnets:getSubnets")
    assert {"name": "default-for-az", "values": ["true"]} in subnets.args["filters"]
    assert {"name": "vpc-id", "values": ["vpc-default"]} in subnets.args["filters"]


@pytest.mark.parametrize("default_vpc", [True, False])
def test_every_resource_carries_the_run_and_its_expiry(default_vpc: bool) -> None:
    result = run(default_vpc=default_vpc)
    for resource in result.cloud_resources:
        if resource.type in UNTAGGED or resource.type in NETWORK_TYPES:
            continue  # the kept network is the region's, tagged as such (above)
        tags = resource.inputs["tags"]
        assert tags["iacrun:run"] == "train-1", resource.type
        assert tags["iacrun:stack"] == "train-1-7"
        assert tags["iacrun:expires-at"] == "2025-01-02T05:34:05Z"  # NOW + 2h + 30min


def test_the_user_data_is_the_gzipped_cloud_init_as_a_secret() -> None:
    result = run()
    assert "userDataBase64" in result.one(INSTANCE).secrets
    doc = decoded_user_data(result)
    assert doc["ssh_keys"]["ed25519_public"] == host_key().public_openssh
    paths = [f["path"] for f in doc["write_files"]]
    assert "/opt/iacrun/run/runner.py" in paths
    assert "secret-value-123" not in str(doc)  # env values never travel in user data


def test_an_image_job_renders_a_container_setup() -> None:
    image_job = job(python=None, image="nvcr.io/nvidia/pytorch:24.05-py3")
    doc = decoded_user_data(run(job_=image_job))
    setup = next(f for f in doc["write_files"] if f["path"].endswith("iacrun-setup"))
    assert "IMAGE=nvcr.io/nvidia/pytorch:24.05-py3" in setup["content"]
    assert "PYTHON_VERSION=''" in setup["content"]


def test_an_oversized_cloud_init_fails_before_any_resource() -> None:
    import random

    from iacrun.orchestrator.errors import InputError

    noise = random.Random(7)
    big = [
        "echo " + "".join(noise.choice("abcdefghij0123456789") for _ in range(200))
        for _ in range(150)
    ]
    with pytest.raises(InputError, match="AWS takes at most 16 KB of user data"):
        run(job_=job(commands=big))
