"""Offers: a machine a backend can give, with its resources and price, and matching against them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, TypeGuard, get_args

from pydantic import BaseModel, ConfigDict

from iacrun.orchestrator.models.resources import GPUSpec, ResourcesSpec
from iacrun.orchestrator.models.units import Range, format_size_gb
from iacrun.stacks.spec import Cloud, ClusterNetwork

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
    #: the type's fast network between the nodes of a multi-node run, if it has one
    cluster_network: ClusterNetwork | None = None

    @property
    def key(self) -> str:
        return f"{self.backend}/{self.region}/{self.instance_type}/{'spot' if self.spot else 'od'}"


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
    gpus = [res.gpus[i] for i in matching_gpus(res.gpus, gpu)]
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


def matching_gpus(
    gpus: Sequence[Gpu], spec: GPUSpec, among: Sequence[int] | None = None
) -> list[int]:
    """Indices of the GPUs (of `among`, default all) of the vendor, model and memory `spec` asks."""
    indices = list(range(len(gpus))) if among is None else list(among)
    if spec.vendor is not None:
        indices = [i for i in indices if gpus[i].vendor == spec.vendor]
    if spec.name:
        wanted = {n.lower() for n in spec.name}
        indices = [i for i in indices if gpus[i].name.lower() in wanted]
    if spec.memory is not None:
        memory = spec.memory
        indices = [i for i in indices if memory.contains(gpus[i].memory_gb)]
    return indices


#: how a backend gives a run its machine's GPUs (see `pick_gpus`)
GpuShare = Literal["all", "first", "split"]


def pick_gpus(
    gpus: Sequence[Gpu],
    spec: GPUSpec | None,
    share: GpuShare,
    free: Sequence[int] | None = None,
) -> str | None:
    """The GPUs a run gets on its machine, as CUDA_VISIBLE_DEVICES; None leaves it unset.

    The one place that decides it, for every backend:

    - `all`: the machine is the run's (a cloud VM): every GPU it has, whatever the spec says.
    - `first`: this machine: its first GPUs, as many as the spec's maximum (else its minimum),
      when the spec asks for a GPU at all.
    - `split`: a shared host: of its `free` GPUs (default all), the ones of the model and memory
      asked, up to the spec's maximum (all of them without one); None when that is every GPU
      of the host, so runs that take a whole host see it as it is.
    """
    if share == "all":
        return ",".join(str(i) for i in range(len(gpus))) or None
    if spec is None or not gpus:
        return None
    if share == "first":
        wanted = spec.count.max or spec.count.min or 1
        return ",".join(str(i) for i in range(min(int(wanted), len(gpus))))
    candidates = matching_gpus(gpus, spec, free)
    if spec.count.max is not None:
        candidates = candidates[: int(spec.count.max)]
    if len(candidates) == len(gpus):
        return None
    return ",".join(str(i) for i in candidates)
