"""Offers: a machine a backend can give, with its resources and price, and matching against them."""

from __future__ import annotations

from typing import Literal, TypeGuard, get_args

from pydantic import BaseModel, ConfigDict

from iacrun.orchestrator.models.resources import ResourcesSpec
from iacrun.orchestrator.models.units import Range, format_size_gb
from iacrun.stacks.spec import Cloud

SpotPolicy = Literal["spot", "on-demand", "auto"]
#: the clouds iacrun knows: each has a backend, a price catalog and a stack program
CLOUDS: tuple[Cloud, ...] = get_args(Cloud)


def is_cloud(backend: str) -> TypeGuard[Cloud]:
    """Whether `backend` names a cloud (a Pulumi stack per run) rather than `local` or `ssh`."""
    return backend in CLOUDS


class Gpu(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    memory_gb: float
    vendor: str = "nvidia"


class InstanceResources(BaseModel):
    """What a machine has. `disk_gb` is the disk a run gets (root volume or free space)."""

    model_config = ConfigDict(frozen=True)

    cpus: int
    memory_gb: float
    gpus: tuple[Gpu, ...] = ()
    disk_gb: float | None = None
    cpu_arch: Literal["x86", "arm"] = "x86"

    def render(self) -> str:
        parts = [f"{self.cpus}xCPU", format_size_gb(self.memory_gb)]
        if self.gpus:
            first = self.gpus[0]
            parts.append(f"{len(self.gpus)}x{first.name} ({format_size_gb(first.memory_gb)})")
        if self.disk_gb is not None:
            parts.append(f"{format_size_gb(self.disk_gb)} disk")
        return ", ".join(parts)


class Offer(BaseModel):
    """One way to run the task: a backend's machine in a region at a price per hour."""

    model_config = ConfigDict(frozen=True)

    backend: str
    region: str
    instance_type: str
    resources: InstanceResources
    spot: bool = False
    price: float
    available: bool = True
    note: str | None = None

    @property
    def key(self) -> str:
        return f"{self.backend}/{self.region}/{self.instance_type}/{'spot' if self.spot else 'od'}"


class Requirements(BaseModel):
    """The resources and the offer-selecting policies of a run."""

    resources: ResourcesSpec = ResourcesSpec()
    spot_policy: SpotPolicy = "on-demand"
    max_price: float | None = None
    backends: list[str] | None = None
    regions: list[str] | None = None
    instance_types: list[str] | None = None


def unmet_requirement(spec: ResourcesSpec, res: InstanceResources, *, own_host: bool) -> str | None:
    """The first requirement `res` does not meet, in words, or None when it meets them all.

    `own_host` is true for machines iacrun does not rent (this machine, SSH hosts): their disk
    cannot be sized, so they are filtered on disk only when the task asks for one explicitly,
    and a task may take fewer of their GPUs than they have (`CUDA_VISIBLE_DEVICES`).
    """
    if spec.cpu.arch is not None and spec.cpu.arch != res.cpu_arch:
        return f"cpu architecture {spec.cpu.arch}"
    if not spec.cpu.count.contains(res.cpus):
        return f"cpu {spec.cpu.count.render()}"
    if not spec.memory.contains(res.memory_gb):
        return f"memory {spec.memory.render(size=True)}"
    if (
        own_host
        and spec.disk_is_explicit
        and res.disk_gb is not None
        and not Range(min=spec.disk.min).contains(res.disk_gb)
    ):
        return f"disk {spec.disk.render(size=True)}"
    return _unmet_gpu(spec, res, own_host=own_host)


def _unmet_gpu(spec: ResourcesSpec, res: InstanceResources, *, own_host: bool) -> str | None:
    gpu = spec.gpu
    if gpu is None:
        return None
    gpus = list(res.gpus)
    if gpu.vendor is not None:
        gpus = [g for g in gpus if g.vendor == gpu.vendor]
    if gpu.name:
        wanted = {n.lower() for n in gpu.name}
        gpus = [g for g in gpus if g.name.lower() in wanted]
    if gpu.memory is not None:
        memory = gpu.memory
        gpus = [g for g in gpus if memory.contains(g.memory_gb)]
    count = len(gpus)
    if own_host and gpu.count.min is not None:
        # a host's GPUs can be split: take as many as the task wants, up to its maximum
        count = min(count, int(gpu.count.max)) if gpu.count.max is not None else count
    if not gpu.count.contains(count):
        return f"gpu {gpu.render()}"
    per_gpu = gpus[0].memory_gb if gpus else 0.0
    if gpu.total_memory is not None and not gpu.total_memory.contains(per_gpu * count):
        return f"gpu total memory {gpu.total_memory.render(size=True)}"
    return None
