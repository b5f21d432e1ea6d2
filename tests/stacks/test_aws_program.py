"""The AWS program under Pulumi's mocks: the inputs of every resource it declares."""

from __future__ import annotations

import base64
import gzip
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
    assert "subnetId" not in vm  # EC2 picks a default subnet of the default VPC
    assert vm["keyName"] == result.one(KEY).name
    assert vm["vpcSecurityGroupIds"] == [f"{result.one(GROUP).name}-id"]
    assert vm["userDataReplaceOnChange"] is True
    assert result.one(KEY).inputs["publicKey"] == client_key().public_openssh
    assert result.outputs == {
        "public_ip": "203.0.113.10",
        "ssh_user": "ubuntu",
        "instance_id": "i-0123456789abcdef0",
        "network": "default-vpc",
        "image_id": PLACEHOLDER_AMI,
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


def test_without_a_default_vpc_it_builds_a_small_public_one() -> None:
    result = run(default_vpc=False)
    assert {r.type for r in result.resources} >= NETWORK_TYPES
    vpc = result.one("aws:ec2/vpc:Vpc").inputs
    assert vpc["cidrBlock"] == "10.0.0.0/16"
    subnet = result.one("aws:ec2/subnet:Subnet").inputs
    assert subnet["cidrBlock"] == "10.0.0.0/24"
    assert subnet["mapPublicIpOnLaunch"] is True
    route = result.one("aws:ec2/route:Route").inputs
    assert route["destinationCidrBlock"] == "0.0.0.0/0"
    assert route["gatewayId"] == f"{result.one('aws:ec2/internetGateway:InternetGateway').name}-id"
    assert route["routeTableId"] == "rtb-main"
    assert instance(result)["subnetId"] == f"{result.one('aws:ec2/subnet:Subnet').name}-id"
    assert result.one(GROUP).inputs["vpcId"] == "vpc-new"
    assert result.outputs["network"] == "new-vpc"


def test_new_vpc_can_be_forced() -> None:
    result = run(network="new-vpc")
    assert result.calls_to("aws:ec2/getVpcs:getVpcs") == []
    assert result.outputs["network"] == "new-vpc"


def test_the_default_vpc_lookup_filters() -> None:
    result = run()
    (vpcs,) = result.calls_to("aws:ec2/getVpcs:getVpcs")
    assert vpcs.args["filters"] == [{"name": "is-default", "values": ["true"]}]
    (subnets,) = result.calls_to("aws:ec2/getSubnets:getSubnets")
    assert {"name": "default-for-az", "values": ["true"]} in subnets.args["filters"]
    assert {"name": "vpc-id", "values": ["vpc-default"]} in subnets.args["filters"]


@pytest.mark.parametrize("default_vpc", [True, False])
def test_every_resource_carries_the_run_and_its_expiry(default_vpc: bool) -> None:
    result = run(default_vpc=default_vpc)
    for resource in result.cloud_resources:
        if resource.type in UNTAGGED:
            continue
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
