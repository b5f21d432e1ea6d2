"""A cloud run's page with its stack read from the real state backend: a stack recorded in the
file:// backend (made by the real `pulumi` CLI, then given an EC2 instance and a security group
by `pulumi stack import`, as an AWS run's stack records them) tied to an AWS run in the
registry; the page lists the stack's resources, each id linked to the EC2 console."""

from __future__ import annotations

import html
import os
import re
from pathlib import Path
from typing import Any

import pytest

from iacrun.orchestrator.backends.stack_spec import stack_name_for
from iacrun.orchestrator.paths import home_tag
from tests.server.conftest import start_server, stop_server
from tests.server.dashboard.support import signed_in

INSTANCE = "i-0123456789abcdef0"
GROUP = "sg-0fedcba9876543210"


def _with_aws_resources(deployment: dict[str, Any], stack_urn: str) -> dict[str, Any]:
    """The deployment with the AWS provider, an instance and its security group added under
    the stack, as `pulumi up` of stacks/aws.py records them."""
    prefix = stack_urn.rsplit("::", 2)[0]  # urn:pulumi:STACK::PROJECT
    provider_urn = f"{prefix}::pulumi:providers:aws::default_7_51_1"
    provider_id = "0b5a3d2c-1111-4e6f-9a8b-123456789abc"
    added = [
        {
            "urn": provider_urn,
            "custom": True,
            "id": provider_id,
            "type": "pulumi:providers:aws",
            "inputs": {"region": "us-east-1", "version": "7.51.1"},
            "outputs": {"region": "us-east-1", "version": "7.51.1"},
        },
        {
            "urn": f"{prefix}::aws:ec2/securityGroup:SecurityGroup::ssh-in",
            "custom": True,
            "id": GROUP,
            "type": "aws:ec2/securityGroup:SecurityGroup",
            "inputs": {},
            "outputs": {"id": GROUP},
            "parent": stack_urn,
            "provider": f"{provider_urn}::{provider_id}",
        },
        {
            "urn": f"{prefix}::aws:ec2/instance:Instance::gpu-vm",
            "custom": True,
            "id": INSTANCE,
            "type": "aws:ec2/instance:Instance",
            "inputs": {},
            "outputs": {"id": INSTANCE},
            "parent": stack_urn,
            "provider": f"{provider_urn}::{provider_id}",
            "dependencies": [f"{prefix}::aws:ec2/securityGroup:SecurityGroup::ssh-in"],
        },
    ]
    body = dict(deployment["deployment"])
    body["resources"] = [*body["resources"], *added]
    return {**deployment, "deployment": body}


def test_a_cloud_runs_page_lists_its_stack_resources_with_console_links(
    tmp_path: Path, server_env: dict[str, str]
) -> None:
    from tests.stacks.engine.support import OFFLINE_ENV, ensure_pulumi

    reason = ensure_pulumi()
    if reason is not None:
        pytest.skip(reason)
    import pulumi
    from pulumi.automation import Deployment

    from iacrun.stacks.engine import StackEngine

    home = tmp_path / "server-home"
    home.mkdir()
    env = {**server_env, **OFFLINE_ENV, "PATH": os.environ["PATH"]}
    server = start_server(home, env)
    engine = StackEngine(home, env=OFFLINE_ENV, cancel_grace=5)
    try:
        registry = server.registry()
        run = registry.create("gpu-job", {}, home / "runs", submitted_by="admin")  # type: ignore[arg-type]
        stack = stack_name_for(run.name, run.id, home_tag(home))
        engine.up(stack, lambda: pulumi.export("ip", "203.0.113.7"))
        exported = engine.export(stack)
        stack_urn = next(
            r["urn"]
            for r in exported["deployment"]["resources"]
            if r["type"] == "pulumi:pulumi:Stack"
        )
        recorded = _with_aws_resources(exported, stack_urn)
        engine._workspace(stack).import_stack(  # the engine's own workspace for this stack
            stack, Deployment(version=recorded["version"], deployment=recorded["deployment"])
        )
        registry.update(
            run.id,
            status="running",
            backend="aws",
            region="us-east-1",
            instance_type="g5.xlarge",
            stack_name=stack,
        )
        registry.close()

        page = signed_in(server).get("/runs/gpu-job")
        assert page.status_code == 200, page.text[:500]
        text = html.unescape(page.text)
        assert f'<h2 id="stack-h">Stack {stack}</h2>' in text
        rows = re.findall(r"<tr><td>([^<]+)</td><td>([^<]+)</td>\s*<td>(.*?)</td></tr>", text, re.S)
        by_type = {kind: (name, cell) for kind, name, cell in rows}
        assert set(by_type) == {
            "aws:ec2/instance:Instance",
            "aws:ec2/securityGroup:SecurityGroup",
        }  # the stack itself and the provider are not resources of the run's
        name, cell = by_type["aws:ec2/instance:Instance"]
        assert name == "gpu-vm"
        assert (
            'href="https://us-east-1.console.aws.amazon.com/ec2/home?region=us-east-1'
            f'#InstanceDetails:instanceId={INSTANCE}"' in cell
        )
        assert 'rel="noopener noreferrer"' in cell and f">{INSTANCE}<" in cell
        _, cell = by_type["aws:ec2/securityGroup:SecurityGroup"]
        assert f"#SecurityGroup:groupId={GROUP}" in cell
    finally:
        stop_server(server)
        # the state lives in the test's home; its resources are records, not cloud objects (a
        # destroy would ask the aws plugin): the stack is removed from the backend as it is
        for left in engine.list_stacks():
            engine._cli(["stack", "rm", "--force", "--yes", left.name], left.name)
