"""`provision_nodes`: N machines of one offer in one stack, as Hosts in rank order, destroyed
together; the backends run the real programs under Pulumi's mocks (a recording engine)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from iacrun.orchestrator.backends.base import MultiNode
from iacrun.orchestrator.backends.pulumi_cloud import StackPlan, node_alias
from iacrun.orchestrator.errors import BackendError, MachineCheckError
from iacrun.orchestrator.host.sshconfig import SSHConfigEntries
from iacrun.orchestrator.host.transport import Host
from iacrun.stacks.preview import preview

from .conftest import offer
from .test_cloud_backends import (
    RecordingEngine,
    aws_backend,
    azure_backend,
    record,
    run_spec,
    stack,
)


def test_the_cloud_backends_can_give_a_run_several_machines(tmp_path: Path) -> None:
    assert isinstance(aws_backend(tmp_path), MultiNode)
    assert isinstance(azure_backend(tmp_path), MultiNode)


def test_aws_two_nodes_are_one_stack_and_two_hosts_in_rank_order(tmp_path: Path) -> None:
    engine = RecordingEngine()
    lines: list[str] = []
    backend = aws_backend(tmp_path, engine)
    hosts = backend.provision_nodes(record(tmp_path), offer("aws"), 2, lines.append)
    assert engine.calls == [("up", stack())]  # one stack for the whole cluster
    assert [(h.address, h.internal_ip) for h in hosts] == [
        ("203.0.113.10", "10.0.0.10"),
        ("203.0.113.11", "10.0.0.11"),
    ]
    assert all(h.user == "ubuntu" and h.boot == "cloud-init" for h in hosts)
    assert hosts[0].host_key == hosts[1].host_key  # the same cloud-init on both
    assert hosts[0].identity_file == hosts[1].identity_file
    assert any("2 x g5.2xlarge" in line for line in lines)
    result = engine.previews[0]
    assert len(result.of_type("aws:ec2/instance:Instance")) == 2
    assert result.one("aws:ec2/placementGroup:PlacementGroup").inputs["strategy"] == "cluster"
    # `ssh train-1` is the master, `ssh train-1-node-1` the other
    entries = SSHConfigEntries(home=tmp_path / "home")
    assert {"train-1", "train-1-node-1"} <= set(entries.names())


def test_one_node_is_what_provision_gives(tmp_path: Path) -> None:
    engine = RecordingEngine()
    (host,) = aws_backend(tmp_path, engine).provision_nodes(
        record(tmp_path), offer("aws"), 1, lambda _: None
    )
    assert host.internal_ip == "10.0.0.10"
    result = engine.previews[0]
    assert result.of_type("aws:ec2/placementGroup:PlacementGroup") == []


def test_azure_two_nodes_get_their_private_addresses(tmp_path: Path) -> None:
    engine = RecordingEngine()
    hosts = azure_backend(tmp_path, engine).provision_nodes(
        record(tmp_path), offer("azure"), 2, lambda _: None
    )
    assert [(h.address, h.internal_ip) for h in hosts] == [
        ("203.0.113.10", "10.0.0.4"),
        ("203.0.113.11", "10.0.0.5"),
    ]
    ppg = engine.previews[0].one("azure-native:compute:ProximityPlacementGroup")
    assert ppg.inputs["proximityPlacementGroupType"] == "Standard"


def test_the_offers_cluster_network_reaches_the_program(tmp_path: Path) -> None:
    engine = RecordingEngine()
    efa_offer = offer("aws", instance_type="p5.48xlarge")
    if "cluster_network" in type(efa_offer).model_fields:
        efa_offer = efa_offer.model_copy(update={"cluster_network": "efa"})
    else:
        pytest.skip("the offer has no cluster_network field yet (the core helper adds it)")
    aws_backend(tmp_path, engine).provision_nodes(record(tmp_path), efa_offer, 2, lambda _: None)
    result = engine.previews[0]
    assert len(result.calls_to("aws:ec2/getInstanceType:getInstanceType")) == 1
    assert len(result.of_type("aws:ec2/launchTemplate:LaunchTemplate")) == 1


def test_every_gpu_node_is_checked_and_one_failing_tears_down_the_whole_stack(
    tmp_path: Path,
) -> None:
    engine = RecordingEngine()
    checked: list[str] = []

    def second_fails(host: Host, timeout: float) -> str | None:
        checked.append(str(host.address))
        return "gpu check failed: nvidia-smi: no devices" if len(checked) == 2 else None

    backend = aws_backend(tmp_path, engine, machine_check=second_fails)
    with pytest.raises(MachineCheckError):
        backend.provision_nodes(record(tmp_path), offer("aws"), 2, lambda _: None)
    assert checked == ["203.0.113.10", "203.0.113.11"]
    assert engine.calls == [("up", stack()), ("destroy", stack())]


def test_terminate_destroys_the_one_stack_and_forgets_every_nodes_alias(tmp_path: Path) -> None:
    engine = RecordingEngine()
    backend = aws_backend(tmp_path, engine)
    backend.provision_nodes(record(tmp_path), offer("aws"), 3, lambda _: None)
    entries = SSHConfigEntries(home=tmp_path / "home")
    assert {"train-1", "train-1-node-1", "train-1-node-2"} <= set(entries.names())
    backend.terminate(record(tmp_path))
    backend.terminate(record(tmp_path))  # idempotent, as for one machine
    assert engine.calls == [("up", stack()), ("destroy", stack()), ("destroy", stack())]
    assert not {"train-1", "train-1-node-1", "train-1-node-2"} & set(entries.names())


class ShortEngine(RecordingEngine):
    """A stack whose outputs name fewer machines than asked for."""

    def up(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        outputs = super().up(*args, **kwargs)
        outputs["nodes"] = outputs["nodes"][:1]
        return outputs


def test_a_stack_with_fewer_machines_than_nodes_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="gave 1 machine\\(s\\) for 2 node\\(s\\)"):
        aws_backend(tmp_path, ShortEngine()).provision_nodes(
            record(tmp_path), offer("aws", gpu=False), 2, lambda _: None
        )


def test_node_aliases() -> None:
    assert [node_alias("train", k) for k in range(3)] == [
        "train",
        "train-node-1",
        "train-node-2",
    ]


def test_a_cluster_plan_shows_the_price_per_node_and_in_all(tmp_path: Path) -> None:
    backend = aws_backend(tmp_path)
    run = record(tmp_path)
    the_offer = offer("aws")
    spec = backend.stack_spec(run, the_offer, "ssh-ed25519 AAAA test", ["198.51.100.23/32"], 2)
    assert spec.nodes == 2
    result = preview(backend.program(spec))
    plan = StackPlan(
        offer=the_offer,
        stack_name="train-1-<id>-tag",
        spec=spec,
        resources=result.cloud_resources,
        outputs=result.outputs,
        user_data_bytes=1,
        user_data_limit=2,
    )
    text = plan.render()
    assert "2 x g5.2xlarge (on-demand, $1.2/h each, $2.4/h in all)" in text
    assert "aws:ec2/placementGroup:PlacementGroup" in text
    assert text.count("aws:ec2/instance:Instance") == 2


def test_the_dry_run_of_a_multi_node_task_shows_the_cluster(tmp_path: Path) -> None:
    if "nodes" not in run_spec(tmp_path).model_fields:
        pytest.skip("RunSpec has no nodes field yet (the core helper adds it)")
    plan = azure_backend(tmp_path).dry_run(run_spec(tmp_path, nodes=2), offer("azure"))
    text = plan.render()
    assert "2 x Standard_NV36ads_A10_v5" in text
    assert "azure-native:compute:ProximityPlacementGroup" in text
    assert text.count("azure-native:compute:VirtualMachine ") == 2


def test_the_plan_notes_say_what_a_cluster_gets(tmp_path: Path) -> None:
    aws = aws_backend(tmp_path)
    run = record(tmp_path)
    key, cidrs = "ssh-ed25519 AAAA test", ["198.51.100.23/32"]
    spec = aws.stack_spec(run, offer("aws", instance_type="p5.48xlarge"), key, cidrs, 2)
    efa_spec = spec.model_copy(update={"cluster_network": "efa"})
    notes = " | ".join(aws.plan_notes(efa_spec, "s"))
    assert "cluster: 2 machines in one subnet and one placement group (strategy cluster" in notes
    assert "EFA: every EFA interface p5.48xlarge takes" in notes
    assert "no EFA on g5.2xlarge" in " | ".join(
        aws.plan_notes(aws.stack_spec(run, offer("aws"), key, cidrs, 2), "s")
    )
    assert "cluster:" not in " | ".join(
        aws.plan_notes(efa_spec.model_copy(update={"nodes": 1}), "s")
    )
    azure = azure_backend(tmp_path)
    nd = azure.stack_spec(
        run, offer("azure", instance_type="Standard_ND96isr_H100_v5"), key, cidrs, 2
    )
    notes = " | ".join(
        azure.plan_notes(nd.model_copy(update={"cluster_network": "infiniband"}), "s")
    )
    assert "2 VMs in one proximity placement group and subnet, with accelerated networking" in notes
    assert "one availability set, hence one InfiniBand fabric" in notes


def test_without_the_vm_side_delete_the_azure_cluster_note_does_not_claim_it(
    tmp_path: Path,
) -> None:
    azure = azure_backend(tmp_path, self_delete=False)
    key, cidrs = "ssh-ed25519 AAAA test", ["198.51.100.23/32"]
    spec = azure.stack_spec(record(tmp_path), offer("azure"), key, cidrs, 2)
    assert spec.azure_self_delete is False
    notes = " | ".join(azure.plan_notes(spec, "s"))
    assert "2 VMs in one proximity placement group" in notes
    assert "deletes that VM only" not in notes
    assert "powers the VM off only" in notes
