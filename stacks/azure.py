"""The Azure stack of a run: one resource group holding everything the run needs.

- a resource group `iacrun-STACK` (deleting it removes whatever a failed run left behind);
- a virtual network 10.0.0.0/16 with one subnet 10.0.0.0/24;
- a network security group allowing TCP 22 from `ssh_cidrs` only (Azure's default rules deny
  every other inbound connection), attached to the NIC; no task port is opened;
- a static Standard public IP and a NIC;
- the VM: the offer's size; the image `spec.vm_image` names (stacks/images.py: the Ubuntu HPC
  image with the NVIDIA datacenter driver for NC/ND sizes, Canonical's Ubuntu 22.04 otherwise);
  the run's SSH key for `ubuntu` (password login disabled); the cloud-init as custom data (a
  Pulumi secret: it holds the host key); an OS disk of `disk_gb`
  (Premium SSD where the size supports it, else Standard SSD; encrypted at rest by Azure);
  the OS disk, NIC and public IP deleted with the VM; for spot offers `priority="Spot"`,
  `eviction_policy="Delete"` and `billing_profile.max_price` (-1: up to the on-demand price);
- for A10 sizes (NVadsA10 v5, which need NVIDIA's GRID driver): Azure's NVIDIA GPU Driver
  Extension on the VM, which installs GRID at first boot;
- with `azure_self_delete`: a system-assigned identity on the VM, given the built-in
  Contributor role on the run's resource group only (no custom role: creating one and assigning
  it at once races Azure's replication, `RoleDefinitionDoesNotExist`). The VM's self-destruct
  timer uses it to delete the whole resource group, because a VM that only powers itself off is
  still billed on Azure. Assigning a role needs `Microsoft.Authorization/roleAssignments/write`
  (Owner, User Access Administrator, Role Based Access Control Administrator): the backend turns
  this off for callers without it (`backends/azure.py`).

A multi-node run (`spec.nodes` > 1) gets, in the same resource group and subnet:

- `nodes` VMs alike, each with its own public IP, NIC, OS disk, host name, identity and role
  (rank 0 keeps the names above, rank k's end in `-node-k`);
- a proximity placement group holding them all; accelerated networking on the NICs where the
  size supports it (`accelerated_networking`);
- on ND sizes (`spec.cluster_network == "infiniband"`): an availability set (aligned, one fault
  and update domain, in the placement group), because VMs share an InfiniBand fabric only inside
  one availability set or scale set; the HPC image (stacks/images.py) carries the drivers;
- one more NSG rule: everything from the subnet to the subnet (nothing more from outside);
- each VM's guard deletes only that VM (its disk, NIC and IP go with it), never the group.

Every resource that takes tags carries `spec.tags`. Outputs: `public_ip`, `ssh_user`,
`instance_id` (the VM's resource id; rank 0's), `resource_group`, and `nodes`: in rank order,
`{rank, public_ip, private_ip, instance_id}` of every VM.
"""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from iacrun.stacks.cloudinit import SSH_USER, user_data
from iacrun.stacks.spec import StackSpec

if TYPE_CHECKING:
    from pulumi_azure_native.compute import ImageReferenceArgsDict

#: Microsoft's NVIDIA GPU Driver Extension: GRID on NVadsA10 v5, CUDA on NC/ND (azhpc-extensions)
GPU_DRIVER_EXTENSION = {
    "publisher": "Microsoft.HpcCompute",
    "type": "NvidiaGpuDriverLinux",
    "type_handler_version": "1.8",
}
VNET_CIDR = "10.0.0.0/16"
SUBNET_CIDR = "10.0.0.0/24"
#: the built-in Contributor role: on the run's resource group, it may delete that group
CONTRIBUTOR_ROLE = "b24988ac-6180-42a0-ab88-20f7382dd24c"
_NAMESPACE = uuid.UUID("5c0f3a52-8f0e-4d55-9a43-7b6f3e1c2d10")
_SIZE_RE = re.compile(r"^Standard_[A-Za-z]+\d+(?:-\d+)?([a-z]*)", re.IGNORECASE)


def image_reference(spec: StackSpec) -> ImageReferenceArgsDict:
    if spec.machine_image:
        parts = spec.machine_image.split(":")
        if len(parts) != 4:
            raise ValueError("an Azure image is publisher:offer:sku:version")
        publisher, offer, sku, version = parts
    else:
        if not spec.vm_image.urn:
            raise ValueError(f"the image {spec.vm_image.label!r} has no Azure URN")
        publisher, offer, sku, version = spec.vm_image.urn.split(":")
    return {"publisher": publisher, "offer": offer, "sku": sku, "version": version}


def os_disk_sku(vm_size: str) -> str:
    """Premium SSD where the size supports premium storage (an `s` in its features)."""
    match = _SIZE_RE.match(vm_size)
    return "Premium_LRS" if match and "s" in match.group(1).lower() else "StandardSSD_LRS"


def resource_group_name(spec: StackSpec) -> str:
    return f"iacrun-{spec.stack_name}"


def program(spec: StackSpec) -> Callable[[], None]:
    """The Pulumi program of `spec`, for the stack engine or `preview`."""
    if spec.cloud != "azure":
        raise ValueError(f"the Azure program got a spec for {spec.cloud}")
    return lambda: build(spec)


def build(spec: StackSpec) -> None:
    import pulumi
    import pulumi_azure_native as az

    data = user_data(spec)  # size-checked before anything is declared
    tags = spec.tags
    prefix = spec.name_prefix
    location = spec.region
    provider = az.Provider(
        f"{prefix}-azure", location=location, subscription_id=spec.azure_subscription_id
    )
    opts = pulumi.ResourceOptions(provider=provider)

    group = az.resources.ResourceGroup(
        f"{prefix}-rg",
        resource_group_name=resource_group_name(spec),
        location=location,
        tags=tags,
        opts=opts,
    )
    rg = group.name
    vnet = az.network.VirtualNetwork(
        f"{prefix}-vnet",
        virtual_network_name=f"{prefix}-vnet",
        resource_group_name=rg,
        location=location,
        address_space={"address_prefixes": [VNET_CIDR]},
        tags=tags,
        opts=opts,
    )
    subnet = az.network.Subnet(
        f"{prefix}-subnet",
        subnet_name="default",
        resource_group_name=rg,
        virtual_network_name=vnet.name,
        address_prefix=SUBNET_CIDR,
        opts=opts,
    )
    rules: list[Any] = [
        {
            "name": "ssh-from-caller",
            "description": "SSH from the iacrun caller",
            "priority": 100,
            "direction": "Inbound",
            "access": "Allow",
            "protocol": "Tcp",
            "source_address_prefixes": list(spec.ssh_cidrs),
            "source_port_range": "*",
            "destination_address_prefix": "*",
            "destination_port_range": "22",
        }
    ]
    if spec.cluster:
        rules.append(CLUSTER_RULE)
    nsg = az.network.NetworkSecurityGroup(
        f"{prefix}-nsg",
        network_security_group_name=f"{prefix}-nsg",
        resource_group_name=rg,
        location=location,
        security_rules=rules,
        tags=tags,
        opts=opts,
    )
    placement: Any = None
    availability_set: Any = None
    if spec.cluster:
        ppg = az.compute.ProximityPlacementGroup(
            f"{prefix}-ppg",
            proximity_placement_group_name=f"{prefix}-ppg",
            resource_group_name=rg,
            location=location,
            proximity_placement_group_type="Standard",
            tags=tags,
            opts=opts,
        )
        placement = {"id": ppg.id}
        if spec.cluster_network == "infiniband":
            # VMs share an InfiniBand fabric only inside one availability set (or scale set)
            avset = az.compute.AvailabilitySet(
                f"{prefix}-avset",
                availability_set_name=f"{prefix}-avset",
                resource_group_name=rg,
                location=location,
                platform_fault_domain_count=1,
                platform_update_domain_count=1,
                proximity_placement_group=placement,
                sku={"name": "Aligned"},
                tags=tags,
                opts=opts,
            )
            availability_set = {"id": avset.id}
    custom_data = pulumi.Output.secret(base64.b64encode(data).decode())
    nodes: list[dict[str, Any]] = []
    for rank in range(spec.nodes):
        suffix = spec.node_suffix(rank)
        ip = az.network.PublicIPAddress(
            f"{prefix}-ip{suffix}",
            public_ip_address_name=f"{prefix}-ip{suffix}",
            resource_group_name=rg,
            location=location,
            public_ip_allocation_method="Static",
            public_ip_address_version="IPv4",
            sku={"name": "Standard", "tier": "Regional"},
            delete_option="Delete",
            tags=tags,
            opts=opts,
        )
        nic_options: dict[str, Any] = {}
        if spec.cluster and accelerated_networking(spec.instance_type):
            nic_options["enable_accelerated_networking"] = True
        nic = az.network.NetworkInterface(
            f"{prefix}-nic{suffix}",
            network_interface_name=f"{prefix}-nic{suffix}",
            resource_group_name=rg,
            location=location,
            ip_configurations=[
                {
                    "name": "primary",
                    "primary": True,
                    "subnet": {"id": subnet.id},
                    "public_ip_address": {"id": ip.id},
                    "private_ip_allocation_method": "Dynamic",
                }
            ],
            network_security_group={"id": nsg.id},
            tags=tags,
            opts=opts,
            **nic_options,
        )
        os_disk: az.compute.OSDiskArgsDict = {
            "create_option": "FromImage",
            "disk_size_gb": spec.disk_gb,
            "caching": az.compute.CachingTypes.READ_WRITE,
            "delete_option": "Delete",
            "managed_disk": {"storage_account_type": os_disk_sku(spec.instance_type)},
        }
        storage: az.compute.StorageProfileArgsDict = {
            "image_reference": image_reference(spec),
            "os_disk": os_disk,
        }
        key: az.compute.SshPublicKeyArgsDict = {
            "path": f"/home/{SSH_USER}/.ssh/authorized_keys",
            "key_data": spec.ssh_public_key,
        }
        linux: az.compute.LinuxConfigurationArgsDict = {
            "disable_password_authentication": True,
            "provision_vm_agent": True,
            "ssh": {"public_keys": [key]},
        }
        os_profile: az.compute.OSProfileArgsDict = {
            # the host name: distinct per node (MPI and NCCL tell machines apart by it)
            "computer_name": (prefix + suffix)[:64],
            "admin_username": SSH_USER,
            "custom_data": custom_data,
            "linux_configuration": linux,
        }
        nic_ref: az.compute.NetworkInterfaceReferenceArgsDict = {
            "id": nic.id,
            "primary": True,
            "delete_option": "Delete",
        }
        hardware: az.compute.HardwareProfileArgsDict = {"vm_size": spec.instance_type}
        network: az.compute.NetworkProfileArgsDict = {"network_interfaces": [nic_ref]}
        identity: az.compute.VirtualMachineIdentityArgsDict | None = None
        if spec.azure_self_delete:
            identity = {"type": az.compute.ResourceIdentityType.SYSTEM_ASSIGNED}
        billing: az.compute.BillingProfileArgsDict | None = None
        if spec.spot:
            billing = {"max_price": spec.max_price if spec.max_price else -1}
        vm_name = f"{prefix}-vm{suffix}"[:64]
        vm = az.compute.VirtualMachine(
            f"{prefix}-vm{suffix}",
            vm_name=vm_name,
            resource_group_name=rg,
            location=location,
            hardware_profile=hardware,
            storage_profile=storage,
            os_profile=os_profile,
            network_profile=network,
            identity=identity,
            priority="Spot" if spec.spot else None,
            eviction_policy="Delete" if spec.spot else None,
            billing_profile=billing,
            proximity_placement_group=placement,
            availability_set=availability_set,
            tags=tags,
            opts=opts,
        )
        if spec.vm_image.driver_extension:
            az.compute.VirtualMachineExtension(
                f"{prefix}-gpu-driver{suffix}",
                vm_extension_name="NvidiaGpuDriverLinux",
                resource_group_name=rg,
                vm_name=vm_name,
                location=location,
                publisher=GPU_DRIVER_EXTENSION["publisher"],
                type=GPU_DRIVER_EXTENSION["type"],
                type_handler_version=GPU_DRIVER_EXTENSION["type_handler_version"],
                auto_upgrade_minor_version=True,
                tags=tags,
                opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[vm])),
            )
        if spec.azure_self_delete:
            _self_delete_role(spec, az, group, vm, opts, suffix)
        nodes.append(
            {
                "rank": rank,
                "public_ip": ip.ip_address,
                "private_ip": nic.ip_configurations.apply(_private_ip),
                "instance_id": vm.id,
            }
        )
    pulumi.export("public_ip", nodes[0]["public_ip"])
    pulumi.export("ssh_user", SSH_USER)
    pulumi.export("instance_id", nodes[0]["instance_id"])
    pulumi.export("resource_group", rg)
    pulumi.export("nodes", nodes)


#: the NSG rule of a cluster: every protocol and port between the machines of the run's subnet
#: (from inside the subnet only: nothing more is open from outside)
CLUSTER_RULE: dict[str, Any] = {
    "name": "cluster-within-subnet",
    "description": "all traffic between the machines of the run",
    "priority": 110,
    "direction": "Inbound",
    "access": "Allow",
    "protocol": "*",
    "source_address_prefix": SUBNET_CIDR,
    "source_port_range": "*",
    "destination_address_prefix": SUBNET_CIDR,
    "destination_port_range": "*",
}
#: the sizes iacrun offers that support accelerated networking (SR-IOV): its GPU families and
#: the general-purpose, memory and compute v4-v6 sizes with 2 vCPUs or more
_ACCELERATED = re.compile(
    r"Standard_(NC\d+as_T4_v3|NV\d+adm?s_A10_v5|NC\d+ads_A100_v4|ND96a(m)?sr(_A100)?_v4"
    r"|NC\d+adi?s_H100_v5|ND96isr_H[12]00_v5|[DEF]([2-9]|\d\d+)[a-z]*_v[4-6])"
)


def accelerated_networking(vm_size: str) -> bool:
    """Whether the size takes accelerated networking (asked for on a cluster's NICs)."""
    return _ACCELERATED.fullmatch(vm_size) is not None


def _private_ip(configurations: Any) -> str | None:
    """The NIC's private address, from its IP configurations as Azure reports them."""
    for config in configurations or []:
        address = getattr(config, "private_ip_address", None)
        if address:
            return str(address)
    return None


def self_delete_role_id(resource_group_id: str) -> str:
    """The subscription-scoped id of the built-in Contributor role, from the group's id."""
    subscription = "/".join(resource_group_id.split("/")[:3])
    return f"{subscription}/providers/Microsoft.Authorization/roleDefinitions/{CONTRIBUTOR_ROLE}"


def _self_delete_role(
    spec: StackSpec, az: Any, group: Any, vm: Any, opts: Any, suffix: str = ""
) -> None:
    """The built-in Contributor role on the run's resource group, for the VM's identity."""
    az.authorization.RoleAssignment(
        f"{spec.name_prefix}-self-delete{suffix}",
        role_assignment_name=str(uuid.uuid5(_NAMESPACE, f"{spec.stack_name}/assignment{suffix}")),
        scope=group.id,
        role_definition_id=group.id.apply(self_delete_role_id),
        principal_id=vm.identity.apply(lambda identity: identity.principal_id),
        # a new identity may not have reached every directory replica yet: with the type given,
        # Resource Manager does not look the principal up (no PrincipalNotFound)
        principal_type="ServicePrincipal",
        description=f"the VM of iacrun run {spec.run_name} may delete its resource group",
        opts=opts,
    )
