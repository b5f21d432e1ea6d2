"""A cloud backend whose "VM" is the stand-in VM: the real AWS code path, minus the cloud.

`StandinBackend` is a `PulumiCloudBackend` like `AWSBackend`: the same StackSpec, keys, cloud-init
files, stack engine, Host and start-up contract. Only its program differs: instead of an EC2
instance it creates a `StandinVM` (a real sshd on loopback that plays the rendered boot files).
`slow_seconds` puts a slow resource before the VM, so a test can kill an update midway;
`hold_create` (a file) holds the VM's create open once the VM runs (see StandinVM).
"""

from __future__ import annotations

import getpass
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from iacrun.orchestrator.backends.pulumi_cloud import PulumiCloudBackend
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
        gpus: int = 0,
        layout: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(ssh_cidrs=["127.0.0.1/32"], **kwargs)
        self.root = root
        self.slow_seconds = slow_seconds
        self.hold_create = hold_create
        self.gpus = gpus
        # systemctl and nvidia-smi of the "VM" are harmless stand-ins unless a test names others
        options: dict[str, Any] = {"systemctl": "true", "nvidia_smi": "false", **(layout or {})}
        self.layout = VmLayout(
            root=f"{root}/opt/iacrun",
            user=getpass.getuser(),
            systemd_dir=f"{root}/etc/systemd/system",
            python=shutil.which("python3") or sys.executable,
            poweroff=("true",),
            **options,
        )
        self.run_dir = self.layout.run_dir

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
        self, run: RunRecord, offer: Offer, ssh_public_key: str, ssh_cidrs: list[str]
    ) -> StackSpec:
        # the spec of an AWS VM: the stand-in plays one
        as_aws = offer.model_copy(update={"backend": "aws"})
        return super().stack_spec(run, as_aws, ssh_public_key, ssh_cidrs)

    def program(self, spec: StackSpec) -> Callable[[], None]:
        script = boot_script(spec, self.layout)
        root, slow = self.root, self.slow_seconds
        hold = str(self.hold_create) if self.hold_create else None

        def program() -> None:
            # imported here, as the cloud programs do: a supervisor loads Pulumi only while
            # it provisions or tears down (see Supervisor.shed)
            import pulumi

            from tests.stacks.engine.resources import Slow
            from tests.standin.vm import StandinVM

            after: list[pulumi.Resource] = []
            if slow:
                after.append(Slow("slow", str(root.parent / "slow-started"), slow))
            vm = StandinVM(
                "vm",
                root_dir=str(root),
                authorized_key=spec.ssh_public_key,
                boot_script=script,
                host_private_key=spec.host_key.private_openssh,
                hold_create=hold,
                opts=pulumi.ResourceOptions(depends_on=after),
            )
            for name in ("public_ip", "ssh_port", "ssh_user", "host_key"):
                pulumi.export(name, getattr(vm, name))

        return program
