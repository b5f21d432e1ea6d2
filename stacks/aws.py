"""The AWS stack of a run: networking, SSH access, a key pair and one EC2 instance.

- networking: the region's default VPC when it has one with default subnets; otherwise (or with
  `network="new-vpc"`) a VPC 10.0.0.0/16 with one public subnet, an internet gateway and a
  default route. The stack output `network` says which (`default-vpc` or `new-vpc`);
- a security group: TCP 22 from `ssh_cidrs` only, all egress; no task port is opened (iacrun
  reaches task ports through SSH tunnels);
- a key pair from the run's public key;
- the instance: the offer's type, the image `spec.vm_image` names (stacks/images.py: a Deep
  Learning AMI with the NVIDIA driver for GPU types, Canonical's Ubuntu 22.04 otherwise), looked up
  in the region; the root volume of `disk_gb`
  (gp3, encrypted, deleted with the instance); IMDSv2 required (hop limit 1, so containers
  cannot read the user data); `instance_initiated_shutdown_behavior="terminate"` so that the VM's
  own power-off ends it; one-time spot through market options for spot offers; the gzip'd
  cloud-init as user data (a Pulumi secret: it holds the host key).

Every resource carries `spec.tags`. Outputs: `public_ip`, `ssh_user`, `instance_id`, `network`,
`image_id`.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from iacrun.stacks.cloudinit import SSH_USER, user_data
from iacrun.stacks.spec import StackSpec

if TYPE_CHECKING:
    from pulumi_aws.ec2 import (
        InstanceInstanceMarketOptionsArgsDict,
        InstanceInstanceMarketOptionsSpotOptionsArgsDict,
    )

ARCHITECTURES = {"x86": "x86_64", "arm": "arm64"}
VPC_CIDR = "10.0.0.0/16"
SUBNET_CIDR = "10.0.0.0/24"


def image_query(spec: StackSpec) -> dict[str, Any]:
    """The `aws.ec2.get_ami` arguments that find the spec's image (stacks/images.py) in its
    region: the newest of its owner's AMIs whose name matches."""
    image = spec.vm_image
    if not image.owner or not image.name:
        raise ValueError(f"the image {image.label!r} has no AMI owner and name")
    return {
        "most_recent": True,
        "owners": [image.owner],
        "filters": [
            {"name": "name", "values": [image.name]},
            {"name": "architecture", "values": [ARCHITECTURES[spec.cpu_arch]]},
            {"name": "state", "values": ["available"]},
            {"name": "root-device-type", "values": ["ebs"]},
        ],
    }


def market_options(spec: StackSpec) -> InstanceInstanceMarketOptionsArgsDict | None:
    if not spec.spot:
        return None
    options: InstanceInstanceMarketOptionsSpotOptionsArgsDict = {
        "spot_instance_type": "one-time",
        "instance_interruption_behavior": "terminate",
    }
    if spec.max_price is not None:
        options["max_price"] = str(spec.max_price)
    return {"market_type": "spot", "spot_options": options}


def program(spec: StackSpec) -> Callable[[], None]:
    """The Pulumi program of `spec`, for the stack engine or `preview`."""
    if spec.cloud != "aws":
        raise ValueError(f"the AWS program got a spec for {spec.cloud}")
    return lambda: build(spec)


def build(spec: StackSpec) -> None:
    import pulumi
    import pulumi_aws as aws

    data = user_data(spec)  # size-checked before anything is declared
    tags = spec.tags
    prefix = spec.name_prefix
    provider = aws.Provider(f"{prefix}-aws", region=spec.region, profile=spec.aws_profile)
    opts = pulumi.ResourceOptions(provider=provider)
    invoke = pulumi.InvokeOptions(provider=provider)

    network, vpc_id, subnet_id, ready = _network(spec, aws, opts, invoke)
    v4 = [c for c in spec.ssh_cidrs if ipaddress.ip_network(c).version == 4]
    v6 = [c for c in spec.ssh_cidrs if ipaddress.ip_network(c).version == 6]
    ssh_rule: aws.ec2.SecurityGroupIngressArgsDict = {
        "description": "SSH from the iacrun caller",
        "protocol": "tcp",
        "from_port": 22,
        "to_port": 22,
    }
    if v4:
        ssh_rule["cidr_blocks"] = v4
    if v6:
        ssh_rule["ipv6_cidr_blocks"] = v6
    egress: aws.ec2.SecurityGroupEgressArgsDict = {
        "description": "all outbound",
        "protocol": "-1",
        "from_port": 0,
        "to_port": 0,
        "cidr_blocks": ["0.0.0.0/0"],
        "ipv6_cidr_blocks": ["::/0"],
    }
    group = aws.ec2.SecurityGroup(
        f"{prefix}-ssh",
        description=f"iacrun run {spec.run_name}: SSH from the caller only",
        vpc_id=vpc_id,
        ingress=[ssh_rule],
        egress=[egress],
        tags=tags,
        opts=opts,
    )
    key = aws.ec2.KeyPair(f"{prefix}-key", public_key=spec.ssh_public_key, tags=tags, opts=opts)
    if spec.machine_image:
        image_id: Any = spec.machine_image
    else:
        image_id = aws.ec2.get_ami_output(**image_query(spec), opts=invoke).id
    metadata: aws.ec2.InstanceMetadataOptionsArgsDict = {
        "http_endpoint": "enabled",
        "http_tokens": "required",
        "http_put_response_hop_limit": 1,
        "instance_metadata_tags": "disabled",
    }
    root: aws.ec2.InstanceRootBlockDeviceArgsDict = {
        "volume_size": spec.disk_gb,
        "volume_type": "gp3",
        "encrypted": True,
        "delete_on_termination": True,
        "tags": tags,
    }
    instance = aws.ec2.Instance(
        f"{prefix}-vm",
        ami=image_id,
        instance_type=spec.instance_type,
        key_name=key.key_name,
        subnet_id=subnet_id,
        vpc_security_group_ids=[group.id],
        associate_public_ip_address=True,
        user_data_base64=pulumi.Output.secret(base64.b64encode(data).decode()),
        user_data_replace_on_change=True,
        instance_initiated_shutdown_behavior="terminate",
        metadata_options=metadata,
        root_block_device=root,
        instance_market_options=market_options(spec),
        tags=tags,
        opts=pulumi.ResourceOptions(provider=provider, depends_on=ready),
    )
    pulumi.export("public_ip", instance.public_ip)
    pulumi.export("ssh_user", SSH_USER)
    pulumi.export("instance_id", instance.id)
    pulumi.export("network", network)
    pulumi.export("image_id", image_id)


def _network(spec: StackSpec, aws: Any, opts: Any, invoke: Any) -> tuple[str, Any, Any, list[Any]]:
    """(kind, vpc id, subnet id or None, resources the instance must wait for)."""
    if spec.network == "auto":
        found = aws.ec2.get_vpcs(filters=[{"name": "is-default", "values": ["true"]}], opts=invoke)
        if found.ids:
            subnets = aws.ec2.get_subnets(
                filters=[
                    {"name": "vpc-id", "values": [found.ids[0]]},
                    {"name": "default-for-az", "values": ["true"]},
                ],
                opts=invoke,
            )
            if subnets.ids:
                # no subnet_id: EC2 picks a default subnet (an availability zone) itself
                return "default-vpc", found.ids[0], None, []
    tags = spec.tags
    prefix = spec.name_prefix
    vpc = aws.ec2.Vpc(
        f"{prefix}-vpc",
        cidr_block=VPC_CIDR,
        enable_dns_hostnames=True,
        enable_dns_support=True,
        tags=tags,
        opts=opts,
    )
    gateway = aws.ec2.InternetGateway(f"{prefix}-igw", vpc_id=vpc.id, tags=tags, opts=opts)
    subnet = aws.ec2.Subnet(
        f"{prefix}-subnet",
        vpc_id=vpc.id,
        cidr_block=SUBNET_CIDR,
        map_public_ip_on_launch=True,
        tags=tags,
        opts=opts,
    )
    route = aws.ec2.Route(
        f"{prefix}-internet",
        route_table_id=vpc.main_route_table_id,
        destination_cidr_block="0.0.0.0/0",
        gateway_id=gateway.id,
        opts=opts,
    )
    return "new-vpc", vpc.id, subnet.id, [route]
