"""Every cloud error code of `stacks.errors.CODES`, with the message text the cloud really sends, as
it reaches iacrun through the Pulumi providers, and the action iacrun takes.

Where each message text comes from:

- AWS codes and meanings: "Error codes for the Amazon EC2 API",
  https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html; the texts are EC2's
  own responses as the AWS SDK for Go v2 prints them inside pulumi-aws diagnostics
  (`operation error EC2: RunInstances, https response error StatusCode: 400, ..., api error CODE:
  MESSAGE`), the format of the existing engine tests.
- Azure Spot codes (SpotPriceGreaterThanProvidedMaxPrice and its text): "Use Azure Spot Virtual
  Machines", section "Error messages", https://learn.microsoft.com/azure/virtual-machines/spot-vms;
  the same price refusal sent as OperationNotAllowed: redhat-developer/mapt issue #548.
- Azure RBAC (PrincipalNotFound, RoleDefinitionDoesNotExist, AuthorizationFailed):
  https://learn.microsoft.com/azure/role-based-access-control/troubleshooting;
  MissingSubscriptionRegistration:
  https://learn.microsoft.com/azure/azure-resource-manager/troubleshooting/error-register-resource-provider;
  RequestDisallowedByPolicy:
  https://learn.microsoft.com/azure/azure-resource-manager/troubleshooting/error-policy-requestdisallowedbypolicy;
  PublicIPCountLimitReached: Azure networking limits,
  https://learn.microsoft.com/azure/azure-resource-manager/management/azure-subscription-service-limits.
  Azure texts reach iacrun in the azure-native (azcore) JSON error body, as in
  test_engine_errors.azure_azcore.
"""

from __future__ import annotations

import pytest

from iacrun.orchestrator.errors import (
    AccountSetupError,
    CapacityError,
    CredentialsError,
    IacrunError,
    PropagationError,
    QuotaError,
    RegionNotReadyError,
)
from iacrun.stacks.errors import CODES, classify, translate
from tests.stacks.engine.test_engine_errors import azure_azcore


def aws(code: str, message: str, operation: str = "RunInstances") -> str:
    """A pulumi-aws diagnostic for a failed EC2 call."""
    return (
        f"  sdk-v2/provider2.go:572: sdk.helper_schema: creating EC2 resource: operation error "
        f"EC2: {operation}, https response error StatusCode: 400, RequestID: "
        f"0f4d1a6e-6a0b-4b8e-9d39-5c1b2f0e7a11, api error {code}: {message}: provider=aws@7.11.0"
    )


#: (code, a name for the case) → (the text as it reaches iacrun, the error, words it must say)
SAMPLES: dict[tuple[str, str], tuple[str, type[IacrunError], tuple[str, ...]]] = {
    # ------------------------------------------------------------ AWS: next offer
    ("InsufficientInstanceCapacity", "zone"): (
        aws(
            "InsufficientInstanceCapacity",
            "We currently do not have sufficient p4d.24xlarge capacity in the Availability Zone "
            "you requested (us-east-1a). Our system will be working on provisioning additional "
            "capacity.",
        ),
        CapacityError,
        ("no capacity",),
    ),
    ("InsufficientHostCapacity", "host"): (
        aws(
            "InsufficientHostCapacity",
            "There is not enough capacity to fulfill your Dedicated Host request.",
        ),
        CapacityError,
        ("no capacity",),
    ),
    ("Unsupported", "zone"): (
        aws(
            "Unsupported",
            "Your requested instance type (p5.48xlarge) is not supported in your requested "
            "Availability Zone (us-east-1e). Please retry your request by not specifying an "
            "Availability Zone or choosing us-east-1a, us-east-1b, us-east-1c, us-east-1d, "
            "us-east-1f.",
        ),
        CapacityError,
        ("no capacity", "us-east-1e"),
    ),
    ("Unsupported", "spot"): (
        aws(
            "Unsupported",
            "The requested configuration is currently not supported. Please check the "
            "documentation for supported configurations.",
        ),
        CapacityError,
        ("no capacity", "not supported"),
    ),
    ("SpotMaxPriceTooLow", "price"): (
        aws(
            "SpotMaxPriceTooLow",
            "Your Spot request price of 0.5 is lower than the minimum required Spot request "
            "fulfillment price of 0.9213.",
        ),
        CapacityError,
        ("spot price above max_price", "raise max_price"),
    ),
    ("PendingVerification", "new region"): (
        aws(
            "PendingVerification",
            "Your request for accessing resources in this region is being validated, and you will "
            "not be able to launch additional resources in this region until the validation is "
            "complete. We will notify you by email once your request has been validated.",
        ),
        RegionNotReadyError,
        ("region not usable yet", "other regions may work"),
    ),
    ("OptInRequired", "region"): (
        aws(
            "OptInRequired",
            "You are not subscribed to this service. Please go to http://aws.amazon.com to "
            "subscribe.",
        ),
        RegionNotReadyError,
        ("enable the region",),
    ),
    # ------------------------------------------------------------ AWS: next region (quota)
    ("MaxSpotInstanceCountExceeded", "spot"): (
        aws("MaxSpotInstanceCountExceeded", "Max spot instance count exceeded"),
        QuotaError,
        ("quota exceeded",),
    ),
    ("VcpuLimitExceeded", "vcpus"): (
        aws(
            "VcpuLimitExceeded",
            "You have requested more vCPU capacity than your current vCPU limit of 32 allows for "
            "the instance bucket that the specified instance type belongs to.",
        ),
        QuotaError,
        ("quota exceeded",),
    ),
    ("InstanceLimitExceeded", "instances"): (
        aws(
            "InstanceLimitExceeded",
            "You have requested more instances (1) than your current instance limit of 0 allows "
            "for the specified instance type.",
        ),
        QuotaError,
        ("quota exceeded",),
    ),
    ("VpcLimitExceeded", "vpcs"): (
        aws("VpcLimitExceeded", "The maximum number of VPCs has been reached.", "CreateVpc"),
        QuotaError,
        ("quota exceeded", "delete an unused VPC"),
    ),
    # ------------------------------------------------------------ AWS: stop
    ("AuthFailure.ServiceLinkedRoleCreationNotPermitted", "spot role"): (
        aws(
            "AuthFailure.ServiceLinkedRoleCreationNotPermitted",
            "The provided credentials do not have permission to create the service-linked role "
            "for EC2 Spot Instances.",
        ),
        AccountSetupError,
        ("aws iam create-service-linked-role --aws-service-name spot.amazonaws.com",),
    ),
    ("UnauthorizedOperation", "policy"): (
        aws(
            "UnauthorizedOperation",
            "You are not authorized to perform this operation. User: "
            "arn:aws:iam::123456789012:user/ci is not authorized to perform: ec2:RunInstances on "
            "resource: arn:aws:ec2:us-east-1:123456789012:instance/* because no identity-based "
            "policy allows the ec2:RunInstances action. Encoded authorization failure message: "
            "4GkZ0",
        ),
        AccountSetupError,
        ("may not call ec2:RunInstances", "grant it"),
    ),
    ("Blocked", "account"): (
        aws("Blocked", "Your account is currently blocked. Contact AWS Support."),
        AccountSetupError,
        ("contact AWS Support",),
    ),
    ("AuthFailure", "keys"): (
        aws("AuthFailure", "AWS was not able to validate the provided access credentials"),
        CredentialsError,
        ("credentials rejected",),
    ),
    ("InvalidClientTokenId", "keys"): (
        aws("InvalidClientTokenId", "The security token included in the request is invalid."),
        CredentialsError,
        ("credentials rejected",),
    ),
    ("SignatureDoesNotMatch", "secret"): (
        aws(
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method.",
        ),
        CredentialsError,
        ("credentials rejected",),
    ),
    ("ExpiredToken", "session"): (
        aws("ExpiredToken", "The security token included in the request is expired"),
        CredentialsError,
        ("credentials rejected",),
    ),
    ("ExpiredTokenException", "session"): (
        "operation error STS: GetCallerIdentity, https response error StatusCode: 403, RequestID: "
        "1, api error ExpiredTokenException: The security token included in the request is "
        "expired",
        CredentialsError,
        ("credentials rejected",),
    ),
    ("UnrecognizedClientException", "keys"): (
        "api error UnrecognizedClientException: The security token included in the request is "
        "invalid.",
        CredentialsError,
        ("credentials rejected",),
    ),
    ("NoCredentialProviders", "none"): (
        "error configuring Terraform AWS Provider: NoCredentialProviders: no valid providers in "
        "chain. Deprecated.",
        CredentialsError,
        ("credentials rejected",),
    ),
    # ------------------------------------------------------------ Azure: next offer
    ("SkuNotAvailable", "region"): (
        azure_azcore(
            "SkuNotAvailable",
            "The requested VM size for resource 'Following SKUs have failed for Capacity "
            "Restrictions: Standard_NC24ads_A100_v4' is currently not available in location "
            "'eastus'. Please try another size or deploy to a different location or different "
            "zone.",
        ),
        CapacityError,
        ("no capacity",),
    ),
    ("AllocationFailed", "region"): (
        azure_azcore(
            "AllocationFailed",
            "Allocation failed. We do not have sufficient capacity for the requested VM size in "
            "this region.",
        ),
        CapacityError,
        ("no capacity",),
    ),
    ("ZonalAllocationFailed", "zone"): (
        azure_azcore(
            "ZonalAllocationFailed",
            "Allocation failed. We do not have sufficient capacity for the requested VM size in "
            "this zone.",
        ),
        CapacityError,
        ("no capacity",),
    ),
    ("OverconstrainedAllocationRequest", "spot"): (
        azure_azcore(
            "OverconstrainedAllocationRequest",
            "Allocation failed. VM(s) with the following constraints cannot be allocated, because "
            "the condition is too restrictive. Constraints applied are: - VM Size - Low Priority "
            "VM",
        ),
        CapacityError,
        ("no capacity",),
    ),
    ("OverconstrainedZonalAllocationRequest", "zone"): (
        azure_azcore(
            "OverconstrainedZonalAllocationRequest",
            "Allocation failed. VM(s) with the following constraints cannot be allocated, because "
            "the condition is too restrictive. Constraints applied are: - Availability Zone - VM "
            "Size",
        ),
        CapacityError,
        ("no capacity",),
    ),
    ("SpotPriceGreaterThanProvidedMaxPrice", "price"): (
        azure_azcore(
            "SpotPriceGreaterThanProvidedMaxPrice",
            "Unable to perform operation 'Create VM' since the provided max price '0.5 USD' is "
            "lower than the current spot price '0.9 USD' for Azure Spot VM size "
            "'Standard_NC24ads_A100_v4'. For more information, see "
            "http://aka.ms/AzureSpot/errormessages.",
        ),
        CapacityError,
        ("spot price above max_price", "raise max_price"),
    ),
    ("OperationNotAllowed", "spot price"): (
        azure_azcore(
            "OperationNotAllowed",
            "Unable to perform operation 'Create Virtual Machine Scale Set' since the provided max "
            "price '0.03207 USD' is lower than the current spot price '0.032077 USD' for Azure "
            "Spot VM size 'Standard_D4as_v6'. For more information, see "
            "http://aka.ms/AzureSpot/errormessages.",
        ),
        CapacityError,
        ("spot price above max_price",),
    ),
    ("RoleDefinitionDoesNotExist", "new role"): (
        azure_azcore(
            "RoleDefinitionDoesNotExist",
            "The specified role definition with ID 'f1a07417d97a45cb824cc7a7ba5bb8b1' does not "
            "exist.",
        ),
        PropagationError,
        ("not yet propagated",),
    ),
    ("PrincipalNotFound", "new identity"): (
        azure_azcore(
            "PrincipalNotFound",
            "Principal 5e4b2f0a9c6d4e1f8a7b3c2d1e0f9a8b does not exist in the directory "
            "72f988bf-86f1-41af-91ab-2d7cd011db47. Check that you have the correct principal ID. "
            "If you are creating this principal and then immediately assigning a role, this error "
            "might be related to a replication delay.",
        ),
        PropagationError,
        ("not yet propagated",),
    ),
    # ------------------------------------------------------------ Azure: next region (quota)
    ("QuotaExceeded", "family"): (
        azure_azcore(
            "QuotaExceeded",
            "Operation could not be completed as it results in exceeding approved "
            "standardNCADSA100v4Family Cores quota. Location: eastus, Current Limit: 0.",
        ),
        QuotaError,
        ("quota exceeded",),
    ),
    ("OperationNotAllowed", "cores"): (
        azure_azcore(
            "OperationNotAllowed",
            "Operation could not be completed as it results in exceeding approved Total Regional "
            "Cores quota. Location: eastus, Current Limit: 10.",
        ),
        QuotaError,
        ("quota exceeded",),
    ),
    ("PublicIPCountLimitReached", "ips"): (
        azure_azcore(
            "PublicIPCountLimitReached",
            "Cannot create more than 10 public IP addresses for this subscription in this region.",
        ),
        QuotaError,
        ("quota exceeded", "Public IP Addresses"),
    ),
    # ------------------------------------------------------------ Azure: stop
    ("MissingSubscriptionRegistration", "provider"): (
        azure_azcore(
            "MissingSubscriptionRegistration",
            "The subscription is not registered to use namespace 'Microsoft.Compute'. See "
            "https://aka.ms/rps-not-found for how to register subscriptions.",
        ),
        AccountSetupError,
        ("az provider register --namespace Microsoft.Compute",),
    ),
    ("RequestDisallowedByPolicy", "locations"): (
        azure_azcore(
            "RequestDisallowedByPolicy",
            "Resource 'iacrun-train-1-vm' was disallowed by policy. Policy identifiers: "
            '\'[{\\"policyAssignment\\":{\\"name\\":\\"Allowed locations\\",\\"id\\":'
            '\\"/subscriptions/0000/providers/Microsoft.Authorization/policyAssignments/1\\"}}]\'.',
        ),
        AccountSetupError,
        ("'Allowed locations'", "exemption"),
    ),
    ("AuthorizationFailed", "role assignment"): (
        azure_azcore(
            "AuthorizationFailed",
            "The client 'ci@example.com' with object id '00000000-0000-0000-0000-000000000001' "
            "does not have authorization to perform action "
            "'Microsoft.Authorization/roleAssignments/write' over scope "
            "'/subscriptions/0000/resourceGroups/iacrun-train-1-7' or the scope is invalid. If "
            "access was recently granted, please refresh your credentials.",
        ),
        AccountSetupError,
        ("Microsoft.Authorization/roleAssignments/write", "User Access Administrator"),
    ),
    ("InvalidAuthenticationToken", "token"): (
        azure_azcore("InvalidAuthenticationToken", "The access token is invalid."),
        CredentialsError,
        ("credentials rejected",),
    ),
    ("ExpiredAuthenticationToken", "token"): (
        azure_azcore(
            "ExpiredAuthenticationToken",
            "The access token expiry UTC time '1/2/2025 3:04:05 AM' is earlier than current UTC "
            "time '1/2/2025 4:00:00 AM'.",
        ),
        CredentialsError,
        ("credentials rejected",),
    ),
    ("InvalidAuthenticationTokenTenant", "tenant"): (
        azure_azcore(
            "InvalidAuthenticationTokenTenant",
            "The access token is from the wrong issuer 'https://sts.windows.net/1111/'. It must "
            "match the tenant 'https://sts.windows.net/2222/' associated with this subscription.",
        ),
        CredentialsError,
        ("credentials rejected",),
    ),
    ("SubscriptionNotFound", "subscription"): (
        azure_azcore("SubscriptionNotFound", "The subscription '0000' could not be found."),
        CredentialsError,
        ("credentials rejected",),
    ),
    ("InvalidSubscriptionId", "subscription"): (
        azure_azcore(
            "InvalidSubscriptionId",
            "The provided subscription identifier 'abc' is malformed or invalid.",
        ),
        CredentialsError,
        ("credentials rejected",),
    ),
}


@pytest.mark.parametrize(("code", "case"), sorted(SAMPLES))
def test_each_code_gets_its_action(code: str, case: str) -> None:
    text, expected, words = SAMPLES[(code, case)]
    error = translate(text)
    assert type(error) is expected, str(error)
    assert classify(text).code == code
    message = str(error)
    assert f"({code})" in message
    assert "\n" not in message and "provider=aws" not in message
    for word in words:
        assert word in message, message


def test_every_code_in_the_table_has_a_sample() -> None:
    assert {c.code for c in CODES} == {code for code, _ in SAMPLES}


def test_an_account_error_stops_even_when_capacity_errors_come_first() -> None:
    """The account's problem wins: moving on would only meet it again in every region."""
    capacity = SAMPLES[("InsufficientInstanceCapacity", "zone")][0]
    role = SAMPLES[("AuthFailure.ServiceLinkedRoleCreationNotPermitted", "spot role")][0]
    assert type(translate([capacity, role])) is AccountSetupError


def test_move_on_errors_are_what_failover_moves_on_from() -> None:
    """Failover catches CapacityError and QuotaError and stops on anything else."""
    for text, expected, _ in SAMPLES.values():
        moves_on = issubclass(expected, CapacityError | QuotaError)
        error = translate(text)
        assert isinstance(error, CapacityError | QuotaError) == moves_on
        assert isinstance(error, CredentialsError) == (not moves_on)
