"""What a cloud identity must be allowed to do for iacrun, derived from what the programs declare.

Every resource type a program may declare and every function (invoke) it may call is listed here
with the provider API actions the Pulumi provider needs for it (create, read back, tag, delete),
plus the calls iacrun makes around the programs (`iacrun doctor`'s probe, Azure's role check).
`docs/permissions/aws-iam-policy.json` and `docs/permissions/azure-role.json` are the minimal
policy and role built from these tables; a test keeps the three in step with the programs.
"""

from __future__ import annotations

from collections.abc import Mapping

_EC2_TAGS = ("ec2:CreateTags", "ec2:DeleteTags", "ec2:DescribeTags")

#: Pulumi resource type / invoke token → the AWS actions it needs
AWS_ACTIONS: Mapping[str, tuple[str, ...]] = {
    "aws:ec2/instance:Instance": (
        "ec2:RunInstances",
        "ec2:DescribeInstances",
        "ec2:DescribeInstanceAttribute",
        "ec2:DescribeInstanceTypes",
        "ec2:DescribeInstanceCreditSpecifications",
        "ec2:DescribeVolumes",
        "ec2:DescribeNetworkInterfaces",
        "ec2:ModifyInstanceAttribute",
        "ec2:TerminateInstances",
        # a spot request's first use in an account creates EC2 Spot's service-linked role
        "iam:CreateServiceLinkedRole",
        *_EC2_TAGS,
    ),
    "aws:ec2/securityGroup:SecurityGroup": (
        "ec2:CreateSecurityGroup",
        "ec2:DescribeSecurityGroups",
        "ec2:DescribeSecurityGroupRules",
        "ec2:AuthorizeSecurityGroupIngress",
        "ec2:AuthorizeSecurityGroupEgress",
        "ec2:RevokeSecurityGroupIngress",
        "ec2:RevokeSecurityGroupEgress",
        "ec2:DeleteSecurityGroup",
        *_EC2_TAGS,
    ),
    "aws:ec2/keyPair:KeyPair": (
        "ec2:ImportKeyPair",
        "ec2:DescribeKeyPairs",
        "ec2:DeleteKeyPair",
        *_EC2_TAGS,
    ),
    "aws:ec2/vpc:Vpc": (
        "ec2:CreateVpc",
        "ec2:DescribeVpcs",
        "ec2:DescribeVpcAttribute",
        "ec2:ModifyVpcAttribute",
        "ec2:DescribeRouteTables",
        "ec2:DescribeNetworkAcls",
        "ec2:DescribeSecurityGroups",
        "ec2:DeleteVpc",
        *_EC2_TAGS,
    ),
    "aws:ec2/internetGateway:InternetGateway": (
        "ec2:CreateInternetGateway",
        "ec2:AttachInternetGateway",
        "ec2:DescribeInternetGateways",
        "ec2:DetachInternetGateway",
        "ec2:DeleteInternetGateway",
        *_EC2_TAGS,
    ),
    "aws:ec2/subnet:Subnet": (
        "ec2:CreateSubnet",
        "ec2:DescribeSubnets",
        "ec2:ModifySubnetAttribute",
        "ec2:DeleteSubnet",
        *_EC2_TAGS,
    ),
    "aws:ec2/route:Route": ("ec2:CreateRoute", "ec2:DescribeRouteTables", "ec2:DeleteRoute"),
    # a multi-node run: the cluster placement group; on EFA types the launch template of the
    # interfaces and the Elastic IPs of machines with several of them
    "aws:ec2/placementGroup:PlacementGroup": (
        "ec2:CreatePlacementGroup",
        "ec2:DescribePlacementGroups",
        "ec2:DeletePlacementGroup",
        *_EC2_TAGS,
    ),
    "aws:ec2/launchTemplate:LaunchTemplate": (
        "ec2:CreateLaunchTemplate",
        "ec2:CreateLaunchTemplateVersion",
        "ec2:ModifyLaunchTemplate",
        "ec2:DescribeLaunchTemplates",
        "ec2:DescribeLaunchTemplateVersions",
        "ec2:DeleteLaunchTemplate",
        *_EC2_TAGS,
    ),
    "aws:ec2/eip:Eip": (
        "ec2:AllocateAddress",
        "ec2:AssociateAddress",
        "ec2:DescribeAddresses",
        "ec2:DescribeAddressesAttribute",
        "ec2:DisassociateAddress",
        "ec2:ReleaseAddress",
        *_EC2_TAGS,
    ),
    "aws:ec2/getInstanceType:getInstanceType": ("ec2:DescribeInstanceTypes",),
    "aws:ec2/getAmi:getAmi": ("ec2:DescribeImages",),
    "aws:ec2/getVpcs:getVpcs": ("ec2:DescribeVpcs",),
    "aws:ec2/getSubnet:getSubnet": ("ec2:DescribeSubnets",),
    "aws:ec2/getSubnets:getSubnets": ("ec2:DescribeSubnets",),
    "aws:ec2/getInstanceTypeOfferings:getInstanceTypeOfferings": (
        "ec2:DescribeInstanceTypeOfferings",
    ),
    "aws:index/getAvailabilityZones:getAvailabilityZones": ("ec2:DescribeAvailabilityZones",),
    # iacrun doctor's probe (sts:GetCallerIdentity needs no permission)
    "aws:index/getCallerIdentity:getCallerIdentity": (),
    "aws:servicequotas/getServiceQuota:getServiceQuota": ("servicequotas:GetServiceQuota",),
}


def _crud(resource: str, *extra: str) -> tuple[str, ...]:
    return (f"{resource}/read", f"{resource}/write", f"{resource}/delete", *extra)


#: Pulumi resource type / invoke token / iacrun's own call → the Azure actions it needs
AZURE_ACTIONS: Mapping[str, tuple[str, ...]] = {
    "azure-native:resources:ResourceGroup": _crud(
        "Microsoft.Resources/subscriptions/resourceGroups"
    ),
    "azure-native:network:VirtualNetwork": _crud("Microsoft.Network/virtualNetworks"),
    "azure-native:network:Subnet": _crud(
        "Microsoft.Network/virtualNetworks/subnets",
        "Microsoft.Network/virtualNetworks/subnets/join/action",
    ),
    "azure-native:network:NetworkSecurityGroup": _crud(
        "Microsoft.Network/networkSecurityGroups",
        "Microsoft.Network/networkSecurityGroups/join/action",
    ),
    "azure-native:network:PublicIPAddress": _crud(
        "Microsoft.Network/publicIPAddresses",
        "Microsoft.Network/publicIPAddresses/join/action",
    ),
    "azure-native:network:NetworkInterface": _crud(
        "Microsoft.Network/networkInterfaces",
        "Microsoft.Network/networkInterfaces/join/action",
    ),
    "azure-native:compute:VirtualMachine": (
        *_crud("Microsoft.Compute/virtualMachines"),
        *_crud("Microsoft.Compute/disks"),  # the OS disk, made and deleted with the VM
    ),
    "azure-native:compute:VirtualMachineExtension": _crud(
        "Microsoft.Compute/virtualMachines/extensions"
    ),
    "azure-native:authorization:RoleAssignment": _crud("Microsoft.Authorization/roleAssignments"),
    # a multi-node run: the proximity placement group; on ND sizes the availability set
    "azure-native:compute:ProximityPlacementGroup": _crud(
        "Microsoft.Compute/proximityPlacementGroups"
    ),
    "azure-native:compute:AvailabilitySet": _crud("Microsoft.Compute/availabilitySets"),
    # iacrun doctor's probe: who the credentials are (no permission), quotas and size families
    "azure-native:authorization:getClientConfig": (),
    "azure-native:authorization:getClientToken": (),
    "rest:compute-usages": ("Microsoft.Compute/locations/usages/read",),
    "rest:compute-skus": ("Microsoft.Compute/skus/read",),
    # the backend's check whether the caller may assign the self-delete role
    "rest:authorization-permissions": ("Microsoft.Authorization/permissions/read",),
}

#: provider resources Pulumi declares itself: no API call of their own
PROVIDER_TYPES = ("pulumi:providers:aws", "pulumi:providers:azure-native")


def needed_actions(table: Mapping[str, tuple[str, ...]]) -> set[str]:
    return {action for actions in table.values() for action in actions}
