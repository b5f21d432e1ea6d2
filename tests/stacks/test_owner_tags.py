"""The owner of a stack (`stacks/owner.py`) on every cloud resource that takes tags, under mocks;
and the owner's recorded form read back."""

from __future__ import annotations

import pytest

from iacrun.stacks import aws, azure
from iacrun.stacks.owner import HOME_TAG, Owner, new_home_tag, this_user
from iacrun.stacks.preview import preview

from .conftest import make_spec
from .test_aws_program import NETWORK_TYPES
from .test_aws_program import UNTAGGED as AWS_UNTAGGED
from .test_azure_program import UNTAGGED as AZURE_UNTAGGED

OWNER = "k3x9q2ab alice@laptop"


@pytest.mark.parametrize("default_vpc", [True, False])
def test_every_aws_resource_of_the_run_carries_its_owner(default_vpc: bool) -> None:
    result = preview(aws.program(make_spec("aws", owner=OWNER)), default_vpc=default_vpc)
    tagged = [
        r
        for r in result.cloud_resources
        if r.type not in AWS_UNTAGGED and r.type not in NETWORK_TYPES
    ]
    assert {r.type for r in tagged} >= {
        "aws:ec2/instance:Instance",
        "aws:ec2/securityGroup:SecurityGroup",
        "aws:ec2/keyPair:KeyPair",
    }
    for resource in tagged:
        assert resource.inputs["tags"]["iacrun:owner"] == OWNER, resource.type
    vm = result.one("aws:ec2/instance:Instance").inputs
    assert vm["rootBlockDevice"]["tags"]["iacrun:owner"] == OWNER


def test_every_azure_resource_of_the_run_carries_its_owner() -> None:
    result = preview(azure.program(make_spec("azure", owner=OWNER)))
    tagged = [r for r in result.cloud_resources if r.type not in AZURE_UNTAGGED]
    assert "azure-native:resources:ResourceGroup" in {r.type for r in tagged}
    for resource in tagged:
        assert resource.inputs["tags"]["iacrun:owner"] == OWNER, resource.type


def test_the_owner_is_read_back() -> None:
    assert Owner.parse(OWNER) == Owner("k3x9q2ab", "alice@laptop")
    assert Owner.parse("k3x9q2ab") == Owner("k3x9q2ab", "")
    assert Owner("k3x9q2ab", "alice@laptop").value == OWNER
    assert Owner("k3x9q2ab").describe() == "home k3x9q2ab"
    for value in (None, "", "Alice@laptop", "12345678 bob@desk", "k3x9 bob@desk"):
        assert Owner.parse(value) is None


def test_home_tags_and_users_fit_names_and_tags() -> None:
    tags = {new_home_tag() for _ in range(200)}
    assert len(tags) == 200 and all(HOME_TAG.fullmatch(t) for t in tags)
    who = this_user()
    # what an AWS tag value may hold (letters, digits, spaces and _ . : / = + - @)
    assert who.count("@") >= 1 and all(c.isalnum() or c in "_.:/=+-@" for c in who)
