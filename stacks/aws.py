"""The AWS stack of a run: networking, SSH access, a key pair and one EC2 instance.

- networking: the region's default VPC when it has one with default subnets; otherwise (or with
  `network="iacrun-vpc"`) the region's iacrun VPC, found by its tag `iacrun:network=shared`, or,
  the first time, created with one public subnet per zone, an internet gateway and a default
  route, and kept (`retain_on_delete`: no run's `down` deletes it; no VPC per run). The stack
  output `network` says which (`default-vpc` or `iacrun-vpc`);
- the zone: the first one (by name) that offers the instance type (EC2's instance-type
  offerings per zone) and has a subnet, leaving out `avoid_zones` (zones that had no capacity for
  this run); the subnet and the public address are passed explicitly. Output `zone`; with no
  zone left the program declares no machine and `zone` is None;
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

A multi-node run (`spec.nodes` > 1) gets, in the same stack:

- `nodes` instances alike (same type, image, user data, zone and subnet); rank 0 keeps the
  names above, rank k's end in `-node-k` and its tags say `iacrun:node=k`;
- a placement group with strategy `cluster` holding them all (low latency between them), when
  EC2 says the type supports one (`get_instance_type`: burstable types do not);
- two more rules in the security group: all traffic from, and to, the group itself (its members
  only: nothing more is open from outside; EFA needs both directions);
- on an EFA type (`spec.cluster_network == "efa"`): how many EFA interfaces the type takes is
  EC2's answer too, and a launch template gives each machine all of them, one
  per network card (card 0 at device index 0, the others at device index 1), in the subnet and
  group above, deleted with the instance. EC2 auto-assigns no public address to a launch with
  several interfaces, so each machine's primary interface then gets an Elastic IP (with a single
  EFA the interface asks for the public address itself). The DLAMI carries the EFA software.

Every resource of the run carries `spec.tags` (the kept VPC carries `shared_network_tags`).
Outputs: `public_ip`, `ssh_user`, `instance_id` (rank 0's), `network`, `zone`, `image_id`, and
`nodes`: in rank order, `{rank, public_ip, private_ip, instance_id}` of every machine.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
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
#: the iacrun VPC's subnets, one per zone (a /20 each: 4091 addresses)
SUBNET_CIDRS = tuple(f"10.0.{16 * i}.0/20" for i in range(16))
#: the tag that marks the region's kept iacrun VPC and its subnets
NETWORK_TAG = "iacrun:network"
NETWORK_TAG_VALUE = "shared"


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


def program(
    spec: StackSpec, on_zone: Callable[[ZoneChoice], None] | None = None
) -> Callable[[], None]:
    """The Pulumi program of `spec`, for the stack engine or `preview`.

    `on_zone` hears which zone the program chose and which others could take the type (the
    backend tries the next one when this one has no capacity); it changes nothing declared."""
    if spec.cloud != "aws":
        raise ValueError(f"the AWS program got a spec for {spec.cloud}")
    return lambda: build(spec, on_zone)


def build(spec: StackSpec, on_zone: Callable[[ZoneChoice], None] | None = None) -> None:
    import pulumi
    import pulumi_aws as aws

    data = user_data(spec)  # size-checked before anything is declared
    tags = spec.tags
    prefix = spec.name_prefix
    provider = aws.Provider(f"{prefix}-aws", region=spec.region, profile=spec.aws_profile)
    opts = pulumi.ResourceOptions(provider=provider)
    invoke = pulumi.InvokeOptions(provider=provider)

    network, vpc_id, subnets, ready = _network(spec, aws, opts, invoke)
    offered = aws.ec2.get_instance_type_offerings(**offering_query(spec), opts=invoke).locations
    choice = choose_zone(offered, subnets, spec.avoid_zones)
    if on_zone is not None:
        on_zone(choice)
    pulumi.export("network", network)
    pulumi.export("zone", choice.zone)
    if choice.zone is None:
        # no zone of the region offers the type (or all had no capacity): declare no machine;
        # the backend says so and moves to the next offer
        return
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
    ingress_rules: list[aws.ec2.SecurityGroupIngressArgsDict] = [ssh_rule]
    egress_rules: list[aws.ec2.SecurityGroupEgressArgsDict] = [egress]
    described = "SSH from the caller only"
    if spec.cluster:
        # the run's machines reach each other on every protocol and port, and nobody else does:
        # the source and the destination is the group itself (EFA's SRD traffic needs both)
        ingress_rules.append(cluster_rule())
        egress_rules.append(cluster_rule())
        described = "SSH from the caller only; all traffic between the run's machines"
    group = aws.ec2.SecurityGroup(
        f"{prefix}-ssh",
        description=f"iacrun run {spec.run_name}: {described}",
        vpc_id=vpc_id,
        ingress=ingress_rules,
        egress=egress_rules,
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
    placement: Any = None
    efa = 0
    template: Any = None
    if spec.cluster:
        # what EC2 says of the type: whether it goes in a cluster placement group (burstable
        # types do not), and how many EFA interfaces it takes
        info = aws.ec2.get_instance_type(instance_type=spec.instance_type, opts=invoke)
        if "cluster" in (info.supported_placement_strategies or ()):
            placement = aws.ec2.PlacementGroup(
                f"{prefix}-cluster", strategy="cluster", tags=tags, opts=opts
            ).name
        if spec.cluster_network == "efa":
            efa = efa_interface_count(info.efa_supported, info.efa_maximum_interfaces)
        if efa:
            template = aws.ec2.LaunchTemplate(
                f"{prefix}-efa",
                description=f"iacrun run {spec.run_name}: {efa} EFA interface(s) per machine",
                network_interfaces=efa_interfaces(efa, choice.subnet, group.id),
                tags=tags,
                opts=opts,
            )
    data64 = pulumi.Output.secret(base64.b64encode(data).decode())
    nodes: list[dict[str, Any]] = []
    for rank in range(spec.nodes):
        suffix = spec.node_suffix(rank)
        node_tags = node_tags_of(spec, rank)
        root: aws.ec2.InstanceRootBlockDeviceArgsDict = {
            "volume_size": spec.disk_gb,
            "volume_type": "gp3",
            "encrypted": True,
            "delete_on_termination": True,
            "tags": node_tags,
        }
        if template is not None:
            # the network interfaces (EFA) come from the launch template: the subnet and the
            # group are theirs, and a public address is theirs (one interface) or an Elastic IP
            attached: dict[str, Any] = {
                "launch_template": {
                    "id": template.id,
                    "version": template.latest_version.apply(str),
                },
            }
        else:
            attached = {
                "availability_zone": choice.zone,
                # the subnet and the public address are explicit: an account that turned off
                # public addresses by default (or a subnet that does not map them) still gets one
                "subnet_id": choice.subnet,
                "vpc_security_group_ids": [group.id],
                "associate_public_ip_address": True,
            }
        instance = aws.ec2.Instance(
            f"{prefix}-vm{suffix}",
            ami=image_id,
            instance_type=spec.instance_type,
            key_name=key.key_name,
            placement_group=placement,
            user_data_base64=data64,
            user_data_replace_on_change=True,
            instance_initiated_shutdown_behavior="terminate",
            metadata_options=metadata,
            root_block_device=root,
            instance_market_options=market_options(spec),
            tags=node_tags,
            opts=pulumi.ResourceOptions(provider=provider, depends_on=ready),
            **attached,
        )
        public_ip: Any = instance.public_ip
        if efa > 1:
            # EC2 gives no automatic public address to an instance launched with several
            # network interfaces: an Elastic IP on its primary interface instead
            public_ip = aws.ec2.Eip(
                f"{prefix}-ip{suffix}",
                domain="vpc",
                network_interface=instance.primary_network_interface_id,
                tags=node_tags,
                opts=opts,
            ).public_ip
        nodes.append(
            {
                "rank": rank,
                "public_ip": public_ip,
                "private_ip": instance.private_ip,
                "instance_id": instance.id,
            }
        )
    pulumi.export("public_ip", nodes[0]["public_ip"])
    pulumi.export("ssh_user", SSH_USER)
    pulumi.export("instance_id", nodes[0]["instance_id"])
    pulumi.export("image_id", image_id)
    pulumi.export("nodes", nodes)


#: the rule that lets the run's machines reach each other (with `self`: the group itself)
CLUSTER_RULE: dict[str, Any] = {
    "description": "all traffic between the machines of the run",
    "protocol": "-1",
    "from_port": 0,
    "to_port": 0,
}


def cluster_rule() -> Any:
    """The rule that lets the run's machines reach each other: the group itself, both ways."""
    return {**CLUSTER_RULE, "self": True}


def node_tags_of(spec: StackSpec, rank: int) -> dict[str, str]:
    """The tags of rank `rank`'s machine: the run's, and in a cluster its rank and name."""
    if not spec.cluster:
        return spec.tags
    return spec.tags | {"Name": spec.name_prefix + spec.node_suffix(rank), "iacrun:node": str(rank)}


def efa_interface_count(supported: bool | None, maximum: int | None) -> int:
    """How many EFA interfaces a machine gets: all its type supports (EC2's answer), or none."""
    if not supported:
        return 0
    return max(1, int(maximum or 1))


def efa_interfaces(count: int, subnet: Any, group: Any) -> list[Any]:
    """The launch template's network interfaces: `count` EFAs, one per network card, in the
    machine's subnet and security group, deleted with the instance.

    The primary one is network card 0, device index 0; every other card gets its EFA at device
    index 1. A public address is asked for only with one interface: EC2 refuses it for a launch
    with several (the program then gives the primary interface an Elastic IP)."""
    interfaces: list[Any] = []
    for card in range(count):
        interface: dict[str, Any] = {
            "network_card_index": card,
            "device_index": 0 if card == 0 else 1,
            "interface_type": "efa",
            "subnet_id": subnet,
            "security_groups": [group],
            "delete_on_termination": "true",
            "description": f"EFA {card}",
        }
        if count == 1:
            interface["associate_public_ip_address"] = "true"
        interfaces.append(interface)
    return interfaces


@dataclass(frozen=True)
class ZoneChoice:
    """Where the instance goes: the chosen zone and subnet, and every zone that could take it."""

    zone: str | None
    subnet: Any
    #: the zones offering the type that have a subnet, in the order they are tried
    candidates: tuple[str, ...]


def choose_zone(
    offered: Iterable[str], subnets: Mapping[str, Any], avoid: Iterable[str] = ()
) -> ZoneChoice:
    """The first zone (by name) that offers the type, has a subnet and is not to be avoided.

    `offered`: the zones where EC2 offers the instance type (DescribeInstanceTypeOfferings);
    `subnets`: zone → subnet of the network in use; `avoid`: zones that already had no capacity
    for this run. `zone` is None when no candidate is left."""
    offered_set = set(offered)
    candidates = tuple(z for z in sorted(subnets) if z in offered_set)
    skipped = set(avoid)
    left = [z for z in candidates if z not in skipped]
    if not left:
        return ZoneChoice(None, None, candidates)
    return ZoneChoice(left[0], subnets[left[0]], candidates)


def offering_query(spec: StackSpec) -> dict[str, Any]:
    """The `aws.ec2.get_instance_type_offerings` arguments: the zones that offer the type."""
    return {
        "location_type": "availability-zone",
        "filters": [{"name": "instance-type", "values": [spec.instance_type]}],
    }


def _network(
    spec: StackSpec, aws: Any, opts: Any, invoke: Any
) -> tuple[str, Any, dict[str, Any], list[Any]]:
    """(kind, vpc id, zone → subnet id, resources the instance must wait for).

    The region's default VPC and its default subnets when it has one; else the region's iacrun
    VPC (tag `iacrun:network=shared`), found by its tag, or created once and kept."""
    if spec.network == "auto":
        found = aws.ec2.get_vpcs(filters=[{"name": "is-default", "values": ["true"]}], opts=invoke)
        if found.ids:
            vpc_id = sorted(found.ids)[0]
            subnets = _subnets_by_zone(
                aws,
                invoke,
                [
                    {"name": "vpc-id", "values": [vpc_id]},
                    {"name": "default-for-az", "values": ["true"]},
                ],
            )
            if subnets:
                return "default-vpc", vpc_id, subnets, []
    shared = aws.ec2.get_vpcs(
        filters=[{"name": f"tag:{NETWORK_TAG}", "values": [NETWORK_TAG_VALUE]}], opts=invoke
    )
    if shared.ids:
        vpc_id = sorted(shared.ids)[0]
        subnets = _subnets_by_zone(
            aws,
            invoke,
            [
                {"name": "vpc-id", "values": [vpc_id]},
                {"name": f"tag:{NETWORK_TAG}", "values": [NETWORK_TAG_VALUE]},
            ],
        )
        return "iacrun-vpc", vpc_id, subnets, []
    return _create_shared_vpc(spec, aws, opts, invoke)


def _subnets_by_zone(aws: Any, invoke: Any, filters: list[dict[str, Any]]) -> dict[str, Any]:
    ids = aws.ec2.get_subnets(filters=filters, opts=invoke).ids
    by_zone: dict[str, Any] = {}
    for subnet_id in sorted(ids):
        zone = aws.ec2.get_subnet(id=subnet_id, opts=invoke).availability_zone
        by_zone.setdefault(zone, subnet_id)
    return by_zone


def shared_network_tags(region: str) -> dict[str, str]:
    """The tags of the kept iacrun VPC: no run's tags, so nothing calls it a run's leftover."""
    return {
        "Name": f"iacrun-{region}",
        NETWORK_TAG: NETWORK_TAG_VALUE,
        "managed-by": "iacrun",
    }


def _create_shared_vpc(
    spec: StackSpec, aws: Any, opts: Any, invoke: Any
) -> tuple[str, Any, dict[str, Any], list[Any]]:
    """The region's iacrun VPC with one public subnet per zone, kept when the run's stack goes.

    `retain_on_delete`: destroying this run's stack forgets these resources without deleting
    them, so the next run in the region finds the VPC by its tag instead of making another."""
    import pulumi

    tags = shared_network_tags(spec.region)
    prefix = f"iacrun-{spec.region}"
    kept = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(retain_on_delete=True))
    vpc = aws.ec2.Vpc(
        f"{prefix}-vpc",
        cidr_block=VPC_CIDR,
        enable_dns_hostnames=True,
        enable_dns_support=True,
        tags=tags,
        opts=kept,
    )
    gateway = aws.ec2.InternetGateway(f"{prefix}-igw", vpc_id=vpc.id, tags=tags, opts=kept)
    route = aws.ec2.Route(
        f"{prefix}-internet",
        route_table_id=vpc.main_route_table_id,
        destination_cidr_block="0.0.0.0/0",
        gateway_id=gateway.id,
        opts=kept,
    )
    zones = aws.get_availability_zones(
        state="available",
        filters=[{"name": "opt-in-status", "values": ["opt-in-not-required"]}],
        opts=invoke,
    ).names
    subnets: dict[str, Any] = {}
    for index, zone in enumerate(sorted(zones)[: len(SUBNET_CIDRS)]):
        subnet = aws.ec2.Subnet(
            f"{prefix}-{zone}",
            vpc_id=vpc.id,
            cidr_block=SUBNET_CIDRS[index],
            availability_zone=zone,
            # the instance asks for its public address itself (associate_public_ip_address)
            map_public_ip_on_launch=False,
            tags={**tags, "Name": f"iacrun-{zone}"},
            opts=kept,
        )
        subnets[zone] = subnet.id
    return "iacrun-vpc", vpc.id, subnets, [route]
