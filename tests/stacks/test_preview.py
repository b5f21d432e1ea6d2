"""`preview`: a program under mocks, repeatable in one process, for tests and `--dry-run`."""

from __future__ import annotations

import secrets

import pytest

from iacrun.orchestrator.errors import InputError
from iacrun.stacks import aws, azure
from iacrun.stacks.preview import PreviewResult, preview, render_resources

from .conftest import job, make_spec


def summary(result: PreviewResult) -> list[tuple[str, str]]:
    # resources register concurrently: their order may differ between runs, their set not
    return sorted((r.type, r.name) for r in result.resources)


def test_calls_in_a_row_give_the_same_answer() -> None:
    first = preview(aws.program(make_spec("aws")))
    other = preview(azure.program(make_spec("azure")))
    again = preview(aws.program(make_spec("aws")))
    assert summary(first) == summary(again)
    assert first.outputs == again.outputs
    assert {r.name: r.inputs for r in first.resources} == {
        r.name: r.inputs for r in again.resources
    }
    assert {r.type.split(":")[0] for r in other.cloud_resources} == {"azure-native"}


def test_a_failing_program_raises_and_the_next_call_still_works() -> None:
    too_big = job(commands=["echo " + secrets.token_urlsafe(1500) for _ in range(70)])
    with pytest.raises(InputError):
        preview(azure.program(make_spec("azure", job_=too_big)))
    assert preview(azure.program(make_spec("azure"))).outputs["ssh_user"] == "ubuntu"


def test_the_callers_context_keeps_no_mock_settings() -> None:
    from pulumi.runtime.settings import get_root_resource

    preview(aws.program(make_spec("aws")))
    assert get_root_resource() is None


def test_render_lists_type_and_name_of_each_cloud_resource() -> None:
    text = render_resources(preview(aws.program(make_spec("aws")), default_vpc=False))
    lines = text.splitlines()
    # VPC, gateway, route, a subnet in each of the two placeholder zones; group, key, instance
    assert len(lines) == 8
    assert any(line.split() == ["aws:ec2/instance:Instance", "iacrun-train-1-vm"] for line in lines)
    assert "pulumi:providers" not in text


def test_a_program_for_the_wrong_cloud_is_refused() -> None:
    with pytest.raises(ValueError, match="AWS program got a spec for azure"):
        aws.program(make_spec("azure"))
