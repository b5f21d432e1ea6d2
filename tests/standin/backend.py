"""A cloud backend whose "VM" is the stand-in VM: the real AWS code path, minus the cloud.

`StandinBackend` is a `PulumiCloudBackend` like `AWSBackend`: the same StackSpec, keys, cloud-init
files, stack engine, Host and start-up contract. Only its program differs: instead of an EC2
instance it creates a `StandinVM` (a real sshd on loopback that plays the rendered boot files).
`slow_seconds` puts a slow resource before the VM, so a test can kill an update midway;
`hold_create` (a file) holds the VM's create open once the VM runs, `hold_delete` its delete
before the VM is powered off (see StandinVM).

A multi-node run (`provision_nodes`) gets one stack of N stand-in VMs, as the cloud programs
declare N machines: rank k's root is `<root>-node-k` (rank 0 keeps `<root>`), each with its own
sshd on its own loopback address (`node_address`: 127.0.0.2, 127.0.0.3...), which is also the
private IP the other nodes reach it on; the outputs are the programs' `nodes` list.
"""

from __future__ import annotations

import getpass
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from iacrun.orchestrator.backends.pulumi_cloud import PulumiCloudBackend
from iacrun.orchestrator.host.transport import Host
from iacrun.orchestrator.models.requirements import Requirements
from iacrun.orchestrator.offers.model import Gpu, InstanceResources, Offer
from iacrun.orchestrator.registry import RunRecord
from iacrun.stacks.cloudinit import VmLayout
from iacrun.stacks.spec import StackSpec
from iacrun.stacks.toolchain import Plugin
from tests.standin.boot import boot_script


class StandinBackend(PulumiCloudBackend):
    name = "standin"
    cloud = "aws"

    def __init__(
        self,
        root: Path,
        *,
        slow_seconds: float = 0.0,
        hold_create: Path | None = None,
        hold_delete: Path | None = None,
        gpus: int = 0,
        layout: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(ssh_cidrs=["127.0.0.1/32"], **kwargs)
        self.root = root
        self.slow_seconds = slow_seconds
        self.hold_create = hold_create
        self.hold_delete = hold_delete
        self.gpus = gpus
        # systemctl and nvidia-smi of the "VM" are harmless stand-ins unless a test names others
        options: dict[str, Any] = {"systemctl": "true", "nvidia_smi": "false", **(layout or {})}
        self.layout_options = options
        self.layout = self.layout_of(0)
        self.run_dir = self.layout.run_dir

    def root_of(self, rank: int) -> Path:
        """The folder of rank `rank`'s VM: siblings, so deleting one never touches another."""
        return self.root if rank == 0 else self.root.with_name(f"{self.root.name}-node-{rank}")

    def layout_of(self, rank: int) -> VmLayout:
        root = self.root_of(rank)
        return VmLayout(
            root=f"{root}/opt/iacrun",
            user=getpass.getuser(),
            systemd_dir=f"{root}/etc/systemd/system",
            python=shutil.which("python3") or sys.executable,
            poweroff=("true",),
            **self.layout_options,
        )

    @staticmethod
    def node_address(rank: int, nodes: int) -> str:
        """A VM's loopback address: 127.0.0.1 alone, 127.0.0.(2+k) in a cluster."""
        return "127.0.0.1" if nodes == 1 else f"127.0.0.{2 + rank}"

    def check_credentials(self) -> str:
        return "the stand-in needs none"

    def provider_plugin(self) -> Plugin | None:
        return None  # its program creates dynamic resources only: no provider plugin

    def offers(self, requirements: Requirements) -> list[Offer]:
        gpus = (Gpu(name="A10G", memory_gb=24),) * self.gpus
        resources = InstanceResources(cpus=2, memory_gb=8, disk_gb=100, gpus=gpus)
        return [
            Offer(
                backend=self.name,
                region="loopback",
                # a GPU stand-in plays an AWS g5: its image and its GPU check
                instance_type="g5.xlarge" if gpus else "standin.local",
                resources=resources,
                price=0.5,
            )
        ]

    def stack_spec(
        self,
        run: RunRecord,
        offer: Offer,
        ssh_public_key: str,
        ssh_cidrs: list[str],
        nodes: int = 1,
    ) -> StackSpec:
        # the spec of an AWS VM: the stand-in plays one
        as_aws = offer.model_copy(update={"backend": "aws"})
        return super().stack_spec(run, as_aws, ssh_public_key, ssh_cidrs, nodes)

    def hosts_from_outputs(
        self, outputs: dict[str, Any], spec: StackSpec, offer: Offer, key_path: Path
    ) -> list[Host]:
        hosts = super().hosts_from_outputs(outputs, spec, offer, key_path)
        # each stand-in VM has its run folder under its own root
        return [
            host.model_copy(update={"run_dir": self.layout_of(rank).run_dir})
            for rank, host in enumerate(hosts)
        ]

    def program(self, spec: StackSpec) -> Callable[[], None]:
        scripts = [boot_script(spec, self.layout_of(rank)) for rank in range(spec.nodes)]
        roots = [self.root_of(rank) for rank in range(spec.nodes)]
        slow = self.slow_seconds
        hold = str(self.hold_create) if self.hold_create else None
        hold_delete = str(self.hold_delete) if self.hold_delete else None

        def program() -> None:
            # imported here, as the cloud programs do: a supervisor loads Pulumi only while
            # it provisions or tears down (see Supervisor.shed)
            import pulumi

            from tests.stacks.engine.resources import Slow
            from tests.standin.vm import StandinVM

            after: list[pulumi.Resource] = []
            if slow:
                after.append(Slow("slow", str(self.root.parent / "slow-started"), slow))
            nodes = []
            for rank, (root, script) in enumerate(zip(roots, scripts, strict=True)):
                vm = StandinVM(
                    f"vm{spec.node_suffix(rank)}",
                    root_dir=str(root),
                    authorized_key=spec.ssh_public_key,
                    boot_script=script,
                    host_private_key=spec.host_key.private_openssh,
                    hold_create=hold,
                    hold_delete=hold_delete,
                    address=self.node_address(rank, spec.nodes),
                    opts=pulumi.ResourceOptions(depends_on=after),
                )
                if rank == 0:
                    for name in ("public_ip", "ssh_port", "ssh_user", "host_key"):
                        pulumi.export(name, getattr(vm, name))
                nodes.append(
                    {
                        "rank": rank,
                        "public_ip": vm.public_ip,
                        "private_ip": vm.private_ip,
                        "instance_id": vm.id,
                        "ssh_port": vm.ssh_port,
                    }
                )
            pulumi.export("nodes", nodes)

        return program
