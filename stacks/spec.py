"""The typed input of a stack program: the chosen machine and the run's job, and nothing else.

A stack program (`stacks.aws.program`, `stacks.azure.program`) is a pure function of one
`StackSpec`: the same spec always declares the same resources with the same inputs, which is what
the tests under `pulumi.runtime.set_mocks` check and what `iacrun up --dry-run` shows. `stacks`
depends only on this spec; the cloud backend builds it from an offer and a run
(`orchestrator/backends/stack_spec.py`).
"""

from __future__ import annotations

import ipaddress
import re
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from iacrun.stacks.keys import KeyPair
from iacrun.stacks.owner import OWNER_KEY

#: the clouds that have a stack program (the orchestrator's set of clouds is built on this)
Cloud = Literal["aws", "azure"]
Arch = Literal["x86", "arm"]
#: the GPU driver a VM must have before its job: none, NVIDIA's datacenter driver, NVIDIA GRID
GpuDriver = Literal["none", "nvidia", "nvidia-grid"]
#: the cluster network a type has between its machines: AWS's Elastic Fabric Adapter, Azure's
#: InfiniBand (ND sizes); None: TCP over the cloud's ordinary network only. Offers carry it
#: (`Offer.cluster_network`, from the catalog's `networking`), and the programs read it here
ClusterNetwork = Literal["efa", "infiniband"]
#: the most machines one run's stack declares
MAX_NODES = 64

#: seconds after boot + max_duration at which the VM ends itself (boot, setup and upload time)
DEFAULT_SELF_DESTRUCT_MARGIN = 1800
#: seconds after boot without the job having started at which the VM ends itself
DEFAULT_CODE_WAIT = 1800
#: seconds after the job ended at which the VM ends itself if iacrun did not tear it down
DEFAULT_LINGER = 900

_STACK_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_KEY_PREFIXES = ("ssh-ed25519 ", "ssh-rsa ", "ecdsa-sha2-nistp256 ", "ecdsa-sha2-nistp384 ")


class VmImage(BaseModel):
    """The OS image a run's VM boots and what its GPUs need at boot; chosen from the one table in
    `stacks/images.py`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: what the image is, in words (the dry run and the docs show it)
    label: str
    #: AWS: the newest AMI of `owner` whose name matches `name`, looked up in the region
    owner: str | None = None
    name: str | None = None
    #: Azure: `publisher:offer:sku:version`
    urn: str | None = None
    driver: GpuDriver = "none"
    #: Azure: install the driver with Microsoft's NVIDIA GPU Driver Extension at first boot
    driver_extension: bool = False
    #: NVSwitch machines: start the NVIDIA fabric manager before checking the GPUs
    fabric_manager: bool = False
    #: seconds the boot check waits for `nvidia-smi` to see the GPUs (the driver loading)
    gpu_wait: int = Field(default=300, ge=1)


class StackSpec(BaseModel):
    """Everything a stack program needs. The cloud backend builds it from an offer and a job."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    run_name: str
    #: the Pulumi stack's name; unique per run and home (the Azure resource group is named after
    #: it, so it is unique in a subscription too)
    stack_name: str
    #: who made the stack (`stacks/owner.py`: `<home tag> <user@host>`); tagged on every resource
    owner: str | None = None
    cloud: Cloud
    region: str
    instance_type: str
    spot: bool = False
    #: the most per hour the user pays for spot capacity (None: up to the on-demand price)
    max_price: float | None = Field(default=None, gt=0)
    disk_gb: int = Field(ge=8, le=16384)
    gpu: bool
    #: how many GPUs the machine has (the boot check expects to see them all; 0: unknown)
    gpu_count: int = Field(default=0, ge=0)
    cpu_arch: Arch = "x86"
    #: the OS image and driver set-up of the machine (stacks/images.py)
    vm_image: VmImage
    python: str | None = None
    image: str | None = None
    #: the run's SSH public key ("ssh-ed25519 AAAA..." or "ssh-rsa AAAA...")
    ssh_public_key: str
    #: the VM's SSH host key, generated locally so iacrun can pin it; Ed25519 only
    host_key: KeyPair
    #: who may reach port 22; by default the caller's public address as a /32
    ssh_cidrs: list[str] = Field(min_length=1)
    #: when the machine is expected to be gone; tagged on every resource (None: no max_duration)
    expires_at: datetime | None = None
    max_duration: int | None = Field(default=None, gt=0)
    #: the runner's job.json (see orchestrator/runner/runner.py)
    job: dict[str, Any]
    #: an AMI id (`ami-...`) or an Azure image URN (`publisher:offer:sku:version`) to use instead
    machine_image: str | None = None
    #: AWS networking: the default VPC when the region has one ("auto"), else (or always, with
    #: "iacrun-vpc") the region's kept iacrun VPC
    network: Literal["auto", "iacrun-vpc"] = "auto"
    #: AWS availability zones that already had no capacity for this run: the next one is tried
    avoid_zones: tuple[str, ...] = ()
    #: how many identical machines the stack declares (a multi-node task's cluster); rank 0 keeps
    #: the single-machine names, so a one-node stack is what it always was
    nodes: int = Field(default=1, ge=1, le=MAX_NODES)
    #: the type's cluster network (from the offer): with nodes > 1, EFA interfaces on AWS and
    #: the shared InfiniBand fabric of an availability set on Azure
    cluster_network: ClusterNetwork | None = None
    self_destruct_margin: int = Field(default=DEFAULT_SELF_DESTRUCT_MARGIN, ge=60)
    code_wait: int = Field(default=DEFAULT_CODE_WAIT, ge=60)
    linger: int = Field(default=DEFAULT_LINGER, ge=0)
    aws_profile: str | None = None
    azure_subscription_id: str | None = None
    #: give the Azure VM an identity that may only delete itself, for its self-destruct timer
    azure_self_delete: bool = True

    @field_validator("stack_name")
    @classmethod
    def _stack_name(cls, value: str) -> str:
        if not _STACK_NAME_RE.match(value):
            raise ValueError(f"{value!r} is not a valid stack name (letters, digits, _ . -)")
        return value

    @field_validator("ssh_public_key")
    @classmethod
    def _public_key(cls, value: str) -> str:
        value = value.strip()
        if not value.startswith(_KEY_PREFIXES) or "\n" in value:
            raise ValueError("the SSH public key must be one line in OpenSSH format")
        return value

    @field_validator("host_key")
    @classmethod
    def _ed25519_host_key(cls, value: KeyPair) -> KeyPair:
        if value.algorithm != "ssh-ed25519":
            raise ValueError("the host key must be an ssh-ed25519 key")
        return value

    @field_validator("ssh_cidrs")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        out = []
        for cidr in value:
            try:
                out.append(str(ipaddress.ip_network(cidr.strip(), strict=False)))
            except ValueError as exc:
                raise ValueError(f"{cidr!r} is not an IP address or CIDR block") from exc
        return out

    @field_validator("expires_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("expires_at must carry a time zone")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> StackSpec:
        if self.python and self.image:
            raise ValueError("python and image exclude each other")
        for key in ("python", "image", "max_duration"):
            if key in self.job and self.job[key] != getattr(self, key):
                raise ValueError(f"job.{key} ({self.job[key]!r}) differs from {key}")
        if self.job.get("run_name") != self.run_name:
            raise ValueError("job.run_name differs from run_name")
        if not isinstance(self.job.get("commands"), list):
            raise ValueError("job.commands must be a list of commands")
        return self

    # ------------------------------------------------------------------ derived

    @property
    def name_prefix(self) -> str:
        """The prefix of every resource's name: `iacrun-RUN`."""
        return f"iacrun-{self.run_name}"

    @property
    def cluster(self) -> bool:
        """Whether the stack is a cluster: several machines, placed together."""
        return self.nodes > 1

    def node_suffix(self, rank: int) -> str:
        """What rank `rank`'s resource names end with: nothing for rank 0 (the names of a
        one-machine stack), `-node-K` for the others."""
        return f"-node-{rank}" if rank else ""

    @property
    def deadline(self) -> int | None:
        """Seconds after boot at which the VM ends itself whatever happens; None without one."""
        if self.max_duration is None:
            return None
        return self.max_duration + self.self_destruct_margin

    @property
    def tags(self) -> dict[str, str]:
        """The tags every resource carries, so that leftovers can be found and judged."""
        return {
            "Name": self.name_prefix,
            "iacrun:run": self.run_name,
            "iacrun:stack": self.stack_name,
            "iacrun:expires-at": (
                self.expires_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                if self.expires_at
                else "none"
            ),
            "managed-by": "iacrun",
        } | ({OWNER_KEY: self.owner} if self.owner else {})
