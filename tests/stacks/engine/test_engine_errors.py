"""Engine failures → typed errors, from diagnostics as the AWS and Azure providers print them."""

from __future__ import annotations

import pytest

from iacrun.orchestrator.errors import (
    BackendError,
    CapacityError,
    CredentialsError,
    QuotaError,
    StackTimeoutError,
    ToolMissingError,
)
from iacrun.stacks.errors import classify, translate


def aws(code: str, message: str, status: int = 400) -> str:
    """A pulumi-aws (terraform bridge) diagnostic for a failed RunInstances call."""
    return (
        "  sdk-v2/provider2.go:572: sdk.helper_schema: creating EC2 Instance: operation error EC2: "
        f"RunInstances, https response error StatusCode: {status}, RequestID: "
        f"0f4d1a6e-6a0b-4b8e-9d39-5c1b2f0e7a11, api error {code}: {message}: provider=aws@7.11.0"
    )


def azure_autorest(code: str, message: str) -> str:
    return (
        "compute.VirtualMachinesClient#CreateOrUpdate: Failure sending request: StatusCode=0 -- "
        f'Original Error: autorest/azure: Service returned an error. Status=<nil> Code="{code}" '
        f'Message="{message}"'
    )


def azure_azcore(code: str, message: str) -> str:
    """azure-native 2.x/3.x (azcore) error text, JSON body spread over lines."""
    return (
        "creating/updating VirtualMachine: PUT https://management.azure.com/subscriptions/0000/"
        "resourceGroups/iacrun-brave-otter-1/providers/Microsoft.Compute/virtualMachines/vm\n"
        "--------------------------------------------------------------------------------\n"
        "RESPONSE 409: 409 Conflict\n"
        f"ERROR CODE: {code}\n"
        "--------------------------------------------------------------------------------\n"
        "{\n"
        '  "error": {\n'
        f'    "code": "{code}",\n'
        f'    "message": "{message}"\n'
        "  }\n"
        "}\n"
        "--------------------------------------------------------------------------------\n"
    )


def azure_polling(code: str, message: str) -> str:
    """A long-running VM create that failed while being polled."""
    return (
        "polling after CreateOrUpdate: polling failed: the Azure API returned the following "
        f'error:\n\nStatus: "{code}"\nCode: "{code}"\nMessage: "{message}"\n'
        f'{{"status":"Failed","error":{{"code":"{code}","message":"{message}"}}}}'
    )


AWS_CAPACITY = {
    "InsufficientInstanceCapacity": (
        "We currently do not have sufficient p4d.24xlarge capacity in the Availability Zone you "
        "requested (us-east-1a). Our system will be working on provisioning additional capacity. "
        "You can currently get p4d.24xlarge capacity by not specifying an Availability Zone in "
        "your request or choosing us-east-1b, us-east-1c."
    ),
    "SpotMaxPriceTooLow": (
        "Your Spot request price of 0.5 is lower than the minimum required Spot request "
        "fulfillment price of 0.9213."
    ),
}
AWS_QUOTA = {
    "MaxSpotInstanceCountExceeded": "Max spot instance count exceeded",
    "VcpuLimitExceeded": (
        "You have requested more vCPU capacity than your current vCPU limit of 32 allows for the "
        "instance bucket that the specified instance type belongs to. Please visit "
        "http://aws.amazon.com/contact-us/ec2-request to request an adjustment to this limit."
    ),
    "InstanceLimitExceeded": (
        "You have requested more instances (1) than your current instance limit of 0 allows for "
        "the specified instance type. Please visit http://aws.amazon.com/contact-us/ec2-request "
        "to request an adjustment to this limit."
    ),
}
AZURE_CAPACITY = {
    "SkuNotAvailable": (
        "The requested VM size for resource 'Following SKUs have failed for Capacity "
        "Restrictions: Standard_NC24ads_A100_v4' is currently not available in location "
        "'eastus'. Please try another size or deploy to a different location or different zone. "
        "See https://aka.ms/azureskunotavailable for details."
    ),
    "AllocationFailed": (
        "Allocation failed. We do not have sufficient capacity for the requested VM size in this "
        "region. Read more about improving likelihood of allocation success at "
        "http://aka.ms/allocation-guidance"
    ),
    "ZonalAllocationFailed": (
        "Allocation failed. We do not have sufficient capacity for the requested VM size in this "
        "zone. Read more about improving likelihood of allocation success at "
        "http://aka.ms/allocation-guidance"
    ),
    "OverconstrainedAllocationRequest": (
        "Allocation failed. VM(s) with the following constraints cannot be allocated, because "
        "the condition is too restrictive. Please remove some constraints and try again. "
        "Constraints applied are: - VM Size - Low Priority VM"
    ),
}
AZURE_QUOTA = {
    "QuotaExceeded": (
        "Operation could not be completed as it results in exceeding approved "
        "standardNCADSA100v4Family Cores quota. Additional details - Deployment Model: Resource "
        "Manager, Location: eastus, Current Limit: 0, Current Usage: 0, Additional Required: 24, "
        "(Minimum) New Limit Required: 24."
    ),
    "OperationNotAllowed": (
        "Operation could not be completed as it results in exceeding approved Total Regional "
        "Cores quota. Additional details - Deployment Model: Resource Manager, Location: eastus, "
        "Current Limit: 10, Current Usage: 8, Additional Required: 24, (Minimum) New Limit "
        "Required: 32."
    ),
}


@pytest.mark.parametrize("code", sorted(AWS_CAPACITY))
def test_aws_capacity_codes(code: str) -> None:
    error = translate([aws(code, AWS_CAPACITY[code], 500)])
    assert type(error) is CapacityError
    assert code in str(error)
    assert AWS_CAPACITY[code][:40] in str(error)
    assert "provider=aws" not in str(error)


@pytest.mark.parametrize("code", sorted(AWS_QUOTA))
def test_aws_quota_codes(code: str) -> None:
    error = translate(aws(code, AWS_QUOTA[code]))
    assert type(error) is QuotaError
    assert f"({code})" in str(error)
    assert AWS_QUOTA[code][:30] in str(error)


@pytest.mark.parametrize("render", [azure_autorest, azure_azcore, azure_polling])
@pytest.mark.parametrize("code", sorted(AZURE_CAPACITY))
def test_azure_capacity_codes(code: str, render: object) -> None:
    text = render(code, AZURE_CAPACITY[code])  # type: ignore[operator]
    found = classify(text)
    assert (found.kind, found.code) == ("capacity", code)
    assert found.message.startswith(AZURE_CAPACITY[code][:40])
    assert type(translate(text)) is CapacityError


@pytest.mark.parametrize("render", [azure_autorest, azure_azcore, azure_polling])
@pytest.mark.parametrize("code", sorted(AZURE_QUOTA))
def test_azure_quota_codes(code: str, render: object) -> None:
    text = render(code, AZURE_QUOTA[code])  # type: ignore[operator]
    found = classify(text)
    assert (found.kind, found.code) == ("quota", code)
    assert "Cores quota" in found.message
    assert type(translate(text)) is QuotaError


def test_operation_not_allowed_about_something_else_is_not_quota() -> None:
    text = azure_azcore(
        "OperationNotAllowed",
        "The operation 'start' is not allowed on VM 'vm' since it is deallocating.",
    )
    assert classify(text).kind == "other"
    assert type(translate(text)) is BackendError


def test_credentials() -> None:
    aws_text = (
        "error: pulumi:providers:aws resource 'default_7_11_0' has a problem: No valid credential "
        "sources found.\nPlease see https://www.pulumi.com/registry/packages/aws/installation-"
        "configuration/ for more information about providing credentials."
    )
    assert type(translate(aws_text)) is CredentialsError
    token = aws("AuthFailure", "AWS was not able to validate the provided access credentials")
    assert "(AuthFailure)" in str(translate(token))
    az = azure_azcore("AuthorizationFailed", "The client 'x' does not have authorization")
    assert isinstance(translate(az), CredentialsError)
    login = (
        "error: building auth config: obtain subscription(): ERROR: Please run 'az login' to "
        "setup account."
    )
    assert type(translate(login)) is CredentialsError


def test_missing_plugin_says_how_to_install_it() -> None:
    text = (
        "error: no resource plugin 'pulumi-resource-aws' found in the workspace at version "
        "v7.11.0 or on your $PATH, install the plugin using `pulumi plugin install resource aws "
        "v7.11.0`"
    )
    error = translate(text)
    assert type(error) is ToolMissingError
    assert "pulumi plugin install resource aws" in str(error)


def test_other_errors_keep_the_first_meaningful_error_line() -> None:
    stdout = (
        "Updating (brave-otter-1):\n"
        "    pulumi:pulumi:Stack iacrun-brave-otter-1 running error: something broke\n"
        "Diagnostics:\n"
        "  pulumi:pulumi:Stack (iacrun-brave-otter-1):\n"
        "    error: update failed\n"
        "  aws:ec2:SecurityGroup (ssh):\n"
        "    error: creating Security Group (iacrun-ssh): InvalidGroup.Duplicate: The security "
        "group 'iacrun-ssh' already exists for VPC 'vpc-1'\n"
    )
    error = translate(stdout)
    assert type(error) is BackendError
    assert str(error).startswith("stack update failed: creating Security Group")
    assert "update failed:" not in str(error)[len("stack update failed:") :]


def test_diagnostics_come_before_the_command_text() -> None:
    """The engine's diagnostics name the cause; the failed command's text adds noise after it."""
    diagnostics = [
        aws("InsufficientInstanceCapacity", AWS_CAPACITY["InsufficientInstanceCapacity"])
    ]
    command = RuntimeError("\n code: 255\n stdout: Updating...\n stderr: error: update failed")
    assert type(translate([*diagnostics, command])) is CapacityError


def test_iacrun_errors_pass_through() -> None:
    error = StackTimeoutError("too slow")
    assert translate(error) is error


def test_messages_are_one_bounded_line() -> None:
    text = aws("InsufficientInstanceCapacity", "x " * 400)
    message = str(translate(text))
    assert "\n" not in message
    assert len(message) < 400


PROVIDER_TRACEBACK = """Traceback (most recent call last):
  File "/venv/lib/python3.11/site-packages/pulumi/dynamic/__main__.py", line 84, in wrapper
    return fn(self, request, context)
           ^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "/venv/lib/python3.11/site-packages/dill/_dill.py", line 443, in find_class
    return StockUnpickler.find_class(self, module, name)
           ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
ModuleNotFoundError: No module named 'tests'
"""


def test_a_traceback_is_summed_up_by_its_exception_line() -> None:
    command = (
        "\n code: 1\n stdout: Destroying (quick-newt-3):\n"
        "Diagnostics:\n  pulumi-python:dynamic:Resource (marker):\n"
        "    error: " + PROVIDER_TRACEBACK.replace("\n", "\n    ") + "\n stderr: "
    )
    for source in ([PROVIDER_TRACEBACK, command], [command]):
        error = translate(source, action="destroying stack quick-newt-3")
        assert str(error) == (
            "destroying stack quick-newt-3 failed: ModuleNotFoundError: No module named 'tests'"
        )
